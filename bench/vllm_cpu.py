"""vLLM engine vs transformers engine on CPU: the same requests, the published architecture, random weights.

Writes the full-size checkpoint (published config, the real 32k Mistral tokenizer with the ten added tokens,
random weights in the published parameter names), starts `vllm serve` on it from the vLLM environment
(.venv-vllm, vllm_plugin/install-cpu-venv.sh), then runs the same receipts, schema-constrained, through
extractor.vllm_engine.VLLMEngine and extractor.engine.TransformersEngine, one engine after the other.

Usage: python bench/vllm_cpu.py [--model h2ovl-800m] [--documents 2] [--new-tokens 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from safetensors.torch import save_file
from transformers import InternVLForConditionalGeneration

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from model import published_tokenizers, receipt_requests  # noqa: E402

from extractor.engine import EngineRequest, TransformersEngine  # noqa: E402
from extractor.model.config import to_internvl_config  # noqa: E402
from extractor.model.published import published_config  # noqa: E402
from extractor.model.weights import to_original_state_dict  # noqa: E402
from extractor.vllm_engine import CHAT_TEMPLATE, VLLMEngine, read_checkpoint, server_args  # noqa: E402

VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def write_checkpoint(name: str, directory: Path) -> Path:
    raw = published_config(name)
    raw["torch_dtype"] = "float32"
    tokens = published_tokenizers(directory, raw)
    torch.manual_seed(0)
    model = InternVLForConditionalGeneration(to_internvl_config(raw, image_token_id=tokens.image_token_id))
    state = {k: v.contiguous() for k, v in to_original_state_dict(model.state_dict()).items()}
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(raw, indent=2))
    (directory / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    return directory


def start_server(
    checkpoint: Path,
    port: int,
    log: Path,
    python: Path = VLLM_PYTHON,
    device_args: tuple[str, ...] = ("--dtype", "float32", "--enforce-eager"),
) -> subprocess.Popen:
    """`vllm serve` on `checkpoint` from `python`'s environment; `device_args` are the CPU's by default (a GPU
    caller passes its dtype and memory share instead)."""
    # vLLM's own CPU defaults: its OpenMP threads bound to all cores but one, kept for its API server
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_NO_USAGE_STATS": "1"}
    command = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        *server_args(str(checkpoint), "bench", ROOT / "vllm_plugin" / CHAT_TEMPLATE),
        *("--host", "127.0.0.1", "--port", str(port), *device_args),
    ]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vllm serve exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(2)
    process.kill()
    raise RuntimeError("vllm serve did not become healthy in 15 minutes")


def timed(engine, requests: list[EngineRequest]) -> dict:
    engine.run(requests[:1])  # warm-up: first-call allocations and caches
    started = time.perf_counter()
    outputs = engine.run(requests)
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "documents_per_s": round(len(requests) / seconds, 4),
        "tiles": [o.tiles for o in outputs],
        "prompt_tokens": [o.prompt_tokens for o in outputs],
        "generated_tokens": [o.generated_tokens for o in outputs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="h2ovl-800m")
    parser.add_argument("--documents", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    requests = receipt_requests(range(args.documents), args.new_tokens)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = write_checkpoint(args.model, Path(scratch))
        started = time.perf_counter()
        transformers = TransformersEngine.from_source(checkpoint, name=args.model, dtype="float32")
        load_transformers = time.perf_counter() - started
        local = timed(transformers, requests)
        del transformers

        started = time.perf_counter()
        log = Path(tempfile.gettempdir()) / "bench-vllm-server.log"  # kept: the server's side of a failure
        server = start_server(checkpoint, args.port, log)
        load_vllm = time.perf_counter() - started
        try:
            engine = VLLMEngine(
                f"http://127.0.0.1:{args.port}", checkpoint=read_checkpoint(str(checkpoint)), name=args.model
            )
            served = timed(engine, requests)
        finally:
            server.terminate()
            server.wait(timeout=60)

    print(
        json.dumps(
            {
                "model": f"{args.model} (random weights, float32)",
                "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads",
                "documents": args.documents,
                "new_tokens": args.new_tokens,
                "transformers": {**local, "load_s": round(load_transformers, 1)},
                "vllm": {**served, "start_s": round(load_vllm, 1)},
                "vllm_over_transformers": round(served["documents_per_s"] / local["documents_per_s"], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
