"""Decode step cost behind a receipt's prompt: transformers' DynamicCache against bayou's GrowingCache, and
(int8-dynamic) the language model's head in float32 against int8, interleaved in one process.

The full-size 0.8B with the seed's random weights (bench/cpu_precision.build), the 1,401-token receipt
prompt prefilled once per variant and round, then `--steps` greedy decode steps; each round runs every
variant once, in turn, so the machine's drift falls on all of them alike; the median round is reported.

Usage: python bench/decode_cache.py [--precision int8-dynamic|float32] [--steps 60] [--rounds 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_precision import CACHES, build  # noqa: E402

from extractor.model.device import configure_threads  # noqa: E402
from extractor.model.quantize import int8_dynamic  # noqa: E402

PROMPT_TOKENS = 1401  # the 3-tile receipt's prompt (bench/cpu_precision.py)


def heads(model: torch.nn.Module, precision: str) -> dict[str, torch.nn.Module]:
    """The heads to compare: float32 always; for int8-dynamic also the head as BAYOU_QUANTIZE makes it."""
    found = {"float32 head": model.lm_head}
    if precision == "int8-dynamic":
        found["int8 head"] = int8_dynamic(copy.deepcopy(model.lm_head))
    return found


@torch.inference_mode()
def decode_ms(model, head: torch.nn.Module, cache, embeds: torch.Tensor, steps: int) -> float:
    language_model = model.model.language_model
    cache = language_model(inputs_embeds=embeds, cache=cache, use_cache=True).cache
    token = 5
    started = time.perf_counter()
    for _ in range(steps):
        out = language_model(
            inputs_embeds=model.get_input_embeddings()(torch.tensor([[token]])), cache=cache, use_cache=True
        )
        cache = out.cache
        token = int(head(out.last_hidden_state[:, -1]).argmax())
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=["int8-dynamic", "float32"], default="int8-dynamic")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    configure_threads(None)
    # the towers quantised, the head left float: each head variant is then applied on top
    model, _ = build("h2ovl-800m", "int8-dynamic-towers" if args.precision == "int8-dynamic" else "float32")
    embeds = model.get_input_embeddings()(torch.randint(3, 32000, (1, PROMPT_TOKENS)))
    available = heads(model, args.precision)
    variants = [(cache, head) for cache in ("dynamic", "growing") for head in available]
    rounds: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for cache, head in variants:
            made = CACHES[cache](model.config)
            rounds[(cache, head)].append(decode_ms(model, available[head], made, embeds, args.steps))
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"Command: python bench/decode_cache.py {' '.join(sys.argv[1:])}\n")
    print("| precision | KV cache | head | decode ms/token (median of rounds) | rounds |")
    print("|---|---|---|---|---|")
    for (cache, head), values in rounds.items():
        name = "DynamicCache (transformers)" if cache == "dynamic" else "GrowingCache (bayou)"
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {args.precision} | {name} | {head} | {statistics.median(values):.1f} | {shown} |")


if __name__ == "__main__":
    main()
