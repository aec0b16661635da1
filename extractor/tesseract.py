"""Tesseract's C API (libtesseract, from Debian's tesseract-ocr) in a helper process kept for the worker's life.

Why not the `tesseract` command, as before: every run of it loaded the English model again (~150 ms), and a
page takes up to four runs (extractor/ocr.py), so a third to a half of a receipt page's OCR was start-up.
Why not the library in the worker's own process: Tesseract's OpenMP threads would share the process with
torch's (the same `libgomp.so.1`), unbounded by OMP_THREAD_LIMIT once torch has read it, and a worker that
forks after OpenMP has run can hang; a crash in Tesseract would take the worker with it. The helper is
started on first use in each process and thread, is given one page at a time, and is killed and started
again when a page overruns its time or the helper dies; the caller then gets a status, never an exception.

The wire, both ways little-endian: the helper says it is ready with (status, 0) where status 0 means the
model loaded; each request is (width, height, page segmentation mode) and the 8-bit grey pixels, row by
row; each answer is (status, length) and Tesseract's TSV without its header line (`TSV_COLUMNS`), UTF-8.
This file is also the helper (`python tesseract.py LIBRARY`) and imports nothing but the standard library
for that reason.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import functools
import os
import select
import struct
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from PIL import Image

TSV_COLUMNS = "level page_num block_num par_num line_num word_num left top width height conf text".split()
_ANSWER = struct.Struct("<iI")
_REQUEST = struct.Struct("<III")
# Tesseract's own threads: one, so that two pages on a 2-core machine run side by side without oversubscribing
_ENV = {"OMP_THREAD_LIMIT": "1"}
# starting the helper (Python and the English model) takes ~0.2 s; a helper that is not ready in this long
# is not going to be
_START_S = 30.0


@functools.cache
def library() -> str | None:
    """libtesseract's file name where the dynamic linker finds it, else None."""
    return ctypes.util.find_library("tesseract")


def available() -> bool:
    return library() is not None


def read_tsv(grey: Image.Image, page_segmentation: int, timeout_s: float) -> tuple[str, str]:
    """Tesseract's TSV of a grey image and a status: ok, timeout (the helper is then stopped),
    unreadable (Tesseract failed or its helper died) or unavailable (no libtesseract, or no model)."""
    if library() is None:
        return "unavailable", ""
    deadline = time.monotonic() + timeout_s
    helper = _helper(deadline)
    if isinstance(helper, str):
        return helper, ""
    return helper.read(grey, page_segmentation, deadline)


class _Helper:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", __file__, str(library())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **_ENV},
        )

    def ready(self, deadline: float) -> str:
        answer = self._answer(deadline)
        if isinstance(answer, str):
            return "unavailable" if answer == "unreadable" else answer
        return "ok" if answer[0] == 0 else "unavailable"

    def read(self, grey: Image.Image, page_segmentation: int, deadline: float) -> tuple[str, str]:
        assert self.process.stdin is not None
        try:
            pixels = (grey if grey.mode == "L" else grey.convert("L")).tobytes()
            self.process.stdin.write(_REQUEST.pack(grey.width, grey.height, page_segmentation) + pixels)
            self.process.stdin.flush()
            answer = self._answer(deadline)
        except OSError:
            self.stop()
            return "unreadable", ""
        except BaseException:
            # interrupted mid-page (a task's soft time limit, Ctrl-C): the helper's answer would be taken for
            # the next page's, so the helper goes
            self.stop()
            raise
        if isinstance(answer, str):
            return answer, ""
        status, tsv = answer
        return ("ok" if status == 0 else "unreadable"), tsv

    def _answer(self, deadline: float) -> tuple[int, str] | str:
        """The helper's next answer, or the status it failed with (the helper then stopped)."""
        assert self.process.stdout is not None
        head = _read_exactly(self.process.stdout, _ANSWER.size, deadline)
        if isinstance(head, bytes):
            status, length = _ANSWER.unpack(head)
            body = _read_exactly(self.process.stdout, length, deadline)
            if isinstance(body, bytes):
                return status, body.decode("utf-8", "replace")
            head = body
        self.stop()
        return head

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


