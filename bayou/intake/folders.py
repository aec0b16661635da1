"""Which files of a folder may be taken: a folder named relative to a root must stay inside it (no
absolute path, no `..`, no symlink of the folder or of a file in it that leads outside)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from extractor.errors import InputError

INVALID_FOLDER = "invalid_folder"
FOLDER_NOT_FOUND = "folder_not_found"


def resolve_folder(root: Path, folder: str) -> Path:
    """The real directory `folder` names under `root`; InputError `invalid_folder` when it is not
    confined to `root`, `folder_not_found` when there is no such directory."""
    if "\x00" in folder or "\\" in folder:
        raise InputError("the folder name contains a forbidden character", code=INVALID_FOLDER)
    relative = PurePosixPath(folder)
    if relative.is_absolute() or ".." in relative.parts:
        raise InputError("the folder must be relative to the batch root, without '..'", code=INVALID_FOLDER)
    real_root = root.resolve()
    try:
        target = (real_root / relative).resolve()
        is_dir = target.is_dir()
    except OSError as exc:  # a name the file system refuses (too long, say): no folder by that name
        raise InputError(f"the folder name is not usable ({type(exc).__name__})", code=INVALID_FOLDER) from exc
    if not target.is_relative_to(real_root):
        raise InputError("the folder leads outside the batch root", code=INVALID_FOLDER)
    if not is_dir:
        raise InputError("no such folder under the batch root", code=FOLDER_NOT_FOUND)
    return target


def candidate_files(folder: Path, root: Path, *, recursive: bool) -> Iterator[Path]:
    """Regular files in `folder` (and below, if recursive) whose real location is inside `root`, in a
    stable order. Hidden files are skipped: they are usually partial copies or editor leftovers."""
    real_root = root.resolve()
    for directory, subdirs, files in os.walk(folder, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".")) if recursive else []
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(directory) / name
            real = path.resolve()
            if real.is_relative_to(real_root) and real.is_file():
                yield real
