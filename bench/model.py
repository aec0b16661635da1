"""Engine benchmark on the real H2OVL-Mississippi architectures at full size, with random weights.

Nothing is downloaded: configs come from extractor.model.published (the published models' numbers), the
weights are random, and the tokenizer is a 32k-entry Llama-style BPE trained here on Python's standard
library text (the published tokenizer has the same kind and size; its merges differ). What it measures:

1. per-document latency split (preprocess, vision, prefill, decode), generated tokens/s, documents/s and
   peak memory, for the 0.8B and the 2B at several batch sizes;
2. jump-forward: model forward steps per receipt with and without it, replaying realistic receipts (the
   ground truth of the committed samples) through the grammar — random weights would write noise, so the
   steps are counted on what a real model writes;
3. the cost of constrained decoding per generated token against unconstrained decoding.

Usage: python bench/model.py [--models h2ovl-800m,h2ovl-2b] [--batches 1,4,16] [--max-tiles 6]
       [--new-tokens 64] [--device cpu|cuda] [--dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, InternVLForConditionalGeneration

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extractor.engine import EngineRequest, TransformersEngine  # noqa: E402
from extractor.generation import Generator  # noqa: E402
from extractor.model.config import model_settings, to_internvl_config  # noqa: E402
from extractor.model.loader import LoadedModel  # noqa: E402
from extractor.model.published import published_config  # noqa: E402
from extractor.model.tokenizer import build_tokenizer, write_tokenizer  # noqa: E402
from extractor.prompts import build_prompt  # noqa: E402
from extractor.schemas import load_schema  # noqa: E402

VOCAB = 32000


def stdlib_corpus(limit_bytes: int = 40_000_000):
    """Text to learn a 32k vocabulary from: Python's own library sources (on every machine, deterministic)."""
    total = 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        text = path.read_text(errors="ignore")
        total += len(text)
        yield text
        if total > limit_bytes:
            return