def _read_exactly(stream: BinaryIO, size: int, deadline: float) -> bytes | str:
    """`size` bytes from the helper by the deadline, else 'timeout' or, where it ended, 'unreadable'."""
    chunks: list[bytes] = []
    wanted = size
    # poll, not select: a server's worker may hold more than select's 1,024 descriptors
    ready = select.poll()
    ready.register(stream.fileno(), select.POLLIN)
    while wanted:
        left = deadline - time.monotonic()
        if left <= 0 or not ready.poll(left * 1000):
            return "timeout"
        chunk = os.read(stream.fileno(), min(wanted, 1 << 20))
        if not chunk:
            return "unreadable"
        chunks.append(chunk)
        wanted -= len(chunk)
    return b"".join(chunks)


_local = threading.local()
_started: list[_Helper] = []
_started_lock = threading.Lock()


def _helper(deadline: float) -> _Helper | str:
    """This thread's helper, started (and waited for) if it has none or its one has stopped."""
    helper: _Helper | None = getattr(_local, "helper", None)
    if helper is not None and helper.pid != os.getpid():
        # a forked child: the helper and its pipes are the parent's; close this process's copies of them
        for stream in (helper.process.stdin, helper.process.stdout):
            if stream is not None:
                stream.close()
        helper = None
    if helper is not None and helper.process.poll() is not None:
        helper.stop()
        helper = None
    if helper is None:
        try:
            helper = _Helper()
        except OSError:  # no process to be had (out of memory, of processes): the page goes unread
            return "unavailable"
        with _started_lock:  # those stopped (overrun, died) are done with
            _started[:] = [h for h in _started if h.process.returncode is None]
            _started.append(helper)
        try:
            status = helper.ready(min(deadline, time.monotonic() + _START_S))
        except BaseException:
            helper.stop()
            raise
        if status != "ok":
            _local.helper = None
            return status
    _local.helper = helper
    return helper


@atexit.register
def _stop_helpers() -> None:
    # closing its input ends a helper's loop, and it frees the model, quietly
    with _started_lock:
        mine = [h for h in _started if h.pid == os.getpid() and h.process.poll() is None]
    for helper in mine:
        assert helper.process.stdin is not None
        helper.process.stdin.close()
        try:
            helper.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            helper.process.kill()


# The helper's side: the C API through ctypes, one page at a time, until its input ends.


def _bind(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    handle, text = ctypes.c_void_p, ctypes.c_char_p
    signatures = {
        "TessBaseAPICreate": ([], handle),
        "TessBaseAPIInit3": ([handle, text, text], ctypes.c_int),
        "TessBaseAPISetVariable": ([handle, text, text], ctypes.c_int),
        "TessBaseAPISetPageSegMode": ([handle, ctypes.c_int], None),
        "TessBaseAPISetImage": ([handle, text, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int], None),
        "TessBaseAPIRecognize": ([handle, handle], ctypes.c_int),
        "TessBaseAPIGetTsvText": ([handle, ctypes.c_int], handle),
        "TessDeleteText": ([handle], None),
        "TessBaseAPIClear": ([handle], None),
        "TessBaseAPIEnd": ([handle], None),
        "TessBaseAPIDelete": ([handle], None),
    }
    for name, (arguments, result) in signatures.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = arguments, result
    return lib


def _serve(path: str, requests: BinaryIO, answers: BinaryIO) -> int:
    lib = _bind(path)
    api = lib.TessBaseAPICreate()
    loaded = lib.TessBaseAPIInit3(api, None, b"eng")
    answers.write(_ANSWER.pack(loaded, 0))
    answers.flush()
    if loaded != 0:
        return 1
    # Tesseract's messages ("Estimating resolution as ...") would otherwise go to the worker's log
    lib.TessBaseAPISetVariable(api, b"debug_file", os.devnull.encode())
    while head := requests.read(_REQUEST.size):
        width, height, page_segmentation = _REQUEST.unpack(head)
        pixels = requests.read(width * height)
        if len(pixels) != width * height:
            break  # the worker went away mid-request
        lib.TessBaseAPISetPageSegMode(api, page_segmentation)
        lib.TessBaseAPISetImage(api, pixels, width, height, 1, width)
        status = lib.TessBaseAPIRecognize(api, None)
        tsv = b""
        if status == 0:
            text = lib.TessBaseAPIGetTsvText(api, 0)
            tsv = ctypes.string_at(text)
            lib.TessDeleteText(text)
        lib.TessBaseAPIClear(api)
        answers.write(_ANSWER.pack(status, len(tsv)) + tsv)
        answers.flush()
    lib.TessBaseAPIEnd(api)
    lib.TessBaseAPIDelete(api)
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer))
