"""Drawing a personal check (6 x 2.75 in): printed stock, filled-in fields, signature, MICR line."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from PIL import Image, ImageDraw

from bayou.synthetic import effects
from bayou.synthetic.common import Font, draw_slanted_text, font, ink_box, numpy_rng
from bayou.synthetic.micr import draw_micr, micr_box, micr_text
from bayou.synthetic.scribble import draw_signature

CHECK_IN = (6.0, 2.75)
_PRINT = (28, 30, 36)
_TINTS = ((214, 230, 242), (218, 238, 222), (240, 232, 214), (232, 226, 240), (236, 236, 236))
_INKS = ((20, 36, 120), (18, 18, 24), (30, 30, 90))
_SURFACES = ((96, 70, 50), (58, 60, 64), (140, 112, 86), (36, 44, 58))


@dataclass(frozen=True)
class CheckPrint:
    """How the variable fields look: pen on paper, or printed by accounting software."""

    handwritten: bool
    ink: tuple[int, int, int]
    tint: tuple[int, int, int]
    date_style: str
    amount_style: str

    @staticmethod
    def random(rng: random.Random) -> CheckPrint:
        handwritten = rng.random() < 0.7
        return CheckPrint(
            handwritten=handwritten,
            ink=rng.choice(_INKS) if handwritten else _PRINT,
            tint=rng.choice(_TINTS),
            date_style=rng.choice(("us", "short", "long")),
            # asterisk padding is what check-printing software does; people rarely write it
            amount_style=rng.choice(("plain", "comma", "stars") if not handwritten else ("plain", "comma")),
        )


class _Inch:
    def __init__(self, dpi: int) -> None:
        self.dpi = dpi

    def __call__(self, inches: float) -> int:
        return round(inches * self.dpi)

    def face(self, role: str, inches: float) -> Font:
        return font(role, max(8, self(inches)))


def _date_text(iso: str, style: str) -> str:
    value = date.fromisoformat(iso)
    if style == "short":
        return f"{value.month}/{value.day}/{value.year % 100:02d}"
    if style == "long":
        return f"{value.strftime('%B')} {value.day}, {value.year}"
    return f"{value.month:02d}/{value.day:02d}/{value.year}"


def _amount_text(amount: str, style: str) -> str:
    if style == "comma":
        return f"{Decimal(amount):,.2f}"
    if style == "stars":
        return f"**{amount}**"
    return amount


def _stock(size: tuple[int, int], tint: tuple[int, int, int], rng: random.Random) -> Image.Image:
    """Blank check paper: a tinted field with a fine wave pattern and a thin border."""
    width, height = size
    check = Image.new("RGB", size, tint)
    draw = ImageDraw.Draw(check)
    wave = tuple(max(0, c - 14) for c in tint)
    period = rng.uniform(40, 90)
    for k in range(-height, width, 9):
        points = [(k + y * 0.6 + 4 * math.sin(y / period * math.tau), y) for y in range(0, height + 6, 6)]
        draw.line(points, fill=wave, width=1)
    margin = max(3, width // 200)
    draw.rectangle(
        (margin, margin, width - margin, height - margin), outline=tuple(c - 60 for c in tint), width=2
    )
    return check


class _Filler:
    """Puts the variable text on the stock, by hand or by printer."""

    def __init__(self, check: Image.Image, inch: _Inch, style: CheckPrint, rng: random.Random) -> None:
        self.check = check
        self.inch = inch
        self.style = style
        self.rng = rng
        self.hand = inch.face("sans", 0.16)
        self.typed = inch.face("mono-bold", 0.13)

    def _fitted(self, face: Font, text: str, width_in: float) -> Font:
        """`face`, made smaller until `text` fits the printed space (long payees and amounts in words)."""
        size = face.size
        role = "sans" if self.style.handwritten else "mono-bold"
        # the slant adds about a third of the height to the right
        while size > 10 and font(role, size).getlength(text) + size * 0.35 > self.inch(width_in):
            size -= 1
        return font(role, size)

    def write(
        self, x_in: float, line_y_in: float, text: str, width_in: float, value_chars: int | None = None
    ) -> effects.Box | None:
        """`text` sitting on the printed line at height `line_y_in`, at most `width_in` inches long; returns
        the box of its first `value_chars` characters (all of it by default)."""
        if not text:
            return None
        value = text[:value_chars]
        if self.style.handwritten:
            face = self._fitted(self.hand, text, width_in)
            jitter = self.rng.uniform(-0.03, 0.01)
            top = self.inch(line_y_in + jitter) - round(face.size * 1.2)
            ink = draw_slanted_text(
                self.check,
                (self.inch(x_in), top),
                text,
                face,
                self.style.ink,
                slant=self.rng.uniform(0.15, 0.35),
            )
            if ink is None or value == text:
                return ink
            # the value's share of the sheared line, by advance width
            share = face.getlength(value) / face.getlength(text)
            return (ink[0], ink[1], ink[0] + (ink[2] - ink[0]) * share, ink[3])
        face = self._fitted(self.typed, text, width_in)
        draw = ImageDraw.Draw(self.check)
        at = (self.inch(x_in), self.inch(line_y_in - 0.02))
        draw.text(at, text, font=face, fill=self.style.ink, anchor="ls")
        return ink_box(at, value, face, anchor="ls")


def _printed_parts(
    draw: ImageDraw.ImageDraw, inch: _Inch, truth: dict[str, Any], fraction: str
) -> dict[str, effects.Box]:
    """What the bank printed on the blank check: payer, number, labels, lines, bank name; returns the
    boxes of the fields among them."""
    small = inch.face("sans", 0.085)
    label = inch.face("sans-bold", 0.075)
    street, _, city_line = (truth["payer_address"] or "").partition(", ")
    boxes: dict[str, effects.Box] = {}
    heading = inch.face("sans-bold", 0.12)
    draw.text((inch(0.3), inch(0.18)), truth["payer_name"] or "", font=heading, fill=_PRINT)
    draw.text((inch(0.3), inch(0.36)), street, font=small, fill=_PRINT)
    draw.text((inch(0.3), inch(0.5)), city_line, font=small, fill=_PRINT)
    draw.text((inch(5.7), inch(0.18)), truth["check_number"] or "", font=heading, fill=_PRINT, anchor="ra")
    if truth["payer_name"]:
        boxes["/payer_name"] = ink_box((inch(0.3), inch(0.18)), truth["payer_name"], heading)
    if street:
        top = ink_box((inch(0.3), inch(0.36)), street, small)
        bottom = ink_box((inch(0.3), inch(0.5)), city_line, small)
        boxes["/payer_address"] = (min(top[0], bottom[0]), top[1], max(top[2], bottom[2]), bottom[3])
    if truth["check_number"]:
        at = (inch(5.7), inch(0.18))
        boxes["/check_number"] = ink_box(at, truth["check_number"], heading, anchor="ra")
    draw.text((inch(5.7), inch(0.38)), fraction, font=inch.face("sans", 0.07), fill=_PRINT, anchor="ra")
    draw.text((inch(3.75), inch(0.8)), "DATE", font=label, fill=_PRINT, anchor="ls")
    draw.line((inch(4.1), inch(0.8), inch(5.7), inch(0.8)), fill=_PRINT, width=1)
    draw.text((inch(0.3), inch(1.05)), "PAY TO THE", font=label, fill=_PRINT, anchor="ls")
    draw.text((inch(0.3), inch(1.17)), "ORDER OF", font=label, fill=_PRINT, anchor="ls")
    draw.line((inch(1.0), inch(1.17), inch(4.55), inch(1.17)), fill=_PRINT, width=1)
    draw.text((inch(4.62), inch(1.15)), "$", font=inch.face("sans-bold", 0.14), fill=_PRINT, anchor="ls")
    draw.rectangle(
        (inch(4.78), inch(0.93), inch(5.7), inch(1.22)), outline=_PRINT, width=2, fill=(250, 250, 250)
    )
    draw.line((inch(0.3), inch(1.52), inch(5.05), inch(1.52)), fill=_PRINT, width=1)
    draw.text((inch(5.1), inch(1.52)), "DOLLARS", font=label, fill=_PRINT, anchor="ls")
    bank_face = inch.face("serif-bold", 0.11)
    draw.text((inch(0.3), inch(1.78)), truth["bank_name"] or "", font=bank_face, fill=_PRINT)
    if truth["bank_name"]:
        boxes["/bank_name"] = ink_box((inch(0.3), inch(1.78)), truth["bank_name"], bank_face)
    draw.text((inch(0.3), inch(2.28)), "MEMO", font=label, fill=_PRINT, anchor="ls")
    draw.line((inch(0.75), inch(2.28), inch(2.9), inch(2.28)), fill=_PRINT, width=1)
    draw.line((inch(3.4), inch(2.28), inch(5.7), inch(2.28)), fill=_PRINT, width=1)
    draw.text(
        (inch(5.7), inch(2.4)), "AUTHORIZED SIGNATURE", font=inch.face("sans", 0.06), fill=_PRINT, anchor="ra"
    )
    return boxes


def _fraction(routing: str) -> str:
    """The fractional routing code printed under the check number (e.g. "12-3456/1234")."""
    return f"{int(routing[4:8]) % 99 + 1}-{routing[4:8]}/{routing[:4]}"


def _fill(
    check: Image.Image, inch: _Inch, truth: dict[str, Any], style: CheckPrint, rng: random.Random
) -> dict[str, effects.Box]:
    """Write the variable fields; returns their boxes."""
    filler = _Filler(check, inch, style, rng)
    words = truth["amount_words"]
    written = {
        "/date": filler.write(4.2, 0.8, _date_text(truth["date"], style.date_style), 1.5),
        "/payee": filler.write(1.1, 1.17, truth["payee"], 3.4),
        "/amount_numeric": filler.write(
            4.83, 1.17, _amount_text(truth["amount_numeric"], style.amount_style), 0.85
        ),
        # the rest of the legal line is struck through so nothing can be added after the words
        "/amount_words": filler.write(
            0.35, 1.52, words + (" ~~~~~" if style.handwritten else " *****"), 4.65, value_chars=len(words)
        ),
        "/memo": filler.write(0.8, 2.28, truth["memo"] or "", 2.05),
    }
    if truth["signature_present"]:
        draw = ImageDraw.Draw(check)
        box = (inch(3.55), inch(1.92), inch(5.6), inch(2.3))
        draw_signature(draw, rng, box, style.ink if style.handwritten else _INKS[0], max(2, inch(0.012)))
    return {pointer: box for pointer, box in written.items() if box is not None}


def _scan(check: Image.Image, rng: random.Random) -> tuple[Image.Image, effects.Geometry]:
    nrng = numpy_rng(rng)
    geometry = effects.Geometry(check.size)
    bed = (rng.randint(236, 252),) * 3
    tilt = rng.uniform(-1.0, 1.0)
    margin = rng.uniform(0.02, 0.06)
    check = effects.place_on_surface(check, nrng, margin, bed, texture=0.2, tilt=tilt)
    return effects.blur(check, rng.uniform(0.0, 0.4)), effects.surface_geometry(geometry, margin, tilt)


def _photograph(check: Image.Image, rng: random.Random) -> tuple[Image.Image, effects.Geometry]:
    nrng = numpy_rng(rng)
    geometry = effects.Geometry(check.size)
    if rng.random() < 0.4:
        check, warp = effects.crumple_with_warp(check, nrng, rng.uniform(0.1, 0.5))
        geometry = geometry.warped(warp)
    surface = rng.choice(_SURFACES)
    tilt = rng.uniform(-2.5, 2.5)
    margin = rng.uniform(0.04, 0.12)
    check = effects.place_on_surface(check, nrng, margin, surface, tilt=tilt)
    if rng.random() < 0.6:
        check = effects.lighting(check, nrng, rng.uniform(0.05, 0.25))
    check = effects.blur(check, rng.choice((0.0, rng.uniform(0.3, 0.9))))
    return effects.sensor_noise(check, nrng, rng.uniform(1.0, 3.0)), effects.surface_geometry(
        geometry, margin, tilt
    )


def render_check(
    truth: dict[str, Any], style: CheckPrint, rng: random.Random, dpi: int, capture: str
) -> tuple[Image.Image, dict[str, list[float]]]:
    """The check, `capture`d as a "scan" or a "photo"; with the box of each field drawn, [x0, y0, x1, y1]
    fractions of the picture."""
    inch = _Inch(dpi)
    check = _stock((inch(CHECK_IN[0]), inch(CHECK_IN[1])), style.tint, rng)
    draw = ImageDraw.Draw(check)
    drawn = _printed_parts(draw, inch, truth, _fraction(truth["routing_number"]))
    drawn |= _fill(check, inch, truth, style, rng)
    # the MICR band is the bottom 5/8 inch; the line sits 3/16 inch above the bottom edge
    micr = micr_text(truth["routing_number"], truth["account_number"], truth["check_number"] or "")
    at, baseline = inch(0.55), inch(CHECK_IN[1] - 0.19)
    draw_micr(ImageDraw.Draw(check), micr, at, baseline, dpi, (16, 16, 16))
    for pointer in ("/routing_number", "/account_number"):
        if truth[pointer[1:]]:
            start = micr.index(truth[pointer[1:]])
            drawn[pointer] = micr_box(micr, start, start + len(truth[pointer[1:]]), at, baseline, dpi)
    image, geometry = _scan(check, rng) if capture == "scan" else _photograph(check, rng)
    return image, {pointer: geometry.fraction_box(box) for pointer, box in drawn.items()}
