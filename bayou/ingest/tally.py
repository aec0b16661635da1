"""The counts a run reports, and its one-line summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    QUEUED = "queued"  # a new document, recorded
    DUPLICATE = "duplicate"  # its content (with this type and model) was recorded before
    REFUSED = "refused"  # not stored: see the code


@dataclass
class Tally:
    queued: int = 0
    duplicate: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    # recorded but not handed to a broker: they stay `queued` for a worker's sweep
    unsent: int = 0
    unsent_reason: str | None = None

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    @property
    def handled(self) -> int:
        return self.queued + self.duplicate + self.refused_total

    def count(self, outcome: Outcome, code: str | None = None) -> None:
        if outcome is Outcome.QUEUED:
            self.queued += 1
        elif outcome is Outcome.DUPLICATE:
            self.duplicate += 1
        else:
            self.refused[code or "refused"] += 1

    def summary(self) -> str:
        """`queued 3, duplicate 1, refused 2 (corrupt_file 1, empty_file 1)`, and a note on unsent ones."""
        line = f"queued {self.queued}, duplicate {self.duplicate}, refused {self.refused_total}"
        if self.refused:
            line += " (" + ", ".join(f"{code} {n}" for code, n in sorted(self.refused.items())) + ")"
        if self.unsent:
            line += (
                f"; {self.unsent} not sent to a worker ({self.unsent_reason}): they stay queued, "
                "and `bayou serve` or a worker's sweep of stuck documents sends them"
            )
        return line
