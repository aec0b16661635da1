"""A handwritten-looking signature: a few smooth cubic Bézier strokes drifting left to right."""

from __future__ import annotations

import random

from PIL import ImageDraw

Point = tuple[float, float]


def _bezier(p0: Point, p1: Point, p2: Point, p3: Point, steps: int) -> list[Point]:
    points = []
    for i in range(steps + 1):
        t = i / steps
        u = 1 - t
        x = u**3 * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t**3 * p3[0]
        y = u**3 * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t**3 * p3[1]
        points.append((x, y))
    return points


def _stroke(rng: random.Random, x0: float, x1: float, mid_y: float, amplitude: float) -> list[Point]:
    """One pen-down stroke: chained Béziers whose joints share a tangent, so the line never kinks."""
    segments = rng.randint(3, 6)
    step = (x1 - x0) / segments
    current = (x0, mid_y + rng.uniform(-amplitude, amplitude) * 0.5)
    handle = (rng.uniform(-step, step) * 0.6, rng.uniform(-amplitude, amplitude))
    points: list[Point] = []
    for i in range(segments):
        end = (
            x0 + (i + 1) * step + rng.uniform(-0.3, 0.3) * step,
            mid_y + rng.uniform(-amplitude, amplitude),
        )
        next_handle = (rng.uniform(-1.2, 1.2) * step, rng.uniform(-1.5, 1.5) * amplitude)
        c1 = (current[0] + handle[0], current[1] + handle[1])
        c2 = (end[0] - next_handle[0], end[1] - next_handle[1])
        points.extend(_bezier(current, c1, c2, end, 24))
        current, handle = end, next_handle
    return points


def draw_signature(
    draw: ImageDraw.ImageDraw,
    rng: random.Random,
    box: tuple[int, int, int, int],
    ink: tuple[int, int, int],
    width: int,
) -> None:
    """Scribble a signature inside `box` (left, top, right, bottom)."""
    left, top, right, bottom = box
    mid_y = (top + bottom) / 2
    amplitude = (bottom - top) * 0.35
    strokes = rng.randint(1, 3)
    span = (right - left) / strokes
    for i in range(strokes):
        x0 = left + i * span + rng.uniform(0, span * 0.1)
        x1 = left + (i + 1) * span - rng.uniform(0, span * 0.15)
        draw.line(_stroke(rng, x0, x1, mid_y, amplitude), fill=ink, width=width, joint="curve")
    if rng.random() < 0.5:
        # the underline flourish many people add
        y = bottom - (bottom - top) * 0.1
        tail = _bezier((left, y), (left + span, y + 6), (right - span, y - 8), (right, y - 2), 40)
        draw.line(tail, fill=ink, width=max(1, width - 1), joint="curve")
