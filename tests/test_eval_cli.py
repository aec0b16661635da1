"""`bayou eval` on the committed samples with the tiny checkpoint: table shape, parse rate, resuming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _eval(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bayou.cli", "eval", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "160", **env},
        timeout=600,
        cwd=ROOT,
    )


def test_eval_prints_table6_and_resumes(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {"BAYOU_MODEL_800M": str(tiny_checkpoint), "BAYOU_DATA_DIR": str(tmp_path / "data")}
    out, report = tmp_path / "records.jsonl", tmp_path / "report.json"
    args = [
        "samples",
        "--model",
        "h2ovl-800m",
        "--out",
        str(out),
        "--report",
        str(report),
        "--max-tiles",
        "1",
    ]
    first = _eval(*args, env=env)
    assert first.returncode == 0, first.stderr
    metadata = [json.loads(line) for line in (ROOT / "samples" / "metadata.jsonl").read_text().splitlines()]
    assert len(out.read_text().splitlines()) == len(metadata)
    assert "Table-6" in first.stdout and "parse rate" in first.stdout
    for doc_type in ("receipt", "drivers_license", "check"):
        assert doc_type in first.stdout
    data = json.loads(report.read_text())
    assert data["parse_rate"]["h2ovl-800m"] == 1.0  # constrained decoding: every output parses, even noise
    assert set(data["table6"]["h2ovl-800m"]) == {"receipt", "drivers_license", "check", "average"}
    assert all(0.0 <= v <= 1.0 for v in data["table6"]["h2ovl-800m"].values())
    # the samples record where each value was drawn: the report says how many the random model's were found
    localisation = data["localisation"]["h2ovl-800m"]
    assert set(localisation) == {"receipt", "drivers_license", "check"}
    assert all(0 <= c["located"] <= c["boxed"] and c["boxed"] > 0 for c in localisation.values())
    assert "Localisation" in first.stdout

    # a second run finds every document done: nothing is generated again, the table is the same
    before = out.read_text()
    second = _eval(*args, env=env)
    assert second.returncode == 0, second.stderr
    assert out.read_text() == before
    assert json.loads(report.read_text())["table6"] == data["table6"]


def test_eval_of_a_missing_dataset_is_a_usage_error(tmp_path: Path) -> None:
    run = _eval(str(tmp_path / "nowhere"), "--model", "h2ovl-800m", env={"BAYOU_DATA_DIR": str(tmp_path)})
    assert run.returncode == 2 and "error" in run.stderr
