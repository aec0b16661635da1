"""Degradations that make a clean rendering look photographed or scanned: skew, blur, crumple, JPEG."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Geometry:
    """Where a point of the clean drawing lands in the captured picture: an affine map and the picture size.

    A crumple `warp`, when the clean drawing had one, moves each box first (it bends the drawing before
    any tilt or padding); the affine steps follow. Left out, a short value's box lay 1-4 px off its ink.
    """

    size: tuple[int, int]
    matrix: np.ndarray = field(default_factory=lambda: np.eye(3))
    warp: Warp | None = None

    def warped(self, warp: Warp | None) -> Geometry:
        """After `crumple_with_warp` bent the clean drawing (which must come before any affine step)."""
        return Geometry(self.size, self.matrix, warp)

    def rotated(self, degrees: float) -> Geometry:
        """After `Image.rotate(degrees, expand=True)`: PIL's own output-to-input matrix, inverted."""
        width, height = self.size
        angle = -math.radians(degrees)
        a, b = round(math.cos(angle), 15), round(math.sin(angle), 15)
        d, e = -b, a
        cx, cy = width / 2, height / 2
        c, f = a * -cx + b * -cy + cx, d * -cx + e * -cy + cy
        corners = [
            (a * x + b * y + c, d * x + e * y + f)
            for x, y in ((0, 0), (width, 0), (width, height), (0, height))
        ]
        new_w = math.ceil(max(x for x, _ in corners)) - math.floor(min(x for x, _ in corners))
        new_h = math.ceil(max(y for _, y in corners)) - math.floor(min(y for _, y in corners))
        dx, dy = -(new_w - width) / 2.0, -(new_h - height) / 2.0
        c, f = a * dx + b * dy + c, d * dx + e * dy + f
        to_input = np.array([[a, b, c], [d, e, f], [0.0, 0.0, 1.0]])
        return Geometry((new_w, new_h), np.linalg.inv(to_input) @ self.matrix, self.warp)

    def shifted(self, dx: int, dy: int, size: tuple[int, int]) -> Geometry:
        """After pasting the picture at (dx, dy) on a canvas of `size`."""
        move = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])
        return Geometry(size, move @ self.matrix, self.warp)

    def fraction_box(self, box: Box) -> list[float]:
        """`box` (pixels of the clean drawing) as [x0, y0, x1, y1] fractions of the captured picture: the
        bounds of its four corners once mapped."""
        x0, y0, x1, y1 = self.warp.box(box) if self.warp is not None else box
        corners = np.array([[x0, x1, x1, x0], [y0, y0, y1, y1], [1.0, 1.0, 1.0, 1.0]])
        mapped = self.matrix @ corners
        width, height = self.size
        bounds = (
            mapped[0].min() / width,
            mapped[1].min() / height,
            mapped[0].max() / width,
            mapped[1].max() / height,
        )
        return [round(min(1.0, max(0.0, float(v))), 5) for v in bounds]


def surface_geometry(geometry: Geometry, margin: float, tilt: float) -> Geometry:
    """What `place_on_surface(image, ..., margin, tilt=tilt)` does to positions."""
    turned = geometry.rotated(tilt) if tilt else geometry
    width, height = turned.size
    pad_x, pad_y = int(width * margin), int(height * margin)
    return turned.shifted(pad_x, pad_y, (width + 2 * pad_x, height + 2 * pad_y))


