"""The process's own Celery app, for the senders not handed one (the API, `bayou ingest`, a stage's
completion callback, the sweeps).

workers.app makes that app and, when imported, names its maker here. The modules workers.app takes its
tasks from reach the app through this module instead of importing workers.app, which imports them: that
would be an import cycle. The package (workers/__init__.py) imports workers.app, so the maker is named
before any module of the package can send.
"""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

_make_default: Callable[[], Celery] | None = None


def set_default_maker(make: Callable[[], Celery]) -> None:
    """`make` answers the process's app; it caches it itself (workers.app.get_app)."""
    global _make_default
    _make_default = make


def app_or_default(app: Celery | None) -> Celery:
    """`app`, or the process's own (made from the settings on first use)."""
    if app is not None:
        return app
    if _make_default is None:  # not reachable through the package, which imports workers.app first
        raise RuntimeError("workers.app is not imported: there is no default Celery app")
    return _make_default()
