"""Amounts in words as written on the legal line of a US check: "One hundred twenty-three and 45/100"."""

from __future__ import annotations

from decimal import Decimal

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))


def _below_hundred(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] if ones == 0 else f"{_TENS[tens]}-{_ONES[ones]}"


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    parts = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest or not hundreds:
        parts.append(_below_hundred(rest))
    return " ".join(parts)


def integer_to_words(n: int) -> str:
    """Lower-case English words for a non-negative integer below one trillion, without "and"."""
    if n < 0 or n >= 10**12:
        raise ValueError("supported range is 0 .. 999,999,999,999")
    parts: list[str] = []
    for scale, name in _SCALES:
        count, n = divmod(n, scale)
        if count:
            parts.append(f"{_below_thousand(count)} {name}")
    if n or not parts:
        parts.append(_below_thousand(n))
    return " ".join(parts)


def amount_to_words(amount: Decimal | str) -> str:
    """Dollars in words, cents as a fraction over 100, first letter capitalised."""
    value = Decimal(amount)
    if value < 0:
        raise ValueError("a check amount cannot be negative")
    cents_total = int((value * 100).to_integral_value())
    dollars, cents = divmod(cents_total, 100)
    text = f"{integer_to_words(dollars)} and {cents:02d}/100"
    return text[0].upper() + text[1:]
