"""ABA routing numbers (US bank checks): the 3-7-1 weighted checksum."""

from __future__ import annotations

_WEIGHTS = (3, 7, 1, 3, 7, 1, 3, 7, 1)


def aba_check_digit(first8: str) -> str:
    """The ninth digit that makes `first8` + digit a valid routing number."""
    if len(first8) != 8 or not first8.isdigit():
        raise ValueError("an ABA routing number prefix is 8 digits")
    partial = sum(int(d) * w for d, w in zip(first8, _WEIGHTS, strict=False))
    return str((10 - partial % 10) % 10)


def is_valid_routing_number(value: str) -> bool:
    if len(value) != 9 or not value.isdigit():
        return False
    return sum(int(d) * w for d, w in zip(value, _WEIGHTS, strict=True)) % 10 == 0
