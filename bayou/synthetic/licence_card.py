"""Drawing an ID-1 licence card (85.6 x 54 mm): the front with AAMVA-numbered fields, the barcode back."""

from __future__ import annotations

import math
import random
from datetime import date
from typing import Any

import numpy as np
import pdf417gen
from PIL import Image, ImageDraw

from bayou.synthetic import effects
from bayou.synthetic.common import Font, font, ink_box, numpy_rng
from bayou.synthetic.scribble import draw_signature
from extractor.jurisdictions import Jurisdiction

CARD_MM = (85.6, 54.0)
_CORNER_MM = 3.18
_LABEL_RED = (170, 20, 30)
_TEXT = (20, 20, 28)
_SURFACES = ((96, 70, 50), (58, 60, 64), (140, 112, 86), (36, 44, 58), (200, 196, 188))
_RESTRICTION_TEXT = {"B": "CORRECTIVE LENSES"}
_ENDORSEMENT_TEXT = {"M": "MOTORCYCLE", "N": "TANK VEHICLE", "H": "HAZARDOUS MATERIALS", "T": "DOUBLE/TRIPLE"}


class _Ruler:
    """Millimetres on the card to pixels at the chosen resolution."""

    def __init__(self, dpi: int) -> None:
        self.per_mm = dpi / 25.4

    def __call__(self, mm: float) -> int:
        return round(mm * self.per_mm)

    def face(self, role: str, mm: float) -> Font:
        return font(role, max(8, self(mm)))

    def size(self) -> tuple[int, int]:
        return self(CARD_MM[0]), self(CARD_MM[1])


def _tint(color: tuple[int, int, int], keep: float) -> tuple[int, int, int]:
    """`color` mixed with white, keeping the fraction `keep` of it."""
    return tuple(round(255 - (255 - c) * keep) for c in color)  # type: ignore[return-value]


