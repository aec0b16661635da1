"""vLLM behind the engine interface (the `gpu` extra). Runs only where vLLM and a GPU are present."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (pip install -e '.[gpu]')"
    ),
    pytest.mark.skipif(not torch.cuda.is_available(), reason="vLLM needs a CUDA GPU; this machine has none"),
]


def test_vllm_engine_answers_with_schema_valid_json(tiny_checkpoint: Path) -> None:
    from extractor.engine import EngineRequest, VLLMEngine
    from extractor.prompts import build_prompt
    from extractor.schemas import load_schema

    engine = VLLMEngine(str(tiny_checkpoint), name="tiny", gpu_memory_utilization=0.3)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (900, 500, 3), dtype=np.uint8))
    schema = load_schema("receipt")
    (output,) = engine.run(
        [
            EngineRequest(
                images=[image], question=build_prompt("receipt").text, schema=schema, max_new_tokens=1024
            )
        ]
    )
    jsonschema.validate(json.loads(output.text), schema)
