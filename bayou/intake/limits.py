"""The input caps (size, pages, pixels), from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from bayou.settings import Settings
from extractor.errors import InputError

MIB = 1 << 20
TOO_LARGE = "too_large"


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pages: int
    max_pixels: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_upload_mb * MIB, settings.max_pages, settings.max_pixels)


def too_large(limits: Limits) -> InputError:
    return InputError(f"the file is over {limits.max_bytes} bytes", code=TOO_LARGE)


def check_size(size: int, limits: Limits) -> None:
    """Refuses a file by its size alone, before a byte of it is read."""
    if size > limits.max_bytes:
        raise too_large(limits)
