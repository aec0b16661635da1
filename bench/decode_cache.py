"""Decode step cost behind a receipt's prompt, variants interleaved in one process: `--compare cache`
(default): transformers' DynamicCache against bayou's GrowingCache, and (int8-dynamic) the language model's
head in float32 against int8; `--compare attention`: transformers' SDPA against bayou's CPU decoding step
(extractor/model/attention.py), both with GrowingCache in the model's dtype and the head as the engine has it.

The full-size 0.8B with the seed's random weights (bench/cpu_precision.build), the 1,401-token receipt
prompt prefilled once per variant and round, then `--steps` greedy decode steps; each round runs every
variant once, in turn, so the machine's drift falls on all of them alike; the median round is reported.

Usage: python bench/decode_cache.py [--compare cache|attention] [--precision int8-dynamic|float32|bfloat16]
       [--steps 60] [--rounds 5]
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

from extractor.model.device import configure_cpu_runtime  # noqa: E402
from extractor.model.int8_dynamic import int8_dynamic  # noqa: E402
from extractor.model.loader import attention_implementation  # noqa: E402

PROMPT_TOKENS = 1401  # the 3-tile receipt's prompt (bench/cpu_precision.py)


def heads(model: torch.nn.Module, precision: str) -> dict[str, torch.nn.Module]:
    """The heads to compare: float32 always; for int8-dynamic also the head as BAYOU_QUANTIZE makes it."""
    found = {"float32 head": model.lm_head}
    if precision == "int8-dynamic":
        found["int8 head"] = int8_dynamic(copy.deepcopy(model.lm_head))
    return found


@torch.inference_mode()
def decode_ms(
    model, head: torch.nn.Module, cache, embeds: torch.Tensor, steps: int, attention: str | None = None
) -> float:
    if attention is not None:
        model.set_attn_implementation(attention)
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
    parser.add_argument("--compare", choices=["cache", "attention"], default="cache")
    parser.add_argument(
        "--precision", choices=["int8-dynamic", "float32", "bfloat16"], default="int8-dynamic"
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    configure_cpu_runtime()  # as the engine does
    if args.compare == "cache":
        if args.precision == "bfloat16":
            parser.error("--compare cache measures float32 and int8-dynamic")
        # the towers quantised, the head left float: each head variant is then applied on top
        model, _ = build(
            "h2ovl-800m", "int8-dynamic-towers" if args.precision == "int8-dynamic" else "float32"
        )
        available = heads(model, args.precision)
        variants = {
            ("DynamicCache (transformers)" if cache == "dynamic" else "GrowingCache (bayou)", head): (
                lambda cache=cache, head=head: (CACHES[cache](model.config), available[head], None)
            )
            for cache in ("dynamic", "growing")
            for head in available
        }
        columns = ("KV cache", "head")
    else:
        model, _ = build("h2ovl-800m", args.precision)
        attention = attention_implementation(torch.device("cpu"))  # the engine's, as build made it
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        variants = {
            (name, dtype): (lambda name=name: (CACHES["growing"](model.config), model.lm_head, name))
            for name in ("sdpa", attention)
        }
        columns = ("attention", "dtype")
    embeds = model.get_input_embeddings()(torch.randint(3, 32000, (1, PROMPT_TOKENS)))
    rounds: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant, make in variants.items():
            cache, head, attention_name = make()
            rounds[variant].append(decode_ms(model, head, cache, embeds, args.steps, attention_name))
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"Command: python bench/decode_cache.py {' '.join(sys.argv[1:])}\n")
    print(f"| precision | {columns[0]} | {columns[1]} | decode ms/token (median of rounds) | rounds |")
    print("|---|---|---|---|---|")
    for (first, second), values in rounds.items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {args.precision} | {first} | {second} | {statistics.median(values):.1f} | {shown} |")


if __name__ == "__main__":
    main()
