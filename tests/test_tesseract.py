"""Tesseract's C API in a helper process (extractor/tesseract.py): the same reading as the `tesseract`
command, one model load for many pages, and a status, never an exception or a stuck worker, when the
helper overruns, dies, cannot load its model or was started by a parent process."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from bayou.synthetic.common import font
from extractor import tesseract
from tests.imaging import needs_tesseract

pytestmark = needs_tesseract

PSM = 6


def _page(lines: tuple[str, ...] = ("TOTAL 26.26", "CASH 30.00", "CHANGE 3.74")) -> Image.Image:
    image = Image.new("L", (420, 60 + 50 * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for n, text in enumerate(lines):
        draw.text((30, 30 + 50 * n), text, fill=0, font=font("mono-bold", 26))
    return image


def _in_a_new_thread(work):  # type: ignore[no-untyped-def]
    """`work()` run in a thread of its own, so with a helper of its own (one per thread)."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(work()))
    thread.start()
    thread.join(60)
    return out[0]


def test_the_helper_reads_what_the_tesseract_command_reads() -> None:
    page = _page()
    status, tsv = tesseract.read_tsv(page, PSM, 20)
    assert status == "ok"
    if shutil.which("tesseract") is None:
        pytest.skip("the tesseract command is not installed to compare with")
    png = io.BytesIO()
    page.save(png, format="PNG")
    command = subprocess.run(
        ["tesseract", "stdin", "stdout", "--psm", str(PSM), "tsv"],
        input=png.getvalue(),
        capture_output=True,
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        check=True,
    )
    header, body = command.stdout.decode().split("\n", 1)
    assert header.split("\t") == list(tesseract.TSV_COLUMNS)
    assert tsv.strip() == body.strip()
    assert "TOTAL" in tsv and "26.26" in tsv


def test_one_helper_serves_a_thread_page_after_page() -> None:
    def read_three() -> tuple[list[str], set[int]]:
        statuses, pids = [], set()
        for _ in range(3):
            statuses.append(tesseract.read_tsv(_page(), PSM, 20)[0])
            pids.add(tesseract._local.helper.process.pid)
        return statuses, pids

    statuses, pids = _in_a_new_thread(read_three)
    assert statuses == ["ok", "ok", "ok"] and len(pids) == 1


def test_a_page_past_its_time_stops_the_helper_and_the_next_page_is_read() -> None:
    def overrun_then_read() -> tuple[str, bool, str]:
        assert tesseract.read_tsv(_page(), PSM, 20)[0] == "ok"
        helper = tesseract._local.helper
        status = tesseract.read_tsv(_page(("SLOW",) * 12), PSM, 0.001)[0]
        return status, helper.process.poll() is not None, tesseract.read_tsv(_page(), PSM, 20)[0]

    assert _in_a_new_thread(overrun_then_read) == ("timeout", True, "ok")


def test_a_helper_that_died_is_replaced() -> None:
    def kill_then_read() -> tuple[str, bool]:
        assert tesseract.read_tsv(_page(), PSM, 20)[0] == "ok"
        first = tesseract._local.helper
        first.process.kill()
        first.process.wait()
        status = tesseract.read_tsv(_page(), PSM, 20)[0]
        return status, tesseract._local.helper is not first

    assert _in_a_new_thread(kill_then_read) == ("ok", True)


def test_no_model_to_load_is_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(tesseract._ENV, "TESSDATA_PREFIX", str(tmp_path))  # an empty folder: no eng model
    assert _in_a_new_thread(lambda: tesseract.read_tsv(_page(), PSM, 20)) == ("unavailable", "")


def test_no_library_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tesseract, "library", lambda: None)
    assert not tesseract.available()
    assert tesseract.read_tsv(_page(), PSM, 20) == ("unavailable", "")


def test_a_forked_child_starts_its_own_helper_and_leaves_the_parents() -> None:
    def fork_and_read() -> tuple[str, bool, bool, str]:
        assert tesseract.read_tsv(_page(), PSM, 20)[0] == "ok"
        reader, writer = os.pipe()
        child = os.fork()
        if child == 0:  # the child: read a page, say how it went, leave without the parent's exit handlers
            status = tesseract.read_tsv(_page(), PSM, 20)[0]
            os.write(writer, f"{status} {tesseract._local.helper.process.pid}".encode())
            os._exit(0)
        os.close(writer)
        said = os.read(reader, 100).decode()
        os.waitpid(child, 0)
        os.close(reader)
        parents = tesseract._local.helper
        childs_status, childs_helper = said.split()
        own_helper = int(childs_helper) != parents.process.pid
        # the parent's helper was left running and still answers
        return (
            childs_status,
            own_helper,
            parents.process.poll() is None,
            tesseract.read_tsv(_page(), PSM, 20)[0],
        )

    assert _in_a_new_thread(fork_and_read) == ("ok", True, True, "ok")


def test_a_page_interrupted_midway_does_not_answer_for_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    class SoftTimeLimit(Exception):
        """FAKE: what Celery raises in a task past its soft time limit."""

    real = tesseract._read_exactly
    calls = []

    def interrupted_once(stream, size, deadline):  # type: ignore[no-untyped-def]
        calls.append(size)
        if len(calls) == 1:
            raise SoftTimeLimit
        return real(stream, size, deadline)

    def interrupt_then_read() -> tuple[bool, str]:
        assert tesseract.read_tsv(_page(), PSM, 20)[0] == "ok"
        monkeypatch.setattr(tesseract, "_read_exactly", interrupted_once)
        with pytest.raises(SoftTimeLimit):
            tesseract.read_tsv(_page(("FIRST 11.11",)), PSM, 20)
        status, tsv = tesseract.read_tsv(_page(("SECOND 22.22",)), PSM, 20)
        return status == "ok" and "SECOND" in tsv, tsv

    ok, tsv = _in_a_new_thread(interrupt_then_read)
    assert ok and "FIRST" not in tsv, tsv


def test_no_process_to_start_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_more_processes(*args: object, **kwargs: object) -> None:
        raise BlockingIOError("Resource temporarily unavailable")  # FAKE: fork failing, as at a process limit

    monkeypatch.setattr(tesseract.subprocess, "Popen", no_more_processes)
    assert _in_a_new_thread(lambda: tesseract.read_tsv(_page(), PSM, 20)) == ("unavailable", "")
