"""The database tables, one class each. API request/response shapes live elsewhere (api)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from storage.columns import UTCDateTime, utcnow

# explicit names: Alembic needs them to alter constraints later, and SQLite batch mode needs them most
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 40
SHA256_LENGTH = 64


class DocumentStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    NEEDS_REVIEW = "needs_review"
    FAILED = "failed"
    APPROVED = "approved"
    REJECTED = "rejected"


class BatchStatus(enum.StrEnum):
    RUNNING = "running"  # its folder is being walked (in the background)
    DONE = "done"
    FAILED = "failed"  # the walk could not go on (the folder vanished or left the root); see error_code


class ReviewAction(enum.StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class GroundTruthSource(enum.StrEnum):
    REVIEWED = "reviewed"  # a reviewer's approved or corrected data
    GIVEN = "given"  # supplied with the document (datasets, evaluation)


class UserRole(enum.StrEnum):
    REVIEWER = "reviewer"
    ADMIN = "admin"


def _one_of(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    folder: Mapped[str] = mapped_column(Text)
    doc_type: Mapped[str] = mapped_column(String(64))
    recursive: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    total_files: Mapped[int] = mapped_column(default=0, server_default="0")
    created_count: Mapped[int] = mapped_column(default=0, server_default="0")
    duplicate_count: Mapped[int] = mapped_column(default=0, server_default="0")
    refused_count: Mapped[int] = mapped_column(default=0, server_default="0")
    # rows from before batches ran in the background were finished when written, hence "done" there
    status: Mapped[str] = mapped_column(
        String(16), default=BatchStatus.RUNNING.value, server_default=BatchStatus.DONE.value
    )
    # the real batch root when the batch was asked for: the walk (perhaps resumed by another process)
    # confines itself to it again
    root: Mapped[str | None] = mapped_column(Text)
    refused_reasons: Mapped[dict[str, int]] = mapped_column(JSON, default=dict, server_default="{}")
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # moved on with every progress update: a running batch untouched for long has lost its walker
    updated_at: Mapped[datetime | None] = mapped_column(default=utcnow, onupdate=utcnow)
    # the walk's position: the relative path (under the folder, as walked) of the last file taken as of
    # the last recorded progress, percent-encoded bytes (ASCII whatever the file system's names); a walk
    # resumes just after it
    cursor: Mapped[str | None] = mapped_column(Text)
    # moved on by one with every recorded progress (cursor and counts), and only by the walk that started
    # from it (twins from a duplicated message: the first to record wins, the other stops); the walk's
    # messages carry this number, never the path (a file name can be personal)
    checkpoint: Mapped[int] = mapped_column(default=0, server_default="0")


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        # the same bytes, type and model are one document; model_key is model with '' for "default",
        # because NULLs never collide in a unique constraint
        UniqueConstraint("content_sha256", "doc_type", "model_key"),
        CheckConstraint(_one_of("status", DocumentStatus), name="status"),
        Index(None, "created_at", "id"),
        Index(None, "status", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    content_sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH))
    filename: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(127))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    doc_type: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(512))
    model_key: Mapped[str] = mapped_column(String(512), default="")
    status: Mapped[str] = mapped_column(String(16), default=DocumentStatus.QUEUED.value)
    pages: Mapped[int | None]
    # how long rasterising took (a CPU task of its own): reported in the run's timings beside the GPU stages
    rasterize_ms: Mapped[float | None] = mapped_column(Float)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    callback_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    batch_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("batches.id", ondelete="SET NULL"), index=True
    )
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")

    page_images: Mapped[list[Page]] = relationship(
        back_populates="document", cascade="all, delete-orphan", passive_deletes=True, order_by="Page.number"
    )
    runs: Mapped[list[ExtractionRun]] = relationship(
        back_populates="document",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ExtractionRun.id",
    )
    reviews: Mapped[list[Review]] = relationship(
        back_populates="document", cascade="all, delete-orphan", passive_deletes=True, order_by="Review.id"
    )

    @validates("model")
    def _keep_model_key(self, _key: str, value: str | None) -> str | None:
        self.model_key = value or ""
        return value


class Page(Base):
    __tablename__ = "pages"
    __table_args__ = (
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint("width > 0 AND height > 0", name="size_positive"),
    )

    document_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(primary_key=True)
    # indexed: deciding whether a blob is still referenced looks pages up by hash
    blob_sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH), index=True)
    width: Mapped[int]
    height: Mapped[int]
    # what OCR read on the page (extractor.ocr.PageWords.to_json); None: not read (stored before 0007)
    words: Mapped[Any] = mapped_column(JSON, nullable=True)
    # a licence page's AAMVA barcode reading (extractor.grounding.barcode.BarcodeReading.to_json), decoded in
    # the CPU stage; None: not decoded (another document type, a front whose back had the
    # barcode, or stored before 0009)
    barcode: Mapped[Any] = mapped_column(JSON, nullable=True)

    document: Mapped[Document] = relationship(back_populates="page_images")


class ExtractionRun(Base):
    __tablename__ = "extraction_runs"
    __table_args__ = (
        # a redelivered task carries the same key and so cannot store a second run
        UniqueConstraint("document_id", "idempotency_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    idempotency_key: Mapped[str] = mapped_column(String(255))
    model_id: Mapped[str] = mapped_column(String(512))
    model_revision: Mapped[str | None] = mapped_column(String(128))
    prompt_version: Mapped[str] = mapped_column(String(64))
    schema_version: Mapped[str] = mapped_column(String(64))
    raw_output: Mapped[str] = mapped_column(Text)
    data: Mapped[Any] = mapped_column(JSON, nullable=True)
    valid: Mapped[bool]
    errors: Mapped[Any] = mapped_column(JSON)
    checks: Mapped[Any] = mapped_column(JSON)
    confidence: Mapped[Any] = mapped_column(JSON)
    # JSON pointer -> {page, box, score}: where each value is on its page (None: no OCR words)
    locations: Mapped[Any] = mapped_column(JSON, nullable=True)
    timings_ms: Mapped[Any] = mapped_column(JSON)
    prompt_tokens: Mapped[int | None]
    generated_tokens: Mapped[int | None]
    tiles: Mapped[int | None]
    tiles_per_page: Mapped[Any] = mapped_column(JSON, nullable=True)  # fewer on long documents
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    document: Mapped[Document] = relationship(back_populates="runs")
    scores: Mapped[list[Score]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True, order_by="Score.id"
    )


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (CheckConstraint(_one_of("action", ReviewAction), name="action"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(16))
    corrected_data: Mapped[Any] = mapped_column(JSON, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    document: Mapped[Document] = relationship(back_populates="reviews")


class Score(Base):
    __tablename__ = "scores"
    __table_args__ = (CheckConstraint(_one_of("ground_truth_source", GroundTruthSource), name="source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("extraction_runs.id", ondelete="CASCADE"), index=True)
    ground_truth_source: Mapped[str] = mapped_column(String(16))
    # explicit: SQLAlchemy 2.1 maps a bare float to Double, 2.0 to Float; the migration says Float
    ted_accuracy: Mapped[float] = mapped_column(Float)
    f1: Mapped[float] = mapped_column(Float)
    perfect_match: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[ExtractionRun] = relationship(back_populates="scores")


class AuditEntry(Base):
    """Who did what to which document. `detail` names things (fields, counts), never personal values."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    # no foreign key: the trail of a deleted document must outlive it
    document_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    detail: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # the first characters of the key, stored plainly so a presented key finds its row without a scan
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_one_of("role", UserRole), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # stored lower-cased by whoever creates users, so uniqueness is case-insensitive on both backends
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # set by an admin: a disabled account cannot sign in and its open sessions stop working; the row stays,
    # because reviews and the audit log name the account
    disabled: Mapped[bool] = mapped_column(default=False, server_default=false())


class ReviewSession(Base):
    """A signed-in review-UI session. The cookie carries the session id; signing out deletes the row, so a
    cookie saved before then opens nothing afterwards."""

    __tablename__ = "review_sessions"

    # SHA-256 of the session id: the table alone (a backup, a leak) opens no session
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class SignInFailure(Base):
    """Failed sign-ins counted under one key (an account, a client address, or the two together), in a
    window; `locked_until` set once a key reaches its limit. Keys hold hashes, never an address or email."""

    __tablename__ = "sign_in_failures"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0, server_default="0")
    window_start: Mapped[datetime] = mapped_column(index=True)
    locked_until: Mapped[datetime | None]
