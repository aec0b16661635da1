"""Run with transformers 4 (the published usage's era) first on sys.path: the slow tokenizer's ids.

stdin: {"directory": "...", "texts": ["...", ...]}; stdout: {"version": "4.x", "ids": [[...], ...]}.
This is the reference path of the published model card: AutoTokenizer(use_fast=False), then
tokenizer(query).input_ids.
"""

import json
import sys

import transformers
from transformers import AutoTokenizer

request = json.load(sys.stdin)
tokenizer = AutoTokenizer.from_pretrained(request["directory"], use_fast=False, trust_remote_code=False)
if tokenizer.is_fast:
    raise SystemExit("expected the slow tokenizer")
ids = [tokenizer(text).input_ids for text in request["texts"]]
json.dump({"version": transformers.__version__, "class": type(tokenizer).__name__, "ids": ids}, sys.stdout)
