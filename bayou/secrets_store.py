"""Per-installation secrets kept in the data directory, for settings left empty.

Every process that shares the data dir (API, workers, CLI) must agree on the same secret, so the first
one to need it creates the file (mode 0600, exclusively) and the others read it.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from storage.permissions import private_dir


def installation_secret(data_dir: Path, name: str) -> str:
    """The secret stored in `data_dir/name`, created with 64 random hex characters on first use."""
    path = Path(data_dir) / name
    private_dir(path.parent)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    for _ in range(50):  # another process may have created it a moment ago and not written it yet
        text = path.read_text().strip()
        if text:
            return text
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty")
