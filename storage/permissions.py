"""Who may read what bayou keeps on disk: its owner only.

The data directory holds the SQLite database (licence fields, key hashes), its WAL and shared-memory files,
the blobs (the uploads themselves) and the installation secrets. Directories are made 0700 and files 0600
whatever the process's umask, and ones found looser (made by an older version, or by hand) are tightened
when a process starts on them. Tightening only ever removes permission bits; it never widens a mode.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# SQLite's companions of a database file; it creates them with the database file's own mode
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: str | Path) -> Path:
    """`path` as a directory only its owner can enter: created 0700 (parents too) or tightened to it."""
    path = Path(path)
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    tighten(path, PRIVATE_DIR)
    return path


def private_sqlite_file(path: str | Path) -> None:
    """The database file created 0600 before SQLite creates it (its WAL and SHM files then get the same
    mode), and an existing one and its companions tightened to 0600."""
    path = Path(path)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE))
    for name in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        tighten(name, PRIVATE_FILE)


def tighten(path: str | Path, mode: int) -> None:
    """Removes from `path`'s mode every bit `mode` lacks; nothing when it is missing or a symlink (whose
    target is not ours to change)."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(status.st_mode):
        return
    current = stat.S_IMODE(status.st_mode)
    if current & ~mode:
        try:
            os.chmod(path, current & mode)
        except PermissionError:
            # another user's file: a warning, not a refusal to start (the owner must tighten it)
            log.warning(
                "cannot tighten the mode of %s (%o) to %o: not its owner", path, current, current & mode
            )