def _background(size: tuple[int, int], color: tuple[int, int, int], rng: random.Random) -> Image.Image:
    """A pale gradient crossed by fine guilloche waves, the usual security print of ID cards."""
    width, height = size
    ramp = np.linspace(0.10, 0.22, width, dtype=np.float32)[None, :, None]
    base = 255 - (255 - np.asarray(color, dtype=np.float32)) * ramp
    card = Image.fromarray(np.broadcast_to(base, (height, width, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(card)
    line = _tint(color, 0.28)
    frequency = rng.uniform(1.5, 3.0)
    for k in range(0, height, max(4, height // 40)):
        phase = rng.uniform(0, math.tau)
        points = [
            (x, k + height * 0.03 * math.sin(frequency * math.tau * x / width + phase + k * 0.05))
            for x in range(0, width + 8, 8)
        ]
        draw.line(points, fill=line, width=1)
    return card


def _silhouette(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A grey head-and-shoulders placeholder where the photo goes."""
    width, height = size
    backdrop = rng.choice(((196, 206, 218), (210, 214, 220), (188, 200, 214)))
    portrait = Image.new("RGB", size, backdrop)
    draw = ImageDraw.Draw(portrait)
    grey = rng.choice(((112, 116, 122), (92, 96, 104), (128, 128, 132)))
    head_w, head_h = width * 0.46, height * 0.42
    cx, top = width / 2, height * 0.14
    draw.ellipse((cx - head_w / 2, top, cx + head_w / 2, top + head_h), fill=grey)
    draw.rectangle((cx - width * 0.1, top + head_h * 0.8, cx + width * 0.1, top + head_h * 1.15), fill=grey)
    draw.ellipse((-width * 0.1, top + head_h * 1.05, width * 1.1, height * 1.6), fill=grey)
    return portrait


def _us_date(iso: str) -> str:
    value = date.fromisoformat(iso)
    return f"{value.month:02d}/{value.day:02d}/{value.year}"


def _height_text(height: str | None) -> str:
    if not height:
        return ""
    inches = int(height.split()[0])
    return f"{inches // 12}'-{inches % 12:02d}\""


class _Writer:
    """Label-then-value pairs in the card's two type sizes."""

    def __init__(self, draw: ImageDraw.ImageDraw, ruler: _Ruler, accent: tuple[int, int, int]) -> None:
        self.draw = draw
        # JSON pointer -> the ink box of the value written for it (pixels of the card)
        self.boxes: dict[str, effects.Box] = {}
        self.ruler = ruler
        self.accent = accent
        self.label_face = ruler.face("sans-bold", 1.9)
        self.value_face = ruler.face("sans-bold", 2.9)
        self.small_face = ruler.face("sans", 2.2)

    def field(
        self,
        x_mm: float,
        y_mm: float,
        label: str,
        value: str,
        *,
        red: bool = False,
        small: bool = False,
        marks: tuple[tuple[str, int, int], ...] = (),
    ) -> None:
        """`label` then `value`; `marks` name the fields shown by characters start..end of `value`."""
        x, y = self.ruler(x_mm), self.ruler(y_mm)
        face = self.small_face if small else self.value_face
        if label:
            # labels sit on the value's baseline so that "4d DLN" reads as one unit with the number
            baseline = y + face.getmetrics()[0]
            label_y = baseline - self.label_face.getmetrics()[0]
            self.draw.text((x, label_y), label, font=self.label_face, fill=self.accent)
            x += int(self.label_face.getlength(label + " "))
        self.draw.text((x, y), value, font=face, fill=_LABEL_RED if red else _TEXT)
        for pointer, start, end in marks:
            # the ink of the span, as OCR boxes words
            left = x + face.getlength(value[:start])
            self.boxes[pointer] = ink_box((left, y), value[start:end], face)


def _whole(pointer: str, value: str | None) -> tuple[tuple[str, int, int], ...]:
    return ((pointer, 0, len(value)),) if value else ()


def _header(draw: ImageDraw.ImageDraw, ruler: _Ruler, state: Jurisdiction) -> effects.Box:
    """The coloured band with the state's name and the title; returns the box of "USA" (the country)."""
    width = ruler(CARD_MM[0])
    draw.rectangle((0, 0, width, ruler(10.5)), fill=state.color)
    name = state.name.upper()
    size_mm = 6.0
    while ruler.face("serif-bold", size_mm).getlength(name) > ruler(44) and size_mm > 3:
        size_mm -= 0.25
    draw.text((ruler(4), ruler(1.8)), name, font=ruler.face("serif-bold", size_mm), fill=(255, 255, 255))
    title = ruler.face("sans-bold", 3.0)
    draw.text(
        (width - ruler(4) - int(title.getlength("DRIVER LICENSE")), ruler(2)),
        "DRIVER LICENSE",
        font=title,
        fill=(255, 255, 255),
    )
    at = (width - ruler(4) - int(title.getlength("USA")), ruler(6.2))
    draw.text(at, "USA", font=title, fill=(255, 230, 120))
    return ink_box(at, "USA", title)


def _physical_fields(writer: _Writer, truth: dict[str, Any]) -> None:
    writer.field(31, 42.5, "15 SEX", truth["sex"] or "", small=True, marks=_whole("/sex", truth["sex"]))
    height = _height_text(truth["height"])
    writer.field(48, 42.5, "16 HGT", height, small=True, marks=_whole("/height", height))
    eyes = truth["eye_color"]
    writer.field(66, 42.5, "18 EYES", eyes or "", small=True, marks=_whole("/eye_color", eyes))
    pounds = str(truth["weight_lb"]) if truth["weight_lb"] is not None else ""
    weight = f"{pounds} lb" if pounds else ""
    writer.field(31, 46.4, "17 WGT", weight, small=True, marks=_whole("/weight_lb", pounds))
    hair = truth["hair_color"]
    writer.field(48, 46.4, "19 HAIR", hair or "", small=True, marks=_whole("/hair_color", hair))
    restrictions = truth["restrictions"]
    marks = _whole("/restrictions", restrictions)
    writer.field(66, 46.4, "12 RESTR", restrictions or "NONE", small=True, marks=marks)
    endorsements = "".join(truth["endorsements"])
    marks = _whole("/endorsements", endorsements)
    writer.field(31, 50.3, "9a END", endorsements or "NONE", small=True, marks=marks)
    discriminator = truth["document_discriminator"]
    marks = _whole("/document_discriminator", discriminator)
    writer.field(47, 50.3, "5 DD", discriminator or "", small=True, marks=marks)


def render_front(
    truth: dict[str, Any], state: Jurisdiction, rng: random.Random, dpi: int
) -> tuple[Image.Image, dict[str, effects.Box]]:
    """The card's front: header, portrait, the numbered fields of the AAMVA layout and a signature; with
    the box (card pixels) of each field written on it."""
    ruler = _Ruler(dpi)
    card = _background(ruler.size(), state.color, rng)
    draw = ImageDraw.Draw(card)
    country = _header(draw, ruler, state)
    card.paste(_silhouette((ruler(24), ruler(30)), rng), (ruler(4), ruler(12.5)))
    # the small faded "ghost" copy of the portrait that many states print as an anti-forgery feature
    ghost = _silhouette((ruler(10), ruler(12.5)), rng).convert("L").convert("RGB")
    ghost_at = (ruler(73), ruler(22))
    under = card.crop((*ghost_at, ghost_at[0] + ghost.width, ghost_at[1] + ghost.height))
    card.paste(Image.blend(under, ghost, 0.35), ghost_at)
    writer = _Writer(draw, ruler, state.color)
    number = truth["document_number"]
    writer.field(31, 12.3, "4d DLN", number, red=True, marks=_whole("/document_number", number))
    expiry = _us_date(truth["expiration_date"])
    writer.field(31, 16.6, "4b EXP", expiry, red=True, marks=_whole("/expiration_date", expiry))
    vehicle_class = truth["vehicle_class"]
    writer.field(63, 16.6, "9 CLASS", vehicle_class or "", marks=_whole("/vehicle_class", vehicle_class))
    writer.field(31, 21.0, "1", truth["family_name"], marks=_whole("/family_name", truth["family_name"]))
    writer.field(31, 25.0, "2", truth["given_names"], marks=_whole("/given_names", truth["given_names"]))
    address = truth["address"]
    street = address["street"]
    writer.field(31, 29.4, "8", street, small=True, marks=_whole("/address/street", street))
    city, region, postal = address["city"], address["state"], address["postal_code"]
    city_line = f"{city}, {region} {postal}"
    marks = (
        ("/address/city", 0, len(city)),
        ("/address/state", len(city) + 2, len(city) + 2 + len(region)),
        ("/address/postal_code", len(city_line) - len(postal), len(city_line)),
    )
    writer.field(31 + 2.2, 32.6, "", city_line, small=True, marks=marks)
    birth = _us_date(truth["date_of_birth"])
    writer.field(31, 37.6, "3 DOB", birth, red=True, marks=_whole("/date_of_birth", birth))
    issued = _us_date(truth["issue_date"])
    writer.field(63, 37.6, "4a ISS", issued, small=True, marks=_whole("/issue_date", issued))
    _physical_fields(writer, truth)
    draw_signature(draw, rng, (ruler(4), ruler(44), ruler(28), ruler(52.5)), (25, 25, 60), max(2, ruler(0.3)))
    boxes = dict(writer.boxes)
    if truth["country"] == "USA":
        boxes["/country"] = country
    return card, boxes


def _barcode(payload: str, target_width: int) -> Image.Image:
    """The PDF417 symbol, at the largest whole-pixel module width that fits `target_width`."""
    # 8 data columns give wide modules and a tall symbol, which zxing-cpp still reads when the photo is
    # tilted 2-2.5 degrees; 13 columns (a flatter symbol) failed on a third of tilted samples
    codes = pdf417gen.encode(payload, columns=8, security_level=5)
    modules = len(codes[0]) * 17 + 1
    scale = max(2, target_width // modules)
    return pdf417gen.render_image(codes, scale=scale, ratio=3, padding=scale * 3)


def _back_notes(truth: dict[str, Any]) -> list[str]:
    restriction = truth["restrictions"]
    notes = [
        f"RESTR: {restriction} - {_RESTRICTION_TEXT.get(restriction, '')}" if restriction else "RESTR: NONE"
    ]
    endorsements = ", ".join(f"{e} - {_ENDORSEMENT_TEXT.get(e, '')}" for e in truth["endorsements"])
    notes.append(f"END: {endorsements or 'NONE'}")
    return notes


def render_back(
    truth: dict[str, Any], state: Jurisdiction, payload: str, rng: random.Random, dpi: int
) -> Image.Image:
    """The card's back: a property notice, the AAMVA PDF417 barcode and the restriction legend."""
    ruler = _Ruler(dpi)
    card = _background(ruler.size(), state.color, rng)
    draw = ImageDraw.Draw(card)
    small = ruler.face("sans", 1.9)
    notice = (
        f"This card is the property of the State of {state.name}.",
        "If found, return to the Department of Motor Vehicles.",
    )
    for i, line in enumerate(notice):
        draw.text((ruler(4), ruler(2.5 + i * 2.6)), line, font=small, fill=_TEXT)
    barcode = _barcode(payload, ruler(78))
    card.paste(barcode, ((card.width - barcode.width) // 2, ruler(9.5)))
    y = ruler(9.5) + barcode.height + ruler(1.5)
    for i, line in enumerate(_back_notes(truth)):
        draw.text((ruler(4), y + i * ruler(2.8)), line, font=ruler.face("sans-bold", 2.0), fill=_TEXT)
    return card


def _rounded(card: Image.Image, radius: int) -> Image.Image:
    mask = Image.new("L", card.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, card.width - 1, card.height - 1), radius=radius, fill=255)
    rgba = card.convert("RGBA")
    rgba.putalpha(mask)
    return rgba


def _glare(image: Image.Image, nrng: np.random.Generator) -> Image.Image:
    """A soft specular highlight, as from a ceiling lamp on the laminate."""
    width, height = image.size
    cx, cy = nrng.uniform(0.2, 0.8) * width, nrng.uniform(0.2, 0.8) * height
    sx, sy = nrng.uniform(0.08, 0.2) * width, nrng.uniform(0.06, 0.15) * height
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    spot = np.exp(-(((grid_x - cx) / sx) ** 2 + ((grid_y - cy) / sy) ** 2)) * nrng.uniform(0.25, 0.5)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    lit = pixels + (255 - pixels) * spot[..., None]
    return Image.fromarray(np.clip(lit, 0, 255).astype(np.uint8))


def photograph_card(
    card: Image.Image, session: random.Random, rng: random.Random, style: str, max_tilt: float
) -> tuple[Image.Image, effects.Geometry]:
    """A scan ("scan") or phone photo ("photo") of one side; `session` fixes what both sides share.

    `max_tilt` bounds the rotation in degrees (zxing-cpp stops finding PDF417 symbols at about 3). The
    geometry says where a point of the card lands in the picture.
    """
    nrng = numpy_rng(rng)
    geometry = effects.Geometry(card.size)
    corner = round(_CORNER_MM * card.width / CARD_MM[0])
    if style == "scan":
        bed = (session.randint(232, 250),) * 3
        tilt = rng.uniform(-1.0, 1.0) * min(max_tilt, 1.0)
        page = effects.place_on_surface(_rounded(card, corner), nrng, 0.05, bed, texture=0.2, tilt=tilt)
        return effects.blur(page, rng.uniform(0.0, 0.4)), effects.surface_geometry(geometry, 0.05, tilt)
    surface = session.choice(_SURFACES)
    tilt = rng.uniform(-1.0, 1.0) * max_tilt
    margin = session.uniform(0.08, 0.16)
    page = effects.place_on_surface(_rounded(card, corner), nrng, margin, surface, tilt=tilt)
    page = effects.lighting(page, nrng, rng.uniform(0.05, 0.3))
    if rng.random() < 0.4:
        page = _glare(page, nrng)
    page = effects.blur(page, rng.uniform(0.0, 0.8))
    return effects.sensor_noise(page, nrng, rng.uniform(1.0, 3.0)), effects.surface_geometry(
        geometry, margin, tilt
    )
