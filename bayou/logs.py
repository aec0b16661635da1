"""Logging set-up for the long-running commands (`bayou serve`, `bayou worker`): plain text for a terminal
or one JSON object per line for a log pipeline, and the ids that say what a line is about.

The ids travel in context variables, set where the work starts (a Celery task, an HTTP request, the
document a loop is on) and copied onto every record by `ContextFilter`. Only ids are ever logged:
documents carry personal data (driver's licences), so field values never go into a log line.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

# the record attributes, and JSON keys, that carry context
CONTEXT_FIELDS = ("document_id", "task_id", "request_id")

_document_id: ContextVar[str | None] = ContextVar("bayou_document_id", default=None)
_task_id: ContextVar[str | None] = ContextVar("bayou_task_id", default=None)
_request_id: ContextVar[str | None] = ContextVar("bayou_request_id", default=None)
_VARIABLES = {"document_id": _document_id, "task_id": _task_id, "request_id": _request_id}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"


def bind_document_id(document_id: str | None) -> None:
    """The document the current task, request or loop iteration is about, until rebound or cleared."""
    _document_id.set(document_id)


def bind_task_id(task_id: str | None) -> None:
    _task_id.set(task_id)


def clear_context() -> None:
    for variable in _VARIABLES.values():
        variable.set(None)


def current_context() -> dict[str, str]:
    """The ids bound now, without the unset ones."""
    values = {name: variable.get() for name, variable in _VARIABLES.items()}
    return {name: value for name, value in values.items() if value is not None}


@contextmanager
def scoped_context(**ids: str | None) -> Iterator[None]:
    """Binds these ids, and unsets the others, for the block; afterwards every id is what it was before,
    whatever was bound inside (a keep-alive connection serves its requests in one context)."""
    unknown = set(ids) - set(_VARIABLES)
    if unknown:
        raise TypeError(f"unknown context ids: {', '.join(sorted(unknown))}")
    tokens = [(variable, variable.set(ids.get(name))) for name, variable in _VARIABLES.items()]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


class ContextFilter(logging.Filter):
    """Copies the bound ids onto each record (an id passed with `extra=` wins), for any formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current_context().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, the ids that are known,
    and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: a message argument that is no JSON type must not lose the line
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The terminal format, with the known ids appended as `key=value`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        ids = [f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if getattr(record, name, None)]
        record.context = f" [{' '.join(ids)}]" if ids else ""
        return super().format(record)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a line is logged, not when the handler was made (a test
    runner or a daemoniser may swap it, and a closed stream must not swallow the logs)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


# libraries whose INFO lines say nothing an operator needs (alembic lists its plugins at every start)
QUIET_LOGGERS = ("alembic.runtime.plugins",)
# torchao (the `cpu-int8` extra), which transformers imports whenever it is installed, warns at import about
# each CUDA-only kernel library a CPU build lacks, and torch about enum types torchao registers: errors only
ERRORS_ONLY_LOGGERS = ("torchao", "torch.utils._pytree")


def make_handler(log_format: LogFormat, stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream) if stream is not None else StderrHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler._bayou = True  # type: ignore[attr-defined]  # marks it replaceable by a later set-up
    return handler


def configure_logging(log_format: LogFormat = "text", level: str | int = "INFO") -> logging.Handler:
    """Replaces the root logger's console handlers (ours from an earlier call, or `basicConfig`'s) with
    one in `log_format`, and sets the level. Handlers of other kinds (files, test capture) stay."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if _replaceable(handler):
            root.removeHandler(handler)
    handler = make_handler(log_format)
    root.addHandler(handler)
    root.setLevel(_level(level))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, _level(level)))
    for name in ERRORS_ONLY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.ERROR, _level(level)))
    return handler


def _replaceable(handler: logging.Handler) -> bool:
    # exactly StreamHandler: subclasses (pytest's capture, FileHandler) belong to someone else
    return getattr(handler, "_bayou", False) or type(handler) is logging.StreamHandler


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}")
    return value
