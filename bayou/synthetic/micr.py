"""The MICR line at the foot of a check, in the look of the E-13B type.

No E-13B font ships with Debian or with DejaVu (which also lacks the U+2446..U+2449 OCR symbols), so the
digits are DejaVu Sans Mono Bold on E-13B's 1/8 inch pitch, and the special symbols are drawn as the
bar-and-square shapes of E-13B: transit ⑆ (routing field delimiter) and on-us ⑈ (account field delimiter).
The text form used by `micr_text` writes them as the conventional ASCII stand-ins "A" (transit) and "C"
(on-us), as MICR readers' plain-text output does.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from bayou.synthetic.common import font

TRANSIT = "A"
ON_US = "C"
_PITCH_IN = 0.125  # E-13B: eight characters to the inch
_HEIGHT_IN = 0.117

# shapes as rectangles in the character cell, (left, top, right, bottom) as fractions of pitch and height
_SYMBOLS = {
    TRANSIT: ((0.12, 0.0, 0.34, 1.0), (0.52, 0.0, 0.86, 0.3), (0.52, 0.7, 0.86, 1.0)),
    ON_US: ((0.08, 0.0, 0.28, 0.62), (0.42, 0.0, 0.62, 0.62), (0.08, 0.76, 0.62, 1.0)),
}


def micr_text(routing: str, account: str, check_number: str) -> str:
    """The personal-check field order: transit routing transit, account on-us, then the check number."""
    return f"{TRANSIT}{routing}{TRANSIT} {account}{ON_US} {check_number}"


def micr_box(
    text: str, start: int, end: int, x: int, baseline: int, dpi: int
) -> tuple[float, float, float, float]:
    """The ink box of characters `start`..`end` of `text` drawn by `draw_micr(.., text, x, baseline, dpi, ..)`.

    The ink, not the 1/8 inch cells: a digit is narrower than its pitch, and OCR boxes the ink. Only those
    characters are drawn, in their places, on a mask as large as the line; all-blank ones keep the cells."""
    pitch = _PITCH_IN * dpi
    cells = (x + start * pitch, baseline - _HEIGHT_IN * dpi, x + end * pitch, baseline)
    pad = int(pitch) + 4  # room past the last cell and under the baseline for overhanging ink
    mask = Image.new("L", (int(x + len(text) * pitch) + pad, baseline + pad), 0)
    draw_micr(ImageDraw.Draw(mask), " " * start + text[start:end], x, baseline, dpi, 255)
    ink = mask.getbbox()
    return cells if ink is None else ink


def draw_micr(
    draw: ImageDraw.ImageDraw, text: str, x: int, baseline: int, dpi: int, ink: tuple[int, int, int] | int
) -> None:
    """Draw `text` (digits, spaces, "A", "C") with its bottom edge on `baseline`."""
    pitch = _PITCH_IN * dpi
    height = _HEIGHT_IN * dpi
    # DejaVu digits' cap height is ~0.73 of the font size, so this makes them E-13B's height
    digits = font("mono-bold", round(height / 0.73))
    top = baseline - height
    for i, char in enumerate(text):
        left = x + i * pitch
        if char in _SYMBOLS:
            for fl, ft, fr, fb in _SYMBOLS[char]:
                draw.rectangle(
                    (left + fl * pitch, top + ft * height, left + fr * pitch, top + fb * height), fill=ink
                )
        elif char != " ":
            draw.text((left + pitch / 2, baseline), char, font=digits, fill=ink, anchor="ms")
