"""Localisation against recorded boxes (metadata "boxes" from `bayou samples make`): how many ground-truth
values a result placed where they were drawn (IoU >= 0.5 on the same page)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MIN_IOU = 0.5


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x0, y0, x1, y1] boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def located(locations: Mapping[str, Mapping[str, Any]], boxes: Mapping[str, Mapping[str, Any]]) -> int:
    """How many of `boxes` (pointer -> {page, box}) a location of the same pointer matches."""
    return sum(
        1
        for pointer, drawn in boxes.items()
        if (found := locations.get(pointer)) is not None
        and found.get("page") == drawn.get("page")
        and iou(found["box"], drawn["box"]) >= MIN_IOU
    )
