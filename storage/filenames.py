"""Upload names as display names: never trusted as paths, never able to spoof the UI."""

from __future__ import annotations

import os
import re
import unicodedata

MAX_LENGTH = 255
FALLBACK = "upload"
_MAX_EXTENSION = 16


def sanitize_filename(name: str | None) -> str:
    # browsers and scanners may send a full client-side path, in either separator style
    base = re.split(r"[\\/]", name or "")[-1]
    base = unicodedata.normalize("NFC", base)
    # category C: control characters, and format characters such as bidi overrides ("txt.exe" shown
    # as "exe.txt")
    base = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in base)
    base = " ".join(base.split())
    if base in {"", ".", ".."}:
        return FALLBACK
    return _shorten(base)


def _shorten(name: str) -> str:
    if len(name) <= MAX_LENGTH:
        return name
    stem, extension = os.path.splitext(name)
    if len(extension) > _MAX_EXTENSION:
        return name[:MAX_LENGTH]
    return stem[: MAX_LENGTH - len(extension)] + extension
