"""A whole run: what the options mean, the database and blob store opened, the loop run, the counts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bayou.ingest.record import Recorder, Target
from bayou.ingest.run import Display, Plan, ingest_once, watch
from bayou.ingest.sending import Enqueue, Sender
from bayou.ingest.tally import Tally
from bayou.settings import Settings
from extractor.registry import MODELS


class UsageError(ValueError):
    """Options that cannot work (the command exits 2)."""


@dataclass(frozen=True)
class Report:
    tally: Tally
    completed: bool  # False: stopped before every file present at the start was handled


def resolve_target(doc_type: str, model: str | None, settings: Settings) -> Target:
    """The document type checked against the schemas, and the model that will serve it: the one named
    (an alias or a checkpoint directory), else the type's default, stored as the API stores it, so a
    file ingested here and the same file uploaded are one document."""
    from bayou.engines import model_name
    from extractor.schemas import available_types

    if doc_type not in available_types():
        raise UsageError(f"unknown document type {doc_type!r}; known: {', '.join(available_types())}")
    if model is not None and model not in MODELS:
        if not Path(model).is_dir():
            raise UsageError(f"unknown model {model!r}: one of {', '.join(MODELS)}, or a directory")
        # workers may run elsewhere in the tree: a relative directory would mean something else there
        model = str(Path(model).resolve())
    return Target(doc_type, model_name(model, doc_type, settings))


def check_plan(plan: Plan) -> None:
    if not plan.folder.is_dir():
        raise UsageError(f"no such folder: {plan.folder}")
    if plan.settle_s < 0:
        raise UsageError("--settle must be 0 or more seconds")
    if plan.poll_s is not None and plan.poll_s <= 0:
        raise UsageError("--poll must be more than 0 seconds")


def run_ingest(
    plan: Plan,
    target: Target,
    settings: Settings,
    *,
    keep_watching: bool,
    display: Display,
    stop: threading.Event,
    enqueue: Enqueue | None = None,
) -> Report:
    """Ingests `plan.folder` once, or (keep_watching) until `stop` is set. `enqueue` defaults to the
    workers' own; storage errors propagate (the database is not reachable, or is behind)."""
    check_plan(plan)
    tally = Tally()
    if enqueue is None:
        from workers import enqueue  # loads Celery: only when documents are about to be sent
    with _recorder(settings, target, tally, enqueue) as recorder:
        if keep_watching:
            watch(plan, recorder, display, stop)
            return Report(tally, completed=True)
        return Report(tally, completed=ingest_once(plan, recorder, display, stop))


@contextmanager
def _recorder(settings: Settings, target: Target, tally: Tally, enqueue: Enqueue) -> Iterator[Recorder]:
    from bayou.intake import Limits
    from storage.blobs import BlobStore
    from storage.db import make_engine, make_session_factory
    from storage.migrate import ensure_schema

    engine = make_engine(settings.database_url)
    try:
        ensure_schema(engine, auto=True)
        with make_session_factory(engine)() as session:
            yield Recorder(
                session,
                BlobStore.in_data_dir(settings.data_dir),
                target=target,
                limits=Limits.from_settings(settings),
                sender=Sender(enqueue),
                tally=tally,
            )
    finally:
        engine.dispose()
