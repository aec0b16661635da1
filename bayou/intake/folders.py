"""Which files of a folder may be taken: a folder named relative to a root must stay inside it (no
absolute path, no `..`, no symlink of the folder or of a file in it that leads outside).

Candidates come in the lexicographic order of their path's parts relative to the folder (a directory's
files and subdirectories sorted together by name, a subdirectory's whole subtree at its name's place), so
a walk can be checkpointed by the relative path of the last file it took and resumed just after it.
A file that cannot be looked at (a symlink loop, a link into a directory that is not ours to read) is
skipped, never the end of the walk. A candidate carries the identity (device, inode) of the file that was
checked, so that what is opened later can be compared with it (see `bayou.intake.storing.open_checked`):
the folder may change in between. Anything that is not a directory is a candidate, FIFOs and sockets too:
they are refused when taken, with a reason, and never opened."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import NamedTuple
from urllib.parse import quote, unquote_to_bytes

from extractor.errors import InputError

log = logging.getLogger(__name__)

INVALID_FOLDER = "invalid_folder"
FOLDER_NOT_FOUND = "folder_not_found"


class FileIdentity(NamedTuple):
    device: int
    inode: int

    @classmethod
    def of(cls, status: os.stat_result) -> FileIdentity:
        return cls(status.st_dev, status.st_ino)


class Candidate(NamedTuple):
    relative: str  # POSIX path under the folder, as walked (links not resolved): the walk's position
    path: Path  # the real file (links resolved): what is taken
    identity: FileIdentity | None = None  # of the file at `path` when it was checked; None: not checked


def encode_position(relative: str) -> str:
    """A walk position as ASCII text, for a database column: the bytes of its name, percent-encoded.
    Lossless where the str is not: a name that is not UTF-8 comes from os.scandir with surrogate escapes
    ("caf\\udce9.png"), which no database driver can encode."""
    return quote(os.fsencode(relative), safe="/")


def decode_position(text: str) -> str:
    """The position `encode_position` stored, as the walk yielded it (its parts compared as str)."""
    return os.fsdecode(unquote_to_bytes(text))


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
    except (OSError, RuntimeError) as exc:
        # a name the file system refuses (too long, say), or a symlink loop (RuntimeError on Python 3.11):
        # no folder by that name
        raise InputError(
            f"the folder name is not usable ({type(exc).__name__})", code=INVALID_FOLDER
        ) from exc
    if not target.is_relative_to(real_root):
        raise InputError("the folder leads outside the batch root", code=INVALID_FOLDER)
    if not is_dir:
        raise InputError("no such folder under the batch root", code=FOLDER_NOT_FOUND)
    return target


def candidate_files(
    folder: Path, root: Path, *, recursive: bool, after: str | None = None
) -> Iterator[Candidate]:
    """Files in `folder` (and below, if recursive) whose real location is inside `root` (regular ones, and
    FIFOs, sockets or devices to be refused), in the order of their relative path's parts; with `after` (a relative path as yielded before), only those
    that come strictly after it. Hidden files and directories are skipped: they are usually partial
    copies or editor leftovers; a symlink to a directory is not followed."""
    after_parts = PurePosixPath(after).parts if after else ()
    return _walk(folder, (), root.resolve(), recursive=recursive, after=after_parts)


def _walk(
    directory: Path, prefix: tuple[str, ...], real_root: Path, *, recursive: bool, after: tuple[str, ...]
) -> Iterator[Candidate]:
    # `after`: the parts, below this directory, of the position to resume after; () walks it all
    for entry in _sorted_entries(directory):
        name = entry.name
        if name.startswith(".") or (after and name < after[0]):
            continue  # hidden, or wholly before the position: not even looked at (no stat, no resolve)
        on_path = bool(after) and name == after[0]
        if _is_directory(entry):
            if recursive and not entry.is_symlink():
                below = after[1:] if on_path else ()
                yield from _walk(Path(entry.path), (*prefix, name), real_root, recursive=True, after=below)
            continue
        if on_path:
            # the file taken last; or a file now where the position lay inside a directory: before it
            continue
        confined = _confined_file(Path(entry.path), real_root)
        if confined is not None:
            yield Candidate("/".join((*prefix, name)), *confined)


def _confined_file(path: Path, real_root: Path) -> tuple[Path, FileIdentity] | None:
    """The file `path` leads to and its identity, if it lies inside `real_root` and is no directory; None
    when not, or when it cannot be told: a symlink loop (RuntimeError on Python 3.11, OSError later) or a
    link into a directory that is not ours to read (PermissionError) is one file that cannot be taken, not
    a reason to stop."""
    try:
        real = path.resolve()
        # looked at only once confined: a target outside the root is not even stat'ed. lstat: `real` has
        # no links left in it, unless one was put there since, which the identity then tells
        if real.is_relative_to(real_root):
            status = os.lstat(real)
            if not stat.S_ISDIR(status.st_mode):
                return real, FileIdentity.of(status)
    except (OSError, RuntimeError) as exc:
        # without the path (its message has it): a file name can be personal, a licence holder's
        log.info("a file that cannot be looked at is skipped (%s)", type(exc).__name__)
    return None


def _sorted_entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError:  # vanished or unreadable meanwhile: nothing to take there, as os.walk would have it
        return []


def _is_directory(entry: os.DirEntry[str]) -> bool:
    # follows a link, as os.walk does when it sorts entries into directories and files: a link to a
    # directory is neither walked nor taken
    try:
        return entry.is_dir()
    except OSError:
        return False
