"""Initial schema: documents and their pages, runs, reviews and scores; audit log, API keys, users, batches.

Revision ID: 0001
Revises:
Create Date: 2025-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

DOCUMENT_STATUSES = "'queued', 'processing', 'done', 'needs_review', 'failed', 'approved', 'rejected'"


def _stamp(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _counter(name: str) -> sa.Column:
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("folder", sa.Text(), nullable=False),
        sa.Column("doc_type", sa.String(64), nullable=False),
        sa.Column("recursive", sa.Boolean(), nullable=False),
        _stamp("created_at"),
        _counter("total_files"),
        _counter("created_count"),
        _counter("duplicate_count"),
        _counter("refused_count"),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
    )
    op.create_table(
        "documents",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("media_type", sa.String(127), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("doc_type", sa.String(64), nullable=False),
        sa.Column("model", sa.String(512), nullable=True),
        sa.Column("model_key", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("callback_url", sa.Text(), nullable=True),
        _stamp("created_at"),
        _stamp("updated_at"),
        sa.Column("batch_id", sa.String(40), nullable=True),
        _counter("attempts"),
        sa.PrimaryKeyConstraint("id", name="pk_documents"),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name="fk_documents_batch_id_batches", ondelete="SET NULL"
        ),
        sa.UniqueConstraint(
            "content_sha256", "doc_type", "model_key", name="uq_documents_content_sha256_doc_type_model_key"
        ),
        sa.CheckConstraint(f"status IN ({DOCUMENT_STATUSES})", name="ck_documents_status"),
    )
    op.create_index("ix_documents_batch_id", "documents", ["batch_id"])
    op.create_index("ix_documents_created_at_id", "documents", ["created_at", "id"])
    op.create_index("ix_documents_status_created_at_id", "documents", ["status", "created_at", "id"])

    op.create_table(
        "pages",
        sa.Column("document_id", sa.String(40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("blob_sha256", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("document_id", "number", name="pk_pages"),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], name="fk_pages_document_id_documents", ondelete="CASCADE"
        ),
        sa.CheckConstraint("number >= 1", name="ck_pages_number_positive"),
        sa.CheckConstraint("width > 0 AND height > 0", name="ck_pages_size_positive"),
    )
    op.create_index("ix_pages_blob_sha256", "pages", ["blob_sha256"])

    op.create_table(
        "extraction_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.String(40), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("model_id", sa.String(512), nullable=False),
        sa.Column("model_revision", sa.String(128), nullable=True),
        sa.Column("prompt_version", sa.String(64), nullable=False),
        sa.Column("schema_version", sa.String(64), nullable=False),
        sa.Column("raw_output", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("confidence", sa.JSON(), nullable=False),
        sa.Column("timings_ms", sa.JSON(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("generated_tokens", sa.Integer(), nullable=True),
        sa.Column("tiles", sa.Integer(), nullable=True),
        _stamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_extraction_runs"),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name="fk_extraction_runs_document_id_documents",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "document_id", "idempotency_key", name="uq_extraction_runs_document_id_idempotency_key"
        ),
    )
    op.create_index("ix_extraction_runs_document_id", "extraction_runs", ["document_id"])

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("corrected_data", sa.JSON(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        _stamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], name="fk_reviews_document_id_documents", ondelete="CASCADE"
        ),
        sa.CheckConstraint("action IN ('approve', 'reject')", name="ck_reviews_action"),
    )
    op.create_index("ix_reviews_document_id", "reviews", ["document_id"])

    op.create_table(
        "scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("ground_truth_source", sa.String(16), nullable=False),
        sa.Column("ted_accuracy", sa.Float(), nullable=False),
        sa.Column("f1", sa.Float(), nullable=False),
        sa.Column("perfect_match", sa.Boolean(), nullable=False),
        _stamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_scores"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["extraction_runs.id"], name="fk_scores_run_id_extraction_runs", ondelete="CASCADE"
        ),
        sa.CheckConstraint("ground_truth_source IN ('reviewed', 'given')", name="ck_scores_source"),
    )
    op.create_index("ix_scores_run_id", "scores", ["run_id"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("document_id", sa.String(40), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        _stamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"])
    op.create_index("ix_audit_log_document_id", "audit_log", ["document_id"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(255), nullable=False),
        _stamp("created_at"),
        _stamp("last_used_at", nullable=True),
        _stamp("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("name", name="uq_api_keys_name"),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
    )

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        _stamp("created_at"),
        _counter("failed_logins"),
        _stamp("locked_until", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.CheckConstraint("role IN ('reviewer', 'admin')", name="ck_users_role"),
    )


def downgrade() -> None:
    # children before parents; dropping a table drops its indexes
    for table in (
        "users",
        "api_keys",
        "audit_log",
        "scores",
        "reviews",
        "extraction_runs",
        "pages",
        "documents",
        "batches",
    ):
        op.drop_table(table)
