"""Where a model runs and in what precision, and how many CPU threads it may use.

`auto` precision is bfloat16 wherever the hardware multiplies bfloat16 natively: CUDA GPUs, and CPUs with
AVX-512 BF16 or AMX (the published weights are bfloat16, so nothing is lost against them). A CPU without
those emulates bfloat16 through float32 conversions, several times slower than float32 itself (measured:
docs/benchmarks.md), so there `auto` is float32.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import torch

from extractor.errors import CheckpointError
from extractor.precisions import DTYPE_NAMES

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
# /proc/cpuinfo flags of CPUs with bfloat16 dot products in hardware
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# oneDNN, which runs bfloat16 matmuls on CPUs, keeps what it compiled for each matmul shape it meets in two
# caches of 1,024 entries (its own primitives, and torch's ideep layer above it). A decoding step's attention
# meets a new shape every token (one key more), so a bfloat16 worker grew ~1.2 MB a token until both were
# full (docs/benchmarks.md). A step reuses a handful of shapes (its Linear layers, attention's two products),
# so 128 entries keep those warm (a batch adds a few more) and bound what the caches hold to ~60 MB.
ONEDNN_CACHE_ENTRIES = 128
ONEDNN_CACHE_SETTINGS = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError(
            f"device {device} asked for, but CUDA is not available", code="configuration_error"
        )
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
        return torch.bfloat16 if native else torch.float32
    if dtype not in DTYPES:
        raise CheckpointError(
            f"unknown dtype {dtype!r}; use auto or one of {sorted(DTYPES)}", code="configuration_error"
        )
    return DTYPES[dtype]


@lru_cache(maxsize=1)
def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX)."""
    return bool(cpu_flags(cpuinfo) & NATIVE_BF16_FLAGS)


def cpu_flags(cpuinfo: Path) -> set[str]:
    """The feature flags of the first CPU listed in a /proc/cpuinfo (empty where there is none: not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def available_cores(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota (`docker --cpus`),
    which the affinity does not show."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = cgroup.read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


def bound_onednn_caches(entries: int = ONEDNN_CACHE_ENTRIES) -> None:
    """Cap oneDNN's compiled-shape caches at `entries`, unless the environment already sets them. oneDNN reads
    the settings once, at the process's first bfloat16 matmul: call this before the model runs."""
    for name in ONEDNN_CACHE_SETTINGS:
        os.environ.setdefault(name, str(entries))


def configure_threads(threads: int | None = None) -> int:
    """Give torch's intra-op pool `threads` threads (None: every core this process may use); returns it.

    torch sizes its pool from the cores it sees, not from a container's CPU quota, so a worker given 2 cores
    of a 64-core host would run 64 threads fighting over 2."""
    count = threads or available_cores()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def configure_cpu_runtime(threads: int | None = None) -> int:
    """What a process does before its model first runs on a CPU: bound oneDNN's shape caches and size torch's
    thread pool (`configure_threads`); returns the thread count. One call, so that no caller sizes the pool
    and forgets the caches, which oneDNN reads only once."""
    bound_onednn_caches()
    return configure_threads(threads)
