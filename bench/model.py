"""Engine benchmark on the real H2OVL-Mississippi architectures at full size, with random weights.

Nothing is downloaded: configs come from extractor.model.published (the published models' numbers), the
weights are random, and the tokenizer is the published one: the 32k Mistral sentencepiece model that
mistral_common ships, with the ten added tokens. What it measures:

1. per-document latency split (preprocess, vision, prefill, decode), generated tokens/s, documents/s and
   peak memory, for the 0.8B and the 2B at several batch sizes;
2. the cost of constrained decoding per generated token against unconstrained decoding.
(What jump-forward saves is measured by bench/tokenization.py.)

`--engine vllm` runs the same requests through bayou's vLLM engine instead, against a `vllm serve` started
here on the same random weights (written as a published-layout checkpoint) from `--vllm-python`'s
environment (.venv-vllm on CPU; on a GPU machine, an environment with vLLM and bayou's plugin);
`--engine both` runs the two engines one after the other on the same requests and prints vLLM's
documents/s over the transformers engine's per batch size (the GPU target: 3×). vLLM reports no stage
split, so its rows give documents/s and generated tokens/s only.

Usage: python bench/model.py [--models h2ovl-800m,h2ovl-2b] [--batches 1,4,16] [--max-tiles 6]
       [--new-tokens 64] [--device cpu|cuda] [--dtype float32|bfloat16]
       [--engine transformers|vllm|both] [--vllm-python PATH] [--vllm-dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterable
from itertools import count, islice
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extractor.engine import EngineRequest, TransformersEngine  # noqa: E402
from extractor.generation import Generator  # noqa: E402
from extractor.model.config import model_settings, to_internvl_config  # noqa: E402
from extractor.model.cpu_linear import pack_linears  # noqa: E402
from extractor.model.device import configure_cpu_runtime  # noqa: E402
from extractor.model.loader import (  # noqa: E402
    CheckpointTokenizers,
    LoadedModel,
    build_network,
    load_tokenizers,
)
from extractor.model.published import published_config  # noqa: E402
from extractor.model.tiny_tokenizer import write_published_tokenizer  # noqa: E402
from extractor.prompts import build_prompt  # noqa: E402
from extractor.replay import answer_text, schema_ordered  # noqa: E402
from extractor.schemas import load_schema  # noqa: E402


def published_tokenizers(directory: Path, raw: dict) -> CheckpointTokenizers:
    """The published tokenizer files (the real Mistral sentencepiece model), loaded as the loader does."""
    import mistral_common

    model = (Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1").read_bytes()
    write_published_tokenizer(directory, model)
    return load_tokenizers(directory, raw)


def random_model(name: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """The published architecture at full size with random weights (no download possible here)."""
    raw = published_config(name)
    with tempfile.TemporaryDirectory() as scratch:
        tokens = published_tokenizers(Path(scratch), raw)
    config = to_internvl_config(raw, image_token_id=tokens.image_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = build_network(config, dtype, device)
    pack_linears(model)  # the engine's bfloat16 layers on a CPU (nothing elsewhere)
    return LoadedModel(
        model=model,
        tokenizer=tokens.vocabulary,
        prompt_tokenizer=tokens.prompt,
        image_token_id=tokens.image_token_id,
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


def receipt_requests(
    seeds: Iterable[int], new_tokens: int, max_tiles: int | None = None
) -> list[EngineRequest]:
    """A schema-constrained receipt request per seed, each with the page `receipt_image(seed)`."""
    schema = load_schema("receipt")
    question = build_prompt("receipt").text
    return [
        EngineRequest(
            images=[receipt_image(seed)],
            question=question,
            schema=schema,
            max_new_tokens=new_tokens,
            max_tiles=max_tiles,
        )
        for seed in seeds
    ]


def latency_rows(engine: TransformersEngine, name: str, batches: list[int], max_tiles: int, new_tokens: int):
    rows = []
    for batch in batches:
        requests = receipt_requests(range(batch), new_tokens, max_tiles)
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


def vllm_rows(
    name: str, args: argparse.Namespace, device: torch.device, dtype: torch.dtype, batches: list[int]
) -> list[dict]:
    """The same batches through bayou's vLLM engine, against a server started here on the same random
    weights; the server is stopped before returning."""
    from vllm_cpu import start_server, write_checkpoint  # a sibling bench script (it imports this one)

    from extractor.vllm_engine import VLLMEngine, read_checkpoint

    dtype_name = str(dtype).removeprefix("torch.")
    if (
        device.type == "cuda"
    ):  # the transformers engine's model is freed by then; leave room for the allocator
        device_args: tuple[str, ...] = ("--dtype", dtype_name, "--gpu-memory-utilization", "0.85")
    else:
        device_args = ("--dtype", dtype_name, "--enforce-eager")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = write_checkpoint(name, Path(scratch))
        # kept after the run: the server's side of a failure
        log = Path(tempfile.gettempdir()) / f"bench-model-vllm-{name}.log"
        server = start_server(
            checkpoint, args.vllm_port, log, python=Path(args.vllm_python), device_args=device_args
        )
        try:
            engine = VLLMEngine(
                f"http://127.0.0.1:{args.vllm_port}",
                checkpoint=read_checkpoint(str(checkpoint)),
                name=name,
                concurrency=max(batches),
            )
            # vLLM caches prompt prefixes, images included: every request (warm-ups too) gets a page of its
            # own, as different documents would, so no timed request reuses an earlier one's work
            seeds = count()
            for batch in batches:
                requests = receipt_requests(islice(seeds, batch + 1), args.new_tokens, args.max_tiles)
                engine.run(requests[:1])  # warm-up, as for the transformers engine
                requests = requests[1:]
                started = time.perf_counter()
                outputs = engine.run(requests)
                wall = time.perf_counter() - started
                generated = sum(o.generated_tokens for o in outputs)
                rows.append(
                    {
                        "model": name,
                        "engine": "vllm",
                        "batch": batch,
                        "tiles": outputs[0].tiles,
                        "prompt_tokens": outputs[0].prompt_tokens,
                        "tokens_per_s": round(generated / wall, 1),
                        "docs_per_s": round(batch / wall, 3),
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr)
        finally:
            server.terminate()
            server.wait(timeout=60)
    return rows


def grammar_ms_per_token(generator: Generator) -> float:
    """CPU time of the grammar per token (mask fill + apply), replaying the sample receipts."""
    import xgrammar as xgr

    schema = load_schema("receipt")
    vocabulary = generator.vocabulary
    bitmask = xgr.allocate_token_bitmask(1, generator.vocab_size)
    logits = torch.zeros(1, generator.vocab_size)
    spent, tokens = 0.0, 0
    for receipt in sample_receipts():
        text = answer_text(schema_ordered(receipt, schema), generator.json_layout)
        matcher = generator.grammars.matcher(schema)
        for token in vocabulary.continuation(text):
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
    parser.add_argument("--engine", choices=("transformers", "vllm", "both"), default="transformers")
    parser.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    parser.add_argument("--vllm-port", type=int, default=8766)
    # the vLLM server's dtype when it differs from the transformers engine's (e.g. float32 against bfloat16)
    parser.add_argument("--vllm-dtype", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(
        args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    )
    if device.type == "cpu":
        configure_cpu_runtime()  # as the engine does

    batches = [int(b) for b in args.batches.split(",")]
    rows, served, overhead = [], [], None
    for name in args.models.split(","):
        if args.engine in ("transformers", "both"):
            loaded = random_model(name, device, dtype)
            engine = TransformersEngine(loaded, name=name)
            if overhead is None:
                overhead = constrained_overhead(loaded, args.new_tokens)
                overhead["grammar_ms_per_token"] = round(grammar_ms_per_token(engine.generator), 3)
                print(json.dumps({"constrained_overhead": overhead, "model": name}), file=sys.stderr)
            rows += latency_rows(engine, name, batches, args.max_tiles, args.new_tokens)
            del engine, loaded
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if args.engine in ("vllm", "both"):
            served_dtype = getattr(torch, args.vllm_dtype) if args.vllm_dtype else dtype
            served += vllm_rows(name, args, device, served_dtype, batches)

    print(
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"{device} {dtype}; torch {torch.__version__}"
    )
    print(f"Command: python bench/model.py {' '.join(sys.argv[1:])}\n")
    if rows:
        print_transformers(rows, overhead)
    if served:
        print_vllm(served, rows)


def print_transformers(rows: list[dict], overhead: dict) -> None:
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
        f"Constrained decoding: {overhead['constrained']} ms/step against {overhead['unconstrained']} "
        f"ms/step unconstrained ({overhead['overhead']:+.1%}); the grammar itself: "
        f"{overhead['grammar_ms_per_token']} ms per token (mask fill + apply), computed while the forward runs"
    )
    print_batch_gains(rows)


def print_vllm(served: list[dict], rows: list[dict]) -> None:
    local = {(r["model"], r["batch"]): r["docs_per_s"] for r in rows}
    print(
        "\n| model | engine | batch | tiles/doc | prompt tokens | generated tokens/s | documents/s | × transformers |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in served:
        mine = local.get((r["model"], r["batch"]))
        ratio = f"{r['docs_per_s'] / mine:.2f}" if mine else "-"
        print(
            f"| {r['model']} | vllm | {r['batch']} | {r['tiles']} | {r['prompt_tokens']} | {r['tokens_per_s']} | "
            f"{r['docs_per_s']} | {ratio} |"
        )
    print_batch_gains(served)


def print_batch_gains(rows: list[dict]) -> None:
    by_model: dict[str, dict[int, float]] = {}
    for r in rows:
        by_model.setdefault(r["model"], {})[r["batch"]] = r["docs_per_s"]
    for name, speeds in by_model.items():
        if 1 in speeds and len(speeds) > 1:
            top = max(speeds)
            print(f"{name}: batch {top} gives {speeds[top] / speeds[1]:.2f}× the documents/s of batch 1")


if __name__ == "__main__":
    main()
