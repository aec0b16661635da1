"""Which files of the folder are candidates, and what they look like on disk right now."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bayou.intake import candidate_files
from bayou.intake.folders import Candidate


@dataclass(frozen=True)
class FileStat:
    """What settling compares: a writer changes at least one of these."""

    size: int
    mtime_ns: int


def list_candidates(folder: Path, *, recursive: bool) -> list[Candidate]:
    """Regular, non-hidden files under `folder` whose real location stays inside it (a symlink that
    leads outside is skipped), each real file once, in a stable order, with the identity it had when it
    was checked: only that file is read later (`take_file`'s `expected`). Content is judged later, by
    magic bytes."""
    # the folder is its own root: the same confinement rule as a server-side batch
    unique: dict[Path, Candidate] = {}
    for candidate in candidate_files(folder, folder, recursive=recursive):
        unique.setdefault(candidate.path, candidate)  # two links to one file: it is taken once
    return list(unique.values())


def stat_file(path: Path) -> FileStat | None:
    """The file's size and mtime; None when it is gone (moved away or deleted meanwhile)."""
    try:
        result = os.stat(path)
    except FileNotFoundError:
        return None
    return FileStat(result.st_size, result.st_mtime_ns)
