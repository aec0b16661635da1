"""Jump-forward with the published tokenizer: forward steps saved, and forced spans split as the tokenizer does.

Random weights write noise, so the committed samples' ground truth is replayed instead, written as the
model writes it (schema order, every property, in each JSON layout) through the grammar with the real
32k Mistral sentencepiece model (mistral_common ships it; the published checkpoints ship the same file).
The model is taken to write the tokenizer's own split of the answer; each time the grammar forces text,
the tokens jump-forward appends are compared with that split (extractor.replay). Side by side: bayou's
in-context forcing and a context-blind greedy longest match (what bayou did before).

Usage: python bench/tokenization.py [--layouts spaced,compact,free] [--types receipt,drivers_license,check]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.model import published_tokenizers  # noqa: E402
from extractor.constrained import GrammarCache, build_vocabulary  # noqa: E402
from extractor.model.published import published_config  # noqa: E402
from extractor.replay import Replay, answer_text, greedy_longest_match, replay, schema_ordered  # noqa: E402
from extractor.schemas import load_schema  # noqa: E402


def published_grammars(layout: str) -> GrammarCache:
    """The grammars bayou builds for the published 0.8B checkpoint's tokenizer, in `layout`."""
    raw = published_config("h2ovl-800m")
    with tempfile.TemporaryDirectory() as scratch:
        tokens = published_tokenizers(Path(scratch), raw)
    stop_ids = [tokens.prompt.eos_id, tokens.prompt.token_id("<|end|>")]
    vocabulary = build_vocabulary(
        tokens.vocabulary, raw["llm_config"]["vocab_size"], stop_ids, tokens.prompt.continuation
    )
    return GrammarCache(vocabulary, layout)


def sample_rows(types: list[str]) -> list[dict]:
    """The committed samples' metadata rows of these document types."""
    lines = (ROOT / "samples" / "metadata.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["doc_type"] in types]


def forward_steps(
    grammars: GrammarCache, row: dict, pick: Callable[[bytes, bytes], list[int]] | None = None
) -> Replay:
    """One sample's ground truth, written as the model writes it, replayed through the grammar forcing
    with `pick` (default: bayou's jump-forward)."""
    schema = load_schema(row["doc_type"])
    text = answer_text(schema_ordered(row["ground_truth"], schema), grammars.layout)
    return replay(grammars, schema, text, pick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default="spaced,compact,free")
    parser.add_argument("--types", default="receipt,drivers_license,check")
    args = parser.parse_args()
    rows = sample_rows(args.types.split(","))
    print(
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}; command: python bench/tokenization.py {' '.join(sys.argv[1:])}"
    )
    print(
        f"{len(rows)} sample answers ({args.types}), tokenizer: the published 32,000 pieces + added tokens\n"
    )
    print(
        "| layout | forcing | answer tokens | forward steps | steps saved | forced spans | spans split unlike the tokenizer |"
    )
    print("|---|---|---|---|---|---|---|")
    for layout in args.layouts.split(","):
        grammars = published_grammars(layout)
        for label, pick in (
            ("in context (bayou)", None),
            ("greedy longest match", greedy_longest_match(grammars.vocabulary)),
        ):
            total = Replay()
            for row in rows:
                total.add(forward_steps(grammars, row, pick))
            saved = 1 - total.steps / total.tokens
            print(
                f"| {layout} | {label} | {total.tokens} | {total.steps} | {saved:.1%} | {total.forced_spans} | "
                f"{total.split_differently} |"
            )


if __name__ == "__main__":
    main()
