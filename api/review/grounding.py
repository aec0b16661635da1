"""What the review page shows of a run's grounding: each located field's box on its page (named as the form
names the field), the fields the value_on_page check did not find, and the licence barcode's suggested
values. Read from the stored run as the worker left it; a malformed entry is skipped, never an error page."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from api.review.forms import FormField, form_text
from extractor.grounding.barcode import CHECK_NAME as BARCODE
from extractor.grounding.verify import CHECK_NAME as VALUE_ON_PAGE

# runs stored before the check carried `fields` name them only in its message
_MISSING = re.compile(r"^not found on the page: ([^;]*)")


@dataclass(frozen=True)
class FieldBox:
    pointer: str
    label: str
    page: int  # from 1
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in fractions of the page, within [0, 1]

    @property
    def percent(self) -> str:
        """left top width height, in percent of the page: how the page's overlay places it."""
        x0, y0, x1, y1 = self.box
        return " ".join(f"{value * 100:.3f}" for value in (x0, y0, x1 - x0, y1 - y0))


@dataclass
class Grounding:
    boxes: list[FieldBox] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    suggestions: dict[str, Any] = field(default_factory=dict)


def _failed(checks: list[Any] | None, name: str) -> Mapping[str, Any] | None:
    for check in checks or []:
        if isinstance(check, Mapping) and check.get("name") == name and check.get("ok") is False:
            return check
    return None


def not_found_pointers(checks: list[Any] | None) -> list[str]:
    """The pointers a failed value_on_page check names."""
    check = _failed(checks, VALUE_ON_PAGE)
    if check is None:
        return []
    named = check.get("fields")
    if not isinstance(named, list):
        match = _MISSING.match(str(check.get("message") or ""))
        named = [part.strip() for part in match.group(1).split(",")] if match else []
    return [p for p in named if isinstance(p, str) and p.startswith("/")]


def suggested_values(checks: list[Any] | None) -> dict[str, Any]:
    """pointer → the barcode's value, from a failed license_barcode_agrees check."""
    check = _failed(checks, BARCODE)
    offered = check.get("suggestions") if check is not None else None
    if not isinstance(offered, Mapping):
        return {}
    return {p: v for p, v in offered.items() if isinstance(p, str) and p.startswith("/")}


def named_fields(check: Any) -> list[str] | None:
    """The fields a failed grounding check names (the page marks each of them), or None for a check of
    another kind, or one stored without its findings as data, which the page shows as a whole."""
    if not isinstance(check, Mapping) or check.get("ok") is not False:
        return None
    if check.get("name") == VALUE_ON_PAGE:
        return not_found_pointers([check])
    if check.get("name") == BARCODE and isinstance(check.get("suggestions"), Mapping):
        return list(suggested_values([check]))
    return None


def field_labels(fields: list[FormField]) -> dict[str, str]:
    """pointer → the field's name as a reviewer reads it: "Total", "Address › City", "Items row 2 › Total price",
    in the form's order."""
    return dict(_labels(fields, ""))


def _labels(fields: list[FormField], prefix: str) -> Iterator[tuple[str, str]]:
    for item in fields:
        label = f"{prefix}{item.label}"
        yield item.pointer, label
        yield from _labels(item.children, f"{label} › ")
        for number, row in enumerate(item.rows, start=1):
            yield f"{item.pointer}/{number - 1}", f"{label} row {number}"
            yield from _labels(row, f"{label} row {number} › ")


def field_boxes(locations: Any, labels: Mapping[str, str], pages: int) -> list[FieldBox]:
    """The boxes of the located values, in the form's order (then any the form does not show)."""
    if not isinstance(locations, Mapping):
        return []
    order = {pointer: index for index, pointer in enumerate(labels)}
    boxes = [
        FieldBox(pointer, labels.get(pointer) or _fallback_label(pointer), *where)
        for pointer, location in locations.items()
        if isinstance(pointer, str) and (where := _placed(location, pages)) is not None
    ]
    return sorted(boxes, key=lambda box: (order.get(box.pointer, len(order)), box.pointer))


def _placed(location: Any, pages: int) -> tuple[int, tuple[float, float, float, float]] | None:
    if not isinstance(location, Mapping):
        return None
    page, box = location.get("page"), location.get("box")
    if not isinstance(page, int) or isinstance(page, bool) or not 1 <= page <= pages:
        return None
    if not isinstance(box, list | tuple) or len(box) != 4:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box):
        return None
    x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in box)
    if x1 <= x0 or y1 <= y0:
        return None
    return page, (x0, y0, x1, y1)


def _fallback_label(pointer: str) -> str:
    return " › ".join(part.replace("_", " ").capitalize() for part in pointer.strip("/").split("/"))


def annotate(fields: list[FormField], grounding: Grounding) -> None:
    """Marks the form's fields: not found on the page, and the barcode's value to offer."""
    missing = set(grounding.not_found)
    for item in _walk(fields):
        item.not_found = item.pointer in missing
        if item.pointer in grounding.suggestions and item.kind not in {"group", "rows"}:
            item.suggestion = form_text(item.kind, grounding.suggestions[item.pointer])


def _walk(fields: list[FormField]) -> Iterator[FormField]:
    for item in fields:
        yield item
        yield from _walk(item.children)
        for row in item.rows:
            yield from _walk(row)


def grounding_of(run: Any, fields: list[FormField], pages: int, *, reviewable: bool) -> Grounding:
    """A run's grounding as the page shows it. The marks and suggestions describe the model's output, so
    a reviewed document keeps only its boxes (as its other flags are dropped once reviewed)."""
    if run is None:
        return Grounding()
    boxes = field_boxes(run.locations, field_labels(fields), pages)
    if not reviewable:
        return Grounding(boxes)
    return Grounding(boxes, not_found_pointers(run.checks), suggested_values(run.checks))
