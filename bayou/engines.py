"""Which engine serves a model name: one place that maps settings to a loaded engine, once per process."""

from __future__ import annotations

import threading
from functools import lru_cache

from bayou.settings import Settings, get_settings

_lock = threading.Lock()


def model_name(requested: str | None, doc_type: str, settings: Settings | None = None) -> str:
    """The model alias or directory a document goes to: the one asked for, else the type's default."""
    settings = settings or get_settings()
    return requested or settings.default_models.get(doc_type, "h2ovl-2b")


def get_engine(name: str, settings: Settings | None = None):
    """The engine for `name` (an alias such as h2ovl-800m, or a checkpoint directory), loaded on first use."""
    settings = settings or get_settings()
    with _lock:  # two threads asking at once must not load the model twice
        return _load(name, settings.model_source(name), settings.device, settings.dtype)


@lru_cache(maxsize=4)
def _load(name: str, source: str, device: str, dtype: str):
    from extractor.engine import TransformersEngine

    return TransformersEngine.from_source(
        source, name=name, device=device, dtype=None if dtype == "auto" else dtype
    )
