"""oneDNN's compiled-shape caches are bounded before a model runs: bfloat16 decoding meets a new matmul shape
every token, and with oneDNN's defaults a worker's memory grew with each one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from extractor.model.cpu_linear import can_pack
from extractor.model.device import (
    ONEDNN_CACHE_ENTRIES,
    ONEDNN_CACHE_SETTINGS,
    bound_onednn_caches,
    configure_cpu_runtime,
)

# a process that meets 600 bfloat16 matmul shapes, as 600 decoding steps' attention does (one key more each),
# and prints how much more memory glibc's malloc holds afterwards, in MiB
SHAPES_SCRIPT = textwrap.dedent(
    """
    import ctypes, sys
    from extractor.model.device import bound_onednn_caches
    if sys.argv[1] == "bounded":
        bound_onednn_caches()
    import torch

    class Mallinfo(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo
    def held():
        info = libc.mallinfo2()
        return (info.uordblks + info.hblkhd) / 2**20

    torch.set_num_threads(1)
    query = torch.randn(8, 96, 2, dtype=torch.bfloat16)
    for keys in range(100, 110):  # oneDNN's own start-up allocations, before counting
        torch.randn(8, keys, 96, dtype=torch.bfloat16) @ query
    start = held()
    for keys in range(200, 800):
        torch.randn(8, keys, 96, dtype=torch.bfloat16) @ query
    print(held() - start)
    """
)


def test_a_setting_from_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = ONEDNN_CACHE_SETTINGS
    monkeypatch.setenv(first, "7")
    monkeypatch.delenv(second, raising=False)
    bound_onednn_caches()
    assert os.environ[first] == "7"
    assert os.environ[second] == str(ONEDNN_CACHE_ENTRIES)


def test_the_cpu_runtime_setup_bounds_the_caches_and_sizes_the_thread_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ONEDNN_CACHE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    try:
        assert configure_cpu_runtime(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert all(os.environ[name] == str(ONEDNN_CACHE_ENTRIES) for name in ONEDNN_CACHE_SETTINGS)


@pytest.mark.skipif(
    not can_pack(torch.device("cpu")),
    reason="this CPU's oneDNN has no bfloat16 kernels (no AVX-512 BF16 or AMX): bfloat16 matmuls bypass it",
)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts glibc's malloc (mallinfo2)")
def test_bounded_caches_stop_memory_growing_with_each_new_matmul_shape() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ONEDNN_CACHE_SETTINGS}

    def growth(mode: str) -> float:
        run = subprocess.run(
            [sys.executable, "-c", SHAPES_SCRIPT, mode], env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stderr
        return float(run.stdout.split()[-1])

    unbounded, bounded = growth("default"), growth("bounded")
    # measured: ~0.5 MiB a shape with oneDNN's defaults (1,024 entries each), ~65 MiB in all with 128
    assert bounded < 90
    assert unbounded > 3 * bounded
