"""CPU precision benchmark: float32 against bfloat16 against int8, on the full-size H2OVL-Mississippi
architectures with the same random weights, in one run.

For each model the float32 network is built from a fixed seed; each variant is that same network cast to
bfloat16, or quantised as BAYOU_QUANTIZE does it (`int8-dynamic`: torch's x86 int8 kernels, weights and
activations; `int8`: torchao weight-only), on the language model's and vision tower's Linear layers. Every
variant reads the same receipt-shaped page (preprocess with bayou's tiling, the vision tower on its tiles,
the prompt's prefill) and then decodes `--new-tokens` steps (by default as many as a receipt's answer takes:
the median over the committed sample receipts, jump-forward included), forced to the float32 run's greedy tokens, so
every variant does the same work and its logits can be compared step by step with float32's: the numeric
cost is the largest logit difference and the share of steps whose greedy token is float32's. The forward
calls are bayou's own (extractor.generation's, with its in-place KV cache and its CPU decoding attention,
extractor/model/attention.py; `--attention sdpa` for transformers' throughout), without the grammar, whose cost
does not depend on precision. Each variant runs in a process of its own; the processes are built one after the
other, then read the document in turn, `--rounds` times (default 3), so that the machine's drift (these
shared machines' memory bandwidth and clocks move from minute to minute) falls on every variant alike: the
ratio to float32 is the median of the rounds' ratios, each round's shown beside it. Every variant's process
is alive for the whole run, so their memory together must fit (the 2B's float32, bfloat16, int8 and
int8-dynamic take ~21 GiB); `--rounds 1` runs them one after the other, each ending before the next starts.

`--batch N` reads N receipts together, as a worker under load batches them (BAYOU_BATCH_SIZE, default 8):
vision on all their tiles, one prefill, decoding steps for all of them at once, each step reading the
weights once for the N documents; documents/s counts all N.

Peak memory: the process's resident high-water mark (VmHWM), reset after the variant is built, so it is
what running the variant needs; "weights" is the model's state (int8 data and scales where quantised).

`--matmul` only times one matmul of the vision tower's shape in each precision (GFLOP/s): what the CPU
gives each precision without the model around it.

Usage: python bench/cpu_precision.py [--models h2ovl-800m,h2ovl-2b]
       [--precisions float32,bfloat16,int8,int8-dynamic] [--max-tiles 2] [--new-tokens receipt|N]
       [--prompt-text-tokens 633] [--threads N] [--rounds 3] [--batch 1] [--cache growing|dynamic]
       [--attention bayou|sdpa] [--matmul]

Precisions: float32, bfloat16, int8, int8-dynamic (as BAYOU_QUANTIZE does them: int8 in bfloat16 on a CPU
with bfloat16 in hardware, as BAYOU_DTYPE=auto loads it there), and, to compare, int8-dynamic-towers
(int8-dynamic with the language model's head left in float32, to see what quantising the head gives),
int8-dynamic-per-tensor (torch's `quantize_dynamic`, one scale per weight matrix and per input, as
int8-dynamic was before extractor/model/int8_dynamic.py) and
int8-torchao (int8 run by torchao's own CPU path, not extractor/model/cpu_linear.py's Int8WeightLinear).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import torch
from transformers import InternVLForConditionalGeneration
from transformers.cache_utils import DynamicCache

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from model import receipt_image  # noqa: E402
from tokenization import forward_steps, published_grammars, sample_rows  # noqa: E402

from extractor.context import tiling_of  # noqa: E402
from extractor.kv_cache import GrowingCache  # noqa: E402
from extractor.model.config import model_settings, to_internvl_config  # noqa: E402
from extractor.model.cpu_linear import pack_linears  # noqa: E402
from extractor.model.device import (  # noqa: E402
    configure_cpu_runtime,
    cpu_flags,
    cpu_has_native_bf16,
)
from extractor.model.loader import build_network  # noqa: E402
from extractor.model.published import published_config  # noqa: E402
from extractor.model.quantize import quantize  # noqa: E402
from extractor.tiling import pixel_values  # noqa: E402

SEED = 0
VOCAB = 32010  # the published vocabulary: 32,000 sentencepiece pieces and ten added tokens
IMAGE_TOKEN_ID = 32002  # <IMG_CONTEXT>, as in the published tokenizer
# the engine's KV cache, and transformers' default (which copies the whole cache each token) to compare
CACHES = {"growing": GrowingCache, "dynamic": lambda config: DynamicCache()}
CPU = torch.device("cpu")


def build(name: str, precision: str) -> tuple[InternVLForConditionalGeneration, dict]:
    """The published architecture with the seed's random weights, in `precision`."""
    raw = published_config(name)
    raw["llm_config"]["vocab_size"] = VOCAB
    config = to_internvl_config(raw, image_token_id=IMAGE_TOKEN_ID)
    torch.manual_seed(SEED)
    model = build_network(config, torch.float32, CPU)
    if precision == "bfloat16":
        model.to(torch.bfloat16)
    elif precision in ("int8", "int8-torchao"):  # weight-only, in the dtype BAYOU_DTYPE=auto loads here
        if cpu_has_native_bf16():
            model.to(torch.bfloat16)
        quantize(model, "int8")
        if precision == "int8-torchao":  # torchao's own CPU path, as the engine ran int8 before session 11
            pack_linears(model, int8_kernel=False)
            return model, raw
    elif precision == "int8-dynamic":
        quantize(model, precision)
    elif precision == "int8-dynamic-towers":  # the head left in float32, as int8-dynamic was before it
        head = model.lm_head
        quantize(model, "int8-dynamic")
        model.lm_head = head
    elif precision == "int8-dynamic-per-tensor":  # as int8-dynamic was before session 14
        for name in ("language_model", "vision_tower"):
            setattr(model.model, name, _per_tensor_int8(getattr(model.model, name)))
        model.lm_head = _per_tensor_int8(model.lm_head)
    pack_linears(model)  # as the engine does on a CPU: the bfloat16 layers left, if any
    return model, raw