def smooth_field(nrng: np.random.Generator, size: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Low-frequency noise in [-1, 1] of shape (height, width): a coarse random grid upsampled smoothly."""
    coarse = nrng.uniform(-1.0, 1.0, size=(cells[1], cells[0])).astype(np.float32)
    # a float32 array becomes a mode "F" image, which keeps fractional values; bicubic upsampling gives the soft hills of crumpled paper
    upsampled = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    return np.clip(np.asarray(upsampled, dtype=np.float32), -1.0, 1.0)


def _bilinear_sample(pixels: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    x = np.clip(map_x, 0, width - 1.001)
    y = np.clip(map_y, 0, height - 1.001)
    x0 = x.astype(np.int32)
    y0 = y.astype(np.int32)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    top = pixels[y0, x0] * (1 - fx) + pixels[y0, x0 + 1] * fx
    bottom = pixels[y0 + 1, x0] * (1 - fx) + pixels[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _crease(nrng: np.random.Generator, grid_x: np.ndarray, grid_y: np.ndarray, depth: float) -> np.ndarray:
    """Shading of one fold: a dark edge on one side of a line segment, a highlight on the other."""
    height, width = grid_x.shape
    cx, cy = nrng.uniform(0, width), nrng.uniform(0, height)
    angle = nrng.uniform(0, np.pi)
    half_length = nrng.uniform(0.15, 0.6) * max(width, height)
    edge = nrng.uniform(1.5, 5.0)
    across = (grid_x - cx) * -np.sin(angle) + (grid_y - cy) * np.cos(angle)
    along = (grid_x - cx) * np.cos(angle) + (grid_y - cy) * np.sin(angle)
    fade = np.exp(-2.0 * (along / half_length) ** 2)
    profile = np.where(across > 0, -depth, 0.6 * depth) * np.exp(-np.abs(across) / edge)
    return (fade * profile).astype(np.float32)


@dataclass(frozen=True)
class Warp:
    """The displacement `crumple` sampled with: output pixel (x, y) shows input point (x + dx, y + dy)."""

    dx: np.ndarray
    dy: np.ndarray

    def box(self, box: Box) -> Box:
        """Where the ink inside `box` (pixels, exclusive right/bottom edges) lies once warped.

        The warp is known output-to-input, so rather than invert it, the output pixels whose source lies in
        `box` (to the nearest pixel, within the warp's reach of it) are collected and bounded."""
        height, width = self.dx.shape
        x0, y0, x1, y1 = box
        reach = math.ceil(max(float(np.abs(self.dx).max()), float(np.abs(self.dy).max()))) + 2
        left, top = max(0, math.floor(x0) - reach), max(0, math.floor(y0) - reach)
        right, bottom = min(width, math.ceil(x1) + reach), min(height, math.ceil(y1) + reach)
        if left >= right or top >= bottom:
            return box
        grid_y, grid_x = np.mgrid[top:bottom, left:right].astype(np.float32)
        # the same clipping as _bilinear_sample, so pixels sampled at the edge are found where they show
        source_x = np.clip(grid_x + self.dx[top:bottom, left:right], 0, width - 1.001)
        source_y = np.clip(grid_y + self.dy[top:bottom, left:right], 0, height - 1.001)
        inside = (
            (source_x >= x0 - 0.5) & (source_x <= x1 - 0.5) & (source_y >= y0 - 0.5) & (source_y <= y1 - 0.5)
        )
        if not inside.any():
            return box
        xs, ys = grid_x[inside], grid_y[inside]
        return (float(xs.min()), float(ys.min()), float(xs.max()) + 1.0, float(ys.max()) + 1.0)


def crumple(image: Image.Image, nrng: np.random.Generator, strength: float) -> Image.Image:
    """Paper that was crumpled and flattened again: a gentle warp, soft undulating shade and fold lines.

    `strength` 0..1; at 1 the paper shifts by about 0.6% of its short side and carries ten folds.
    """
    return crumple_with_warp(image, nrng, strength)[0]


def crumple_with_warp(
    image: Image.Image, nrng: np.random.Generator, strength: float
) -> tuple[Image.Image, Warp]:
    """`crumple`, and the warp it applied, for moving the recorded boxes with the ink."""
    width, height = image.size
    cells = (max(3, width // 200), max(3, height // 200))
    amplitude = strength * 0.006 * min(width, height)
    dx = smooth_field(nrng, (width, height), cells) * amplitude
    dy = smooth_field(nrng, (width, height), cells) * amplitude
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    warped = _bilinear_sample(pixels, grid_x + dx, grid_y + dy)
    shade = 1.0 + strength * 0.05 * smooth_field(nrng, (width, height), cells)
    for _ in range(1 + round(strength * 9)):
        shade += _crease(nrng, grid_x, grid_y, nrng.uniform(0.03, 0.10) * (0.5 + strength))
    shaded = warped * np.clip(shade, 0.7, 1.1)[..., None]
    return Image.fromarray(np.clip(shaded, 0, 255).astype(np.uint8)), Warp(dx, dy)


def lighting(image: Image.Image, nrng: np.random.Generator, strength: float) -> Image.Image:
    """A gentle gradient of light across the image, as from a lamp to one side."""
    width, height = image.size
    angle = nrng.uniform(0, 2 * np.pi)
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(angle) * grid_x / width + np.sin(angle) * grid_y / height) - 0.5
    gain = 1.0 - strength * ramp
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) * gain[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def sensor_noise(image: Image.Image, nrng: np.random.Generator, sigma: float) -> Image.Image:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    noisy = pixels + nrng.normal(0.0, sigma, size=pixels.shape[:2])[..., None]
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def skew(image: Image.Image, degrees: float, background: tuple[int, int, int]) -> Image.Image:
    """A small rotation, the canvas grown so that no corner is cut off."""
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=background)


def blur(image: Image.Image, radius: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else image


def jpeg_artifacts(image: Image.Image, quality: int) -> Image.Image:
    """Round-trip through a low-quality JPEG, for blocking and ringing even in a PNG output."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def place_on_surface(
    image: Image.Image,
    nrng: np.random.Generator,
    margin: float,
    surface: tuple[int, int, int],
    texture: float = 1.0,
    tilt: float = 0.0,
) -> Image.Image:
    """Lay the document, turned by `tilt` degrees, on a table top (texture 1) or a scanner bed (texture ~0).

    Turning the document rather than the finished picture keeps the table continuous to the image edges.
    """
    document = image.convert("RGBA")
    if tilt:
        document = document.rotate(tilt, resample=Image.Resampling.BICUBIC, expand=True)
    width, height = document.size
    pad_x, pad_y = int(width * margin), int(height * margin)
    size = (width + 2 * pad_x, height + 2 * pad_y)
    shading = smooth_field(nrng, size, (7, 5)) * 10 * texture
    # per-pixel grain is what makes a PNG large, so a scanner bed gets none
    grain = nrng.normal(0.0, 3.0 * texture, size=(size[1], size[0])) if texture >= 0.5 else 0.0
    texture_field = shading + grain
    base = np.asarray(surface, dtype=np.float32)[None, None, :] + np.asarray(texture_field)[..., None]
    table = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    table.paste(document, (pad_x, pad_y), document)
    return table
