"""Drawing a receipt's text lines as faded thermal print, then photographing it."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from bayou.synthetic import effects
from bayou.synthetic.common import Font, font, ink_box, numpy_rng

_MARGIN = 26
_SURFACES = ((92, 68, 48), (60, 62, 66), (150, 120, 90), (40, 48, 60), (180, 176, 168))


# a field shown by part of a line: (JSON pointer into the ground truth, first character, end character)
Mark = tuple[str, int, int]


@dataclass(frozen=True)
class PrintLine:
    text: str
    align: str = "left"  # "left" or "center"
    weight: str = "normal"  # "normal", "bold" or "big"
    marks: tuple[Mark, ...] = ()


def whole(pointer: str, text: str) -> tuple[Mark, ...]:
    """The mark of a field that is the whole line."""
    return ((pointer, 0, len(text)),)


def tail(pointer: str, text: str, value: str) -> Mark:
    """The mark of `value` printed at the end of `text` (a right-aligned amount)."""
    return (pointer, len(text) - len(value), len(text))


def _fitting_size(role: str, text: str, width: int, start: int) -> int:
    """The largest font size, from `start` down, at which `text` fits in `width` pixels."""
    size = start
    while size > 8 and font(role, size).getlength(text) > width:
        size -= 1
    return size


def _faces(columns: int, content_width: int) -> dict[str, Font]:
    size = _fitting_size("mono", "0" * columns, content_width, 40)
    return {
        "normal": font("mono", size),
        "bold": font("mono-bold", size),
        "big": font("mono-bold", size * 3 // 2),
    }


def _line_height(face: Font) -> int:
    return int(face.size * 1.32) if hasattr(face, "size") else 14


def _union(a: effects.Box | None, b: effects.Box) -> effects.Box:
    return b if a is None else (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _draw_lines(
    mask: Image.Image, lines: list[PrintLine], faces: dict[str, Font], top: int, boxes: dict[str, effects.Box]
) -> int:
    """Print `lines` into the ink mask, adding each marked field's ink box to `boxes` (a field over two
    lines gets the box around both); returns the y below the last line."""
    draw = ImageDraw.Draw(mask)
    content = mask.width - 2 * _MARGIN
    y = top
    for line in lines:
        face = faces[line.weight]
        if line.weight == "big" and face.getlength(line.text) > content:
            face = font("mono-bold", _fitting_size("mono-bold", line.text, content, face.size))
        x = _MARGIN
        if line.align == "center":
            x = _MARGIN + int((content - face.getlength(line.text)) / 2)
        draw.text((x, y), line.text, font=face, fill=255)
        for pointer, start, end in line.marks:
            # the ink of the span, not its advance: a lone "1" is much narrower than its cell
            span = ink_box((x + face.getlength(line.text[:start]), y), line.text[start:end], face)
            boxes[pointer] = _union(boxes.get(pointer), span)
        y += _line_height(face)
    return y


def _draw_barcode(mask: Image.Image, rng: random.Random, top: int, height: int) -> None:
    """A decorative 1-D barcode: random bar widths, a quiet zone either side, as printed under receipts."""
    draw = ImageDraw.Draw(mask)
    x = mask.width // 2 - 150
    end = mask.width // 2 + 150
    black = True
    while x < end:
        bar = rng.choice((2, 2, 4, 6))
        if black:
            draw.rectangle((x, top, x + bar - 1, top + height), fill=255)
        x += bar
        black = not black


def _thermal(mask: Image.Image, rng: random.Random) -> Image.Image:
    """Ink from the mask on light grey paper, faded unevenly as thermal print does."""
    nrng = numpy_rng(rng)
    width, height = mask.size
    paper = np.array([rng.randint(228, 244)] * 3, dtype=np.float32) + np.array(
        [rng.uniform(-3, 3), 0, rng.uniform(-4, 2)], dtype=np.float32
    )
    ink = np.array([rng.randint(30, 80)] * 3, dtype=np.float32)
    fade = 0.82 + 0.18 * effects.smooth_field(nrng, (width, height), (3, max(3, height // 300)))
    # weak heating elements in the print head leave faint vertical streaks
    streaks = np.ones(width, dtype=np.float32)
    for _ in range(rng.randint(0, 4)):
        centre, spread = rng.randint(0, width - 1), rng.randint(2, 12)
        streaks[max(0, centre - spread) : centre + spread] *= rng.uniform(0.45, 0.8)
    alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255.0 * (fade * streaks[None, :])[..., None]
    # no per-pixel grain here: photos get sensor noise later, and scans stay small as PNG
    pixels = paper * (1 - alpha) + ink * alpha
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _scan(page: Image.Image, rng: random.Random) -> tuple[Image.Image, effects.Geometry]:
    """On a flatbed: maybe creased, barely tilted, no sensor noise."""
    nrng = numpy_rng(rng)
    geometry = effects.Geometry(page.size)
    bed = (rng.randint(236, 252),) * 3
    if rng.random() < 0.5:
        page, warp = effects.crumple_with_warp(page, nrng, rng.uniform(0.1, 0.5))
        geometry = geometry.warped(warp)
    tilt = rng.uniform(-1.0, 1.0)
    page = effects.place_on_surface(page, nrng, 0.04, bed, texture=0.2, tilt=tilt)
    return effects.blur(page, rng.uniform(0.0, 0.4)), effects.surface_geometry(geometry, 0.04, tilt)


def _photograph(page: Image.Image, rng: random.Random) -> tuple[Image.Image, effects.Geometry]:
    """Crumple, lay on a table, tilt, blur and add sensor noise, each with its own chance and strength."""
    nrng = numpy_rng(rng)
    geometry = effects.Geometry(page.size)
    paper = tuple(int(v) for v in np.asarray(page)[0, 0])
    if rng.random() < 0.75:
        page, warp = effects.crumple_with_warp(page, nrng, rng.uniform(0.2, 0.9))
        geometry = geometry.warped(warp)
    tilt = rng.uniform(-2.5, 2.5)
    if rng.random() < 0.5:
        margin = rng.uniform(0.04, 0.12)
        page = effects.place_on_surface(page, nrng, margin, rng.choice(_SURFACES), tilt=tilt)
        geometry = effects.surface_geometry(geometry, margin, tilt)
    else:
        # a close-up: the paper fills the frame, so the corners uncovered by the tilt are more paper
        page = effects.skew(page, tilt, paper)
        geometry = geometry.rotated(tilt)
    if rng.random() < 0.6:
        page = effects.lighting(page, nrng, rng.uniform(0.05, 0.25))
    page = effects.blur(page, rng.choice((0.0, rng.uniform(0.3, 1.1))))
    page = effects.sensor_noise(page, nrng, rng.uniform(1.0, 3.5))
    if rng.random() < 0.3:
        page = effects.jpeg_artifacts(page, rng.randint(35, 70))
    return page, geometry


def render_receipt(
    lines: list[PrintLine], columns: int, barcode_seed: str, rng: random.Random, capture: str
) -> tuple[Image.Image, dict[str, list[float]]]:
    """The receipt, `capture`d ("scan" or "photo"): `columns` monospaced characters across a narrow roll;
    with the box of each marked field, [x0, y0, x1, y1] fractions of the picture."""
    paper_width = rng.randint(560, 640)
    faces = _faces(columns, paper_width - 2 * _MARGIN)
    height = _MARGIN * 2 + sum(_line_height(faces[line.weight]) for line in lines) + 90
    mask = Image.new("L", (paper_width, height), 0)
    drawn: dict[str, effects.Box] = {}
    bottom = _draw_lines(mask, lines, faces, _MARGIN, drawn)
    # the bars follow the receipt number, so one receipt always gets the same barcode
    _draw_barcode(mask, random.Random(barcode_seed), bottom + 4, 60)
    paper = _thermal(mask, rng)
    image, geometry = _scan(paper, rng) if capture == "scan" else _photograph(paper, rng)
    return image, {pointer: geometry.fraction_box(box) for pointer, box in drawn.items()}