def _per_tensor_int8(module: torch.nn.Module) -> torch.nn.Module:
    """torch's `quantize_dynamic` of `module`'s Linear layers: one scale per weight and per input."""
    holder = torch.nn.Sequential(module) if isinstance(module, torch.nn.Linear) else module
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(holder, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return holder[0] if holder is not module else holder


def weights_mib(model: torch.nn.Module) -> float:
    """Memory of the model's state: float tensors, torchao's int8 weights, torch's packed int8 weights, and
    the weights held packed outside the state (bfloat16 for oneDNN, int8-dynamic's int8)."""

    def size(value) -> int:
        if isinstance(value, (tuple, list)):
            return sum(size(v) for v in value)
        if not isinstance(value, torch.Tensor):
            return 0
        if hasattr(value, "qdata"):  # torchao's Int8Tensor: int8 data and its per-channel scales
            return size(value.qdata) + size(value.scale)
        return value.numel() * value.element_size()

    packed = sum(m.weight_bytes() for m in model.modules() if hasattr(m, "weight_bytes"))
    return (sum(size(v) for v in model.state_dict().values()) + packed) / 2**20


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM starts again from the current RSS


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@torch.inference_mode()
def run(
    model,
    raw: dict,
    prompt_text_tokens: int,
    max_tiles: int,
    forced: list[list[int]] | None,
    steps: int,
    cache: str = "growing",
    batch: int = 1,
):
    """`batch` documents read together, as a worker batches them: preprocess, vision on all their tiles,
    one prefill, then `steps` decode steps for all of them (each greedy, or `forced`: a step's tokens, one
    per document), the KV cache bayou's (`growing`) or transformers' DynamicCache (`dynamic`, to compare)."""
    settings = model_settings(raw)
    dtype = next(model.parameters()).dtype
    started = time.perf_counter()
    pixels = pixel_values([receipt_image(seed) for seed in range(batch)], **tiling_of(settings, max_tiles))
    preprocess = time.perf_counter() - started

    started = time.perf_counter()
    features = model.model.get_image_features(pixel_values=pixels.to(dtype), return_dict=True).pooler_output
    vision = time.perf_counter() - started

    started = time.perf_counter()
    generator = torch.Generator().manual_seed(SEED)
    text = torch.randint(3, 32000, (batch, prompt_text_tokens), generator=generator)
    image_slots = torch.full((batch, features.shape[0] * features.shape[1] // batch), IMAGE_TOKEN_ID)
    ids = torch.cat([text[:, :20], image_slots, text[:, 20:]], dim=1)
    embeds = model.get_input_embeddings()(ids)
    embeds = embeds.masked_scatter((ids == IMAGE_TOKEN_ID).unsqueeze(-1), features.to(embeds.dtype))
    out = model.model.language_model(inputs_embeds=embeds, cache=CACHES[cache](model.config), use_cache=True)
    cache = out.cache
    logits = [model.lm_head(out.last_hidden_state[:, -1]).float()]
    prefill = time.perf_counter() - started

    started = time.perf_counter()
    tokens: list[list[int]] = []
    for step in range(steps):
        step_tokens = forced[step] if forced is not None else logits[-1].argmax(-1).tolist()
        tokens.append(step_tokens)
        if step == steps - 1:
            break
        out = model.model.language_model(
            inputs_embeds=model.get_input_embeddings()(torch.tensor(step_tokens).unsqueeze(1)),
            cache=cache,
            use_cache=True,
        )
        cache = out.cache
        logits.append(model.lm_head(out.last_hidden_state[:, -1]).float())
    decode = time.perf_counter() - started
    return {
        "tiles": int(pixels.shape[0]) // batch,
        "prompt_tokens": int(ids.shape[1]),
        "preprocess_ms": preprocess * 1000,
        "vision_ms": vision * 1000,
        "prefill_ms": prefill * 1000,
        "decode_ms": decode * 1000,
        "tokens": tokens,
        "logits": torch.cat(logits),
    }


class _OneLayer(torch.nn.Module):
    """One Linear layer where quantize() looks for the towers (model.language_model, model.vision_tower),
    beside an empty head (quantize() converts lm_head too)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = torch.nn.Module()
        self.model.language_model = torch.nn.Sequential(torch.nn.Linear(1024, 4096))
        self.model.vision_tower = torch.nn.Sequential()
        self.lm_head = torch.nn.Linear(1, 1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model.language_model(inputs)


def matmul_gflops(repeats: int = 10) -> dict[str, float]:
    """The vision tower's MLP matmul on one tile (1025×1024 by 1024×4096) in each precision, GFLOP/s,
    fastest of `repeats`: what the hardware gives each precision, without the model around it."""
    torch.manual_seed(SEED)
    x = torch.randn(1025, 1024)
    flops = 2 * 1025 * 1024 * 4096
    results = {}
    for precision in ("float32", "bfloat16", "int8", "int8-dynamic"):
        layer = _OneLayer()
        inputs = x
        if precision == "bfloat16":
            layer, inputs = layer.to(torch.bfloat16), x.to(torch.bfloat16)
        elif precision != "float32":
            quantize(layer, precision)
        with torch.inference_mode():
            layer(inputs)
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                layer(inputs)
                best = min(best, time.perf_counter() - started)
        results[precision] = round(flops / best / 1e9, 1)
    return results


def serve_variant(name: str, precision: str, args: argparse.Namespace, reference: Path) -> None:
    """A child process: build one variant, say `ready`, then read a document for each `run` line on stdin
    (one JSON line on stdout each) until stdin closes. The float32 variant's first document writes
    `reference`; the others read it at their first document (the parent runs float32 first)."""
    configure_cpu_runtime(args.threads)  # as the engine does
    started = time.perf_counter()
    model, raw = build(name, precision)
    if args.attention == "sdpa":  # transformers' SDPA for every step, the cache in the model's dtype
        model.set_attn_implementation("sdpa")
    built_s = time.perf_counter() - started
    weights = weights_mib(model)
    gc.collect()
    reset_peak_rss()  # from here: what running the variant needs, not what building it from float32 did
    print("ready", flush=True)
    for _ in sys.stdin:
        row = measure(model, raw, name, precision, args, reference)
        print(json.dumps({**row, "build_s": round(built_s, 1), "weights_mib": round(weights)}), flush=True)


def measure(model, raw: dict, name: str, precision: str, args: argparse.Namespace, reference: Path) -> dict:
    """One read by one variant (`--batch` documents together), its timings and its logits against float32's."""
    forced = torch.load(reference)["tokens"] if precision != "float32" else None
    result = run(
        model, raw, args.prompt_text_tokens, args.max_tiles, forced, args.new_tokens, args.cache, args.batch
    )
    if precision == "float32" and not reference.exists():
        torch.save({"tokens": result["tokens"], "logits": result["logits"]}, reference)
    expected = torch.load(reference)["logits"]
    total_ms = sum(result[k] for k in ("preprocess_ms", "vision_ms", "prefill_ms", "decode_ms"))
    return {
        "model": name,
        "precision": precision,
        "batch": args.batch,
        "tiles": result["tiles"],
        "prompt_tokens": result["prompt_tokens"],
        # per document, as bench/model.py gives them; a decoding step is the whole batch's
        **{k: round(result[k] / args.batch, 1) for k in ("preprocess_ms", "vision_ms", "prefill_ms")},
        "decode_ms_per_token": round(result["decode_ms"] / max(args.new_tokens - 1, 1), 1),
        "docs_per_s": round(1000 * args.batch / total_ms, 4),
        "peak_mib": round(peak_rss_mib()),
        "max_logit_diff": round((result["logits"] - expected).abs().max().item(), 4),
        "logit_scale": round(expected.abs().max().item(), 2),
        "greedy_agreement": round(
            (result["logits"].argmax(-1) == expected.argmax(-1)).float().mean().item(), 4
        ),
    }


class Variant:
    """One variant's process: built at start (`ready`), then one document read per `read()`."""

    def __init__(self, name: str, precision: str, args: argparse.Namespace, reference: Path) -> None:
        self.label = f"{name} {precision}"
        command = [sys.executable, __file__, *sys.argv[1:], "--new-tokens", str(args.new_tokens)]
        self.process = subprocess.Popen(
            [*command, "--variant", f"{name}:{precision}:{reference}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._pipes()[1].readline().strip() != "ready":
            self.close()
            raise RuntimeError(f"{self.label}: the variant's process did not start")

    def read(self) -> dict:
        stdin, stdout = self._pipes()
        stdin.write("run\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label}: the variant's process ended")
        return json.loads(line)

    def close(self) -> None:
        self._pipes()[0].close()
        self.process.wait()

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        return self.process.stdin, self.process.stdout


def measure_model(name: str, precisions: list[str], args: argparse.Namespace, scratch: Path) -> list[dict]:
    """Every variant of one model, each in a process of its own (its peak memory its own). With one round,
    each is built, reads the document and ends before the next starts; with more, all are built one after
    the other and stay alive, then read the document in turn, round after round, so that the machine's drift
    during a round falls on all of them alike. Returns one row per variant: its median round, and its
    documents/s over float32's in each round."""
    reference = scratch / f"{name}.pt"
    rounds: dict[str, list[dict]] = {precision: [] for precision in precisions}
    if args.rounds == 1:
        for precision in precisions:
            variant = Variant(name, precision, args, reference)
            try:
                rounds[precision].append(variant.read())
            finally:
                variant.close()
            print(json.dumps(rounds[precision][-1]), file=sys.stderr, flush=True)
    else:
        variants: dict[str, Variant] = {}
        try:
            for precision in precisions:
                variants[precision] = Variant(name, precision, args, reference)
            for number in range(args.rounds):
                for precision, variant in variants.items():
                    rounds[precision].append(variant.read())
                    print(
                        f"round {number + 1}: {json.dumps(rounds[precision][-1])}",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            for variant in variants.values():
                variant.close()
    base = [row["docs_per_s"] for row in rounds["float32"]]
    rows = []
    for runs in rounds.values():
        ratios = [row["docs_per_s"] / b for row, b in zip(runs, base, strict=True)]
        median_run = sorted(runs, key=lambda row: row["docs_per_s"])[(len(runs) - 1) // 2]
        rows.append({**median_run, "peak_mib": max(r["peak_mib"] for r in runs), "ratios": ratios})
    return rows


def decode_steps(value: str) -> int:
    """`--new-tokens`: a number, or `receipt`: the median number of forward passes the committed sample
    receipts' answers take with bayou's jump-forward (their ground truth replayed through the grammar with
    the published tokenizer, bench/tokenization.py), as a receipt's decoding costs a real model."""
    if value != "receipt":
        return int(value)
    grammars = published_grammars("spaced")
    return int(statistics.median(forward_steps(grammars, row).steps for row in sample_rows(["receipt"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="h2ovl-800m,h2ovl-2b")
    parser.add_argument("--precisions", default="float32,bfloat16,int8,int8-dynamic")
    parser.add_argument("--max-tiles", type=int, default=2)  # a 600×1400 receipt: 2 tiles + thumbnail
    parser.add_argument(
        "--new-tokens",
        type=decode_steps,
        default="receipt",
        help="decode steps: a number, or 'receipt' (default): the forward passes a sample receipt's answer takes",
    )
    parser.add_argument("--prompt-text-tokens", type=int, default=633)  # the receipt question's length
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="documents each variant reads, the variants taking turns (their processes all alive at once)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="documents read together, as a worker batches them (BAYOU_BATCH_SIZE; its default is 8)",
    )
    parser.add_argument("--cache", choices=list(CACHES), default="growing")
    parser.add_argument(
        "--attention",
        choices=["bayou", "sdpa"],
        default="bayou",
        help="bayou: the engine's (SDPA, its own CPU decoding step); sdpa: transformers' SDPA throughout",
    )
    parser.add_argument("--matmul", action="store_true", help="only the one-matmul comparison, GFLOP/s")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # name:precision:reference, run in a child
    args = parser.parse_args()
    if args.matmul:
        configure_cpu_runtime(args.threads)
        print(json.dumps({"threads": torch.get_num_threads(), "gflops": matmul_gflops()}))
        return
    if args.variant:
        name, precision, reference = args.variant.split(":", 2)
        serve_variant(name, precision, args, Path(reference))
        return
    print(f"decode steps per document: {args.new_tokens}", file=sys.stderr)
    precisions = args.precisions.split(",")
    if precisions[0] != "float32":
        parser.error("the first precision must be float32: the others are compared with it")

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models.split(","):
            rows += measure_model(name, precisions, args, Path(scratch))

    threads = configure_cpu_runtime(args.threads)
    flags = cpu_flags(Path("/proc/cpuinfo"))
    simd = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx_vnni", "avx2")))
    print(f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"Machine: {platform.processor() or platform.machine()}, {threads} threads, native bf16: "
        f"{cpu_has_native_bf16()} ({' '.join(simd) or 'no AVX2/AVX-512 flags'}); torch {torch.__version__}"
    )
    print(f"Command: python bench/cpu_precision.py {' '.join(sys.argv[1:])}\n")
    print(
        f"Each variant's median of {args.rounds} rounds (the variants take turns in each round); × float32: "
        "the median of the rounds' ratios, then each round's."
    )
    if args.batch > 1:
        print(
            f"{args.batch} documents read together: stage times per document, decode ms per step (all of them)."
        )
    print()
    print(
        "| model | precision | batch | tiles | prompt tokens | preprocess ms | vision ms | prefill ms | decode ms/token "
        "| documents/s | × float32 | × float32 by round | peak MiB | weights MiB | max \\|Δlogit\\| (scale) "
        "| greedy agreement |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['precision']} | {r['batch']} | {r['tiles']} | {r['prompt_tokens']} | {r['preprocess_ms']} | "
            f"{r['vision_ms']} | {r['prefill_ms']} | {r['decode_ms_per_token']} | {r['docs_per_s']} | "
            f"{statistics.median(r['ratios']):.2f} | {', '.join(f'{x:.2f}' for x in r['ratios'])} | "
            f"{r['peak_mib']} | {r['weights_mib']} | "
            f"{r['max_logit_diff']} ({r['logit_scale']}) | {r['greedy_agreement']:.1%} of {args.new_tokens * args.batch} |"
        )


if __name__ == "__main__":
    main()
