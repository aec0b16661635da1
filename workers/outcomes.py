"""What a task did with a document, for logs and tests."""

from __future__ import annotations

import enum

# every delivery of a document's work counts one attempt; past this it is failed, so a document that
# kills its worker each time (and is redelivered each time) cannot loop forever
MAX_ATTEMPTS = 8
TOO_MANY_ATTEMPTS = "too_many_attempts"
INTERNAL_ERROR = "internal_error"  # a fault in bayou, not in the document: its message names the exception
TIMED_OUT = "timeout"  # a task past its soft time limit


class Outcome(enum.StrEnum):
    SKIPPED = "skipped"  # not in a state this task works on: already finished, or taken by a twin
    RASTERIZED = "rasterized"
    DONE = "done"
    NEEDS_REVIEW = "needs_review"
    FAILED = "failed"
