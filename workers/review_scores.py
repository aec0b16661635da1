"""A review's score (the latest run against the approved data, ground truth source "reviewed"), computed
off the request path, and within a cost budget (`extractor.scoring.ted_score`): the exact tree edit
distance of two 100-line receipts that differ everywhere takes about a minute, which `bayou serve`'s one
worker thread (documents wait behind it) must not spend; past the budget the TED accuracy is a top-down
alignment's, a lower bound, and the log says so. The REST API sends `bayou.score_review` to the `cpu`
queue (an API without workers, e.g. in tests, scores after the response). Idempotent: a run already scored
against its review is left."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from extractor.scoring import field_f1, perfect_match, ted_score
from storage.documents import get_document_fresh
from storage.models import ExtractionRun, GroundTruthSource, Review, ReviewAction, Score
from workers.default_app import app_or_default
from workers.names import SCORE_REVIEW_TASK
from workers.queues import CPU_QUEUE
from workers.runtime import get_runtime
from workers.transient import register_task

log = logging.getLogger(__name__)

TASK_LIMITS_S = (300, 360)


def score_review(session: Session, document_id: str) -> Score | None:
    """Scores the document's latest run against its latest review (`score_approval`), as the database has
    them now (a task, possibly redelivered); None when there is nothing to score."""
    document = get_document_fresh(session, document_id)
    if not document.runs or not document.reviews:
        return None
    return score_approval(session, document.runs[-1], document.reviews[-1])


def score_approval(session: Session, run: ExtractionRun, review: Review) -> Score | None:
    """Scores `run` against `review` if it is an approval (its corrections, else the run's own data): for a
    caller that holds both already. None when there is nothing to score (a rejection, data that is no
    object)."""
    if review.action != ReviewAction.APPROVE.value:
        return None
    source = GroundTruthSource.REVIEWED.value
    existing = session.scalar(
        select(Score).where(Score.run_id == run.id, Score.ground_truth_source == source)
    )
    if existing is not None:
        return existing
    ground_truth: Any = review.corrected_data if review.corrected_data is not None else run.data
    if not isinstance(ground_truth, dict):
        return None
    prediction = run.data
    ted = ted_score(prediction, ground_truth)
    if not ted.exact:
        log.info("run %s: review TED accuracy approximated (trees past the scoring budget)", run.id)
    score = Score(
        run_id=run.id,
        ground_truth_source=source,
        ted_accuracy=ted.accuracy,
        f1=field_f1([prediction], [ground_truth]),
        perfect_match=perfect_match(prediction, ground_truth),
    )
    try:
        session.add(score)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return score


def score_review_in(sessions: sessionmaker[Session], document_id: str) -> None:
    """score_review in a session of its own (after a response, or in a task)."""
    with sessions() as session:
        score_review(session, document_id)


def send_score_review(document_id: str, *, app: Celery | None = None) -> None:
    """Queues the score. Never raises: the review is stored; a score lost to a broker fault is logged
    (it is a statistic of the dashboard, the approved data is the ground truth either way)."""
    try:
        app_or_default(app).send_task(SCORE_REVIEW_TASK, args=[document_id], queue=CPU_QUEUE)
    except Exception:
        log.exception("could not queue the review score of document %s", document_id)


def score_review_task(self: Task, document_id: str) -> str:
    with get_runtime().sessions() as session:
        return "scored" if score_review(session, document_id) is not None else "nothing_to_score"


def register_review_score_task(app: Celery) -> None:
    register_task(app, SCORE_REVIEW_TASK, score_review_task, limits=TASK_LIMITS_S, queue=CPU_QUEUE)
