"""/review: the back-office pages. Each route reads its inputs, calls views/actions, renders a template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, BackgroundTasks, Depends, Query
from fastapi.responses import FileResponse, Response, StreamingResponse
from sqlalchemy import select

from api import reviewing
from api.deps import BlobsDep, SessionDep, State
from api.export import csv_chunks, jsonl_lines
from api.review import admin, views
from api.review.auth import (
    HASHING_RETRY_AFTER_S,
    AccountDisabled,
    HashingBusy,
    LoginLocked,
    authenticate,
    end_session,
    new_anonymous,
)
from api.review.auth import signed_in as signed_in_session
from api.review.charts import bar_chart, line_chart
from api.review.forms import parse_form
from api.review.web import (
    PREFIX,
    AdminDep,
    FormDep,
    Refused,
    ReviewerDep,
    ReviewRoute,
    VisitorDep,
    redirect,
    safe_next,
)
from extractor.schemas import available_types, load_schema
from extractor.validation import schema_errors
from storage.columns import utcnow
from storage.documents import DocumentFilter, get_document, get_document_fresh
from storage.errors import IllegalTransition
from storage.models import DocumentStatus, GroundTruthSource, Page

router = APIRouter(prefix=PREFIX, route_class=ReviewRoute, include_in_schema=False)
router.include_router(admin.router)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_FILES = {"review.css": "text/css", "review.js": "text/javascript"}


# --- signing in and out ----------------------------------------------------------------------------------


@router.get("")
def home() -> Response:
    return redirect(f"{PREFIX}/queue")


@router.get("/login")
def login_page(visitor: VisitorDep, next: str = "") -> Response:
    if visitor.user is not None:
        return redirect(safe_next(next))
    return visitor.render("login.html", {"next": next, "error": None})


@router.post("/login")
def login(visitor: VisitorDep, session: SessionDep, form: FormDep) -> Response:
    email, password = str(form.get("email") or ""), str(form.get("password") or "")
    target = str(form.get("next") or "")
    # behind a TLS proxy this is the forwarded client address (BAYOU_FORWARDED_ALLOW_IPS), not the proxy's
    address = visitor.request.client.host if visitor.request.client else "unknown"
    try:
        user = authenticate(session, email, password, address=address)
    except LoginLocked as exc:
        # the same words whichever count is locked, and whether or not the email has an account
        message = f"Too many failed sign-ins: try again after {exc.until:%H:%M} UTC."
        response = visitor.render(
            "login.html", {"next": target, "error": message, "email": email}, status=429
        )
        response.headers["Retry-After"] = str(max(1, int((exc.until - utcnow()).total_seconds()) + 1))
        return response
    except HashingBusy:
        message = "Too many sign-ins at this moment: try again in a few seconds."
        response = visitor.render(
            "login.html", {"next": target, "error": message, "email": email}, status=429
        )
        response.headers["Retry-After"] = str(HASHING_RETRY_AFTER_S)
        return response
    except AccountDisabled:
        message = "This account is disabled: ask an admin to enable it."
        return visitor.render("login.html", {"next": target, "error": message, "email": email}, status=403)
    if user is None:
        error = "Wrong email or password."
        return visitor.render("login.html", {"next": target, "error": error, "email": email}, status=401)
    response = redirect(safe_next(target))
    visitor.set_cookie(response, signed_in_session(session, user))
    return response


@router.post("/logout")
def logout(visitor: VisitorDep, session: SessionDep, _form: FormDep) -> Response:
    end_session(session, visitor.browser)
    response = redirect(f"{PREFIX}/login")
    visitor.set_cookie(response, new_anonymous())
    return response


# --- queue and documents ---------------------------------------------------------------------------------


def queue_filter(
    status: str = views.AWAITING,
    doc_type: str = "",
    model: str = "",
    date_from: str = "",
    date_to: str = "",
    sort: str = "oldest",
) -> views.QueueFilter:
    statuses = {views.AWAITING, views.ALL, *(s.value for s in DocumentStatus)}
    return views.QueueFilter(
        status=status if status in statuses else views.AWAITING,
        doc_type=doc_type if doc_type in available_types() else "",
        model=model[:512],
        date_from=views.parse_date(date_from),
        date_to=views.parse_date(date_to),
        sort=sort if sort in views.SORTS else "oldest",
    )


FilterDep = Annotated[views.QueueFilter, Depends(queue_filter)]


@router.get("/queue")
def queue(visitor: ReviewerDep, session: SessionDep, filters: FilterDep) -> Response:
    context = {
        "queue": views.load_queue(session, filters),
        "filters": filters,
        "query": urlencode(filters.query()),
        "doc_types": available_types(),
        "statuses": [s.value for s in DocumentStatus],
    }
    return visitor.render("queue.html", context)


@router.get("/documents/{document_id}")
def document_page(
    visitor: ReviewerDep, session: SessionDep, filters: FilterDep, document_id: str, done: str = ""
) -> Response:
    document = get_document(session, document_id)
    return _document_response(visitor, session, filters, document, done=done)


def _document_response(
    visitor: ReviewerDep,
    session: SessionDep,
    filters: views.QueueFilter,
    document: views.Document,
    *,
    done: str = "",
    view: views.DocumentView | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    previous, following = views.neighbours(session, filters, document)
    context = {
        "view": view or views.document_view(session, document),
        "filters": filters,
        "query": urlencode(filters.query()),
        "previous": previous,
        "next": following,
        "done": done if done in {"approved", "rejected"} else "",
        "error": error,
        "low_confidence": views.LOW_CONFIDENCE,
    }
    return visitor.render("document.html", context, status=status)


@router.get("/documents/{document_id}/pages/{number}")
def page_image(
    _visitor: ReviewerDep, session: SessionDep, blobs: BlobsDep, document_id: str, number: int
) -> Response:
    get_document(session, document_id)
    page = session.scalar(select(Page).where(Page.document_id == document_id, Page.number == number))
    if page is None or not blobs.exists(page.blob_sha256):
        raise Refused(404, f"document {document_id} has no page {number}")
    # a licence or a check: never into the browser's disk cache
    return FileResponse(
        blobs.path(page.blob_sha256), media_type="image/png", headers={"Cache-Control": "no-store"}
    )


@router.post("/documents/{document_id}/approve")
def approve(
    visitor: ReviewerDep,
    state: State,
    session: SessionDep,
    form: FormDep,
    filters: FilterDep,
    document_id: str,
    background: BackgroundTasks,
) -> Response:
    document = get_document(session, document_id)
    if document.status not in views.AWAITING_STATUSES:
        return _refused_review(visitor, session, filters, document_id, f"the document is {document.status}")
    schema = load_schema(document.doc_type)
    data, errors = parse_form(schema, form)
    for issue in schema_errors(document.doc_type, data):
        errors.setdefault(issue.path, []).append(issue.message)
    if errors:
        view = views.document_view(session, document, form_data=data, errors=errors)
        message = "Not approved: fix the highlighted fields first."
        return _document_response(visitor, session, filters, document, view=view, error=message, status=422)
    try:
        reviewing.approve(
            session,
            document,  # loaded above in this session: approve() reuses it instead of loading it again
            actor=visitor.actor,
            data=data,
            via="review_ui",
            score_later=reviewing.score_later(state, background),
        )
    except IllegalTransition as exc:
        return _refused_review(visitor, session, filters, document_id, exc)
    return redirect(_document_url(document_id, filters, done="approved"))


@router.post("/documents/{document_id}/reject")
def reject(
    visitor: ReviewerDep, session: SessionDep, form: FormDep, filters: FilterDep, document_id: str
) -> Response:
    document = get_document(session, document_id)
    if document.status not in views.AWAITING_STATUSES:
        return _refused_review(visitor, session, filters, document_id, f"the document is {document.status}")
    reason = str(form.get("reason") or "").strip()
    if not reason:  # the UI asks for a reason; a REST client may reject without one
        message = "Not rejected: a rejection needs a reason."
        return _document_response(visitor, session, filters, document, error=message, status=422)
    try:
        reviewing.reject(session, document_id, actor=visitor.actor, reason=reason, via="review_ui")
    except IllegalTransition as exc:
        return _refused_review(visitor, session, filters, document_id, exc)
    return redirect(_document_url(document_id, filters, done="rejected"))


def _refused_review(
    visitor: ReviewerDep, session: SessionDep, filters: views.QueueFilter, document_id: str, why: object
) -> Response:
    document = get_document_fresh(session, document_id)
    message = f"Not reviewed: {why}"
    return _document_response(visitor, session, filters, document, error=message, status=409)


def _document_url(document_id: str, filters: views.QueueFilter, **extra: str) -> str:
    query = urlencode({**filters.query(), **extra})
    return f"{PREFIX}/documents/{document_id}" + (f"?{query}" if query else "")


# --- dashboard, export, assets -----------------------------------------------------------------------------


@router.get("/dashboard")
def dashboard(
    visitor: ReviewerDep, session: SessionDep, source: str = GroundTruthSource.REVIEWED.value
) -> Response:
    if source not in {views.ALL, *(s.value for s in GroundTruthSource)}:
        source = GroundTruthSource.REVIEWED.value
    board = views.load_dashboard(session, source=source)
    charts = {
        (group.doc_type, group.model): line_chart(group.days, title=f"{group.doc_type} / {group.model}")
        for group in board.groups
    }
    corrected = bar_chart(
        [(f"{doc_type} · {name}", count) for doc_type, name, count in board.corrected_fields],
        title="Fields most often corrected (documents)",
    )
    sources = [views.ALL, *(s.value for s in GroundTruthSource)]
    context = {"board": board, "charts": charts, "corrected_chart": corrected, "sources": sources}
    return visitor.render("dashboard.html", context)


@router.get("/export")
def export(
    _visitor: AdminDep,
    state: State,
    format: Annotated[str, Query(pattern="^(jsonl|csv)$")] = "jsonl",
    doc_type: str = "",
) -> Response:
    """Every approved document (the REST export's format), newest first."""
    filters = DocumentFilter(
        status=DocumentStatus.APPROVED, doc_type=doc_type if doc_type in available_types() else None
    )
    if format == "csv":
        return StreamingResponse(
            csv_chunks(state.sessions, filters),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="approved.csv"'},
        )
    return StreamingResponse(
        jsonl_lines(state.sessions, filters),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="approved.jsonl"'},
    )


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC_FILES:
        raise Refused(404, "no such file")
    return FileResponse(
        STATIC_DIR / name, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"}
    )