def real_size_tokenizer(directory: Path):
    started = time.perf_counter()
    tokenizer = build_tokenizer(vocab_size=VOCAB, corpus=stdlib_corpus())
    write_tokenizer(directory, tokenizer)
    loaded = AutoTokenizer.from_pretrained(str(directory))
    print(
        f"# tokenizer: {len(loaded)} entries, trained in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    return loaded


def random_model(name: str, tokenizer, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """The published architecture at full size with random weights (no download possible here)."""
    raw = published_config(name)
    raw["llm_config"]["vocab_size"] = len(tokenizer)
    image_token_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    config = to_internvl_config(raw, image_token_id=image_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = InternVLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.eval().requires_grad_(False)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        image_token_id=image_token_id,
        settings=model_settings(raw),
        source=f"{name} (random weights)",
        revision="random",
        device=device,
        dtype=dtype,
    )


def receipt_image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    page = np.full((1400, 600, 3), 235, dtype=np.uint8)
    page[rng.random(page.shape[:2]) < 0.08] = 30  # ink-like speckle: content does not matter to timing
    return Image.fromarray(page)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latency_rows(engine: TransformersEngine, name: str, batches: list[int], max_tiles: int, new_tokens: int):
    schema = load_schema("receipt")
    question = build_prompt("receipt").text
    rows = []
    for batch in batches:
        requests = [
            EngineRequest(
                images=[receipt_image(i)],
                question=question,
                schema=schema,
                max_new_tokens=new_tokens,
                max_tiles=max_tiles,
            )
            for i in range(batch)
        ]
        engine.run(requests[:1])  # warm-up: grammar compile, allocator, kernels
        if engine.loaded.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(engine.loaded.device)
        started = time.perf_counter()
        outputs = engine.run(requests)
        wall = time.perf_counter() - started
        timings = outputs[0].timings_ms
        generated = sum(o.generated_tokens for o in outputs)
        rows.append(
            {
                "model": name,
                "batch": batch,
                "tiles": outputs[0].tiles,
                "prompt_tokens": outputs[0].prompt_tokens,
                "preprocess_ms": round(sum(o.timings_ms["preprocess"] for o in outputs) / batch, 1),
                "vision_ms": round(timings["vision"] / batch, 1),
                "prefill_ms": round(timings["prefill"] / batch, 1),
                "decode_ms": round(timings["decode"] / batch, 1),
                "tokens_per_s": round(generated / (timings["decode"] / 1000), 1),
                "docs_per_s": round(batch / wall, 3),
                "peak_mb": round(peak_memory_mb(engine.loaded.device)),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def replay_forward_steps(generator: Generator, schema: dict, document: dict) -> tuple[int, int]:
    """Forward steps to write `document` with and without jump-forward, as the grammar would let a model."""
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    vocabulary = generator.vocabulary
    plain_steps = len(vocabulary.tokenize_forced(text))
    matcher = generator.grammars.matcher(schema)
    position, steps = 0, 0
    while position < len(text):
        forced = matcher.find_jump_forward_string().encode()
        if forced and text.startswith(forced, position):
            tokens = vocabulary.tokenize_forced(forced)
            if all(matcher.accept_token(t) for t in tokens):
                position += len(forced)
                continue
        # the model's own step: the longest token that spells what comes next and the grammar accepts
        for length in range(min(vocabulary.longest_token, len(text) - position), 0, -1):
            token = vocabulary.ids_by_bytes.get(text[position : position + length])
            if token is not None and matcher.accept_token(token):
                position += length
                steps += 1
                break
        else:
            raise ValueError(
                f"the grammar refuses the document at byte {position}: {text[position : position + 20]!r}"
            )
    return plain_steps, steps


def schema_ordered(document: dict, schema: dict) -> dict:
    """The document as a model writes it: every property, in the schema's order, null when absent."""
    ordered = {}
    for key, sub in schema["properties"].items():
        value = document.get(key)
        if isinstance(value, dict) and "properties" in sub:
            value = schema_ordered(value, sub)
        elif isinstance(value, list) and isinstance(sub.get("items"), dict) and "properties" in sub["items"]:
            value = [schema_ordered(v, sub["items"]) for v in value]
        ordered[key] = value
    return ordered


def jump_forward_rows(generator: Generator):
    schema = load_schema("receipt")
    receipts = sample_receipts()
    totals = [0, 0]
    for receipt in receipts:
        plain, jumped = replay_forward_steps(generator, schema, schema_ordered(receipt, schema))
        totals[0] += plain
        totals[1] += jumped
    cut = 1 - totals[1] / totals[0] if totals[0] else 0.0
    return {
        "receipts": len(receipts),
        "steps_plain": totals[0],
        "steps_jump_forward": totals[1],
        "cut": round(cut, 3),
    }


def grammar_ms_per_token(generator: Generator) -> float:
    """CPU time of the grammar per token (mask fill + apply), replaying the sample receipts."""
    import xgrammar as xgr

    schema = load_schema("receipt")
    vocabulary = generator.vocabulary
    bitmask = xgr.allocate_token_bitmask(1, generator.vocab_size)
    logits = torch.zeros(1, generator.vocab_size)
    spent, tokens = 0.0, 0
    for receipt in sample_receipts():
        text = json.dumps(schema_ordered(receipt, schema), separators=(",", ":"), ensure_ascii=False).encode()
        matcher = generator.grammars.matcher(schema)
        for token in vocabulary.tokenize_forced(text):
            started = time.perf_counter()
            matcher.fill_next_token_bitmask(bitmask, 0)
            xgr.apply_token_bitmask_inplace(logits, bitmask)
            spent += time.perf_counter() - started
            tokens += 1
            matcher.accept_token(token)
    return spent * 1000 / tokens


def sample_receipts() -> list[dict]:
    metadata = ROOT / "samples" / "metadata.jsonl"
    rows = [json.loads(line) for line in metadata.read_text().splitlines() if line.strip()]
    return [row["ground_truth"] for row in rows if row["doc_type"] == "receipt"]


def constrained_overhead(loaded: LoadedModel, new_tokens: int, repeats: int = 5) -> dict:
    """Time per forward step with the grammar mask against without: same model and prompt, runs
    interleaved and the fastest of each kept, since this machine's noise only ever adds time."""
    schema = load_schema("receipt")
    engine = TransformersEngine(loaded, jump_forward=False)
    request = EngineRequest(
        images=[receipt_image(0)],
        question=build_prompt("receipt").text,
        max_new_tokens=new_tokens,
        max_tiles=1,
    )
    per_step: dict[str, list[float]] = {"unconstrained": [], "constrained": []}
    for repeat in range(repeats + 1):
        for label, constrained in (("unconstrained", None), ("constrained", schema)):
            request.schema = constrained
            output = engine.run([request])[0]
            if repeat:  # the first round warms up (grammar compile, allocator)
                per_step[label].append(output.timings_ms["decode"] / max(output.forward_steps, 1))
    best = {label: min(times) for label, times in per_step.items()}
    return {k: round(v, 2) for k, v in best.items()} | {
        "overhead": round(best["constrained"] / best["unconstrained"] - 1, 4)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="h2ovl-800m,h2ovl-2b")
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--max-tiles", type=int, default=6)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(
        args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    )
    torch.set_num_threads(torch.get_num_threads())

    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = real_size_tokenizer(Path(scratch))
    rows, jump, overhead = [], None, None
    for name in args.models.split(","):
        loaded = random_model(name, tokenizer, device, dtype)
        engine = TransformersEngine(loaded, name=name)
        if jump is None:
            jump = jump_forward_rows(engine.generator)
            print(json.dumps({"jump_forward": jump}), file=sys.stderr)
            overhead = constrained_overhead(loaded, args.new_tokens)
            overhead["grammar_ms_per_token"] = round(grammar_ms_per_token(engine.generator), 3)
            print(json.dumps({"constrained_overhead": overhead, "model": name}), file=sys.stderr)
        rows += latency_rows(
            engine, name, [int(b) for b in args.batches.split(",")], args.max_tiles, args.new_tokens
        )
        del engine, loaded
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    print(
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"{device} {dtype}; torch {torch.__version__}"
    )
    print(f"Command: python bench/model.py {' '.join(sys.argv[1:])}\n")
    print(
        "| model | batch | tiles/doc | prompt tokens | preprocess ms/doc | vision ms/doc | prefill ms/doc "
        "| decode ms/doc | generated tokens/s | documents/s | peak MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['batch']} | {r['tiles']} | {r['prompt_tokens']} | {r['preprocess_ms']} | "
            f"{r['vision_ms']} | {r['prefill_ms']} | {r['decode_ms']} | {r['tokens_per_s']} | "
            f"{r['docs_per_s']} | {r['peak_mb']} |"
        )
    print(
        f"\nJump-forward (receipt schema, {jump['receipts']} sample receipts replayed): "
        f"{jump['steps_plain']} → {jump['steps_jump_forward']} forward steps, cut {jump['cut']:.1%}"
    )
    print(
        f"Constrained decoding: {overhead['constrained']} ms/step against {overhead['unconstrained']} "
        f"ms/step unconstrained ({overhead['overhead']:+.1%}); the grammar itself: "
        f"{overhead['grammar_ms_per_token']} ms per token (mask fill + apply), computed while the forward runs"
    )
    by_model: dict[str, dict[int, float]] = {}
    for r in rows:
        by_model.setdefault(r["model"], {})[r["batch"]] = r["docs_per_s"]
    for name, speeds in by_model.items():
        if 1 in speeds and len(speeds) > 1:
            top = max(speeds)
            print(f"{name}: batch {top} gives {speeds[top] / speeds[1]:.2f}× the documents/s of batch 1")


if __name__ == "__main__":
    main()
