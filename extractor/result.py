"""The Result of one document's extraction: plain data, the shape the contract publishes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Result:
    doc_type: str
    model: str
    data: dict[str, Any] | None = None
    raw_output: str = ""
    valid: bool = False
    errors: list[dict[str, str]] = field(default_factory=list)  # {path, message}: schema violations
    checks: list[dict[str, Any]] = field(default_factory=list)  # {name, ok, message}: cross-field checks
    confidence: dict[str, float] = field(default_factory=dict)  # JSON pointer → 0..1
    # JSON pointer → {page, box: [x0, y0, x1, y1] page fractions, score}: where each value is on its page
    locations: dict[str, dict[str, Any]] = field(default_factory=dict)
    tiles: int = 0
    tiles_per_page: list[int] = field(default_factory=list)  # fewer on long documents: see extractor.context
    tokens: dict[str, int] = field(default_factory=lambda: {"prompt": 0, "generated": 0})
    timings_ms: dict[str, float] = field(default_factory=dict)
    # beyond the contract's minimum: what produced it, and why it failed when it did
    file: str | None = None
    pages: int | None = None
    model_revision: str | None = None
    prompt_version: str | None = None
    schema_version: str | None = None
    constrained: bool = True
    finish_reason: str | None = None
    error: dict[str, str] | None = None  # {code, message} when the document could not be processed

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
