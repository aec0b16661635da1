"""Batches run in the background: their status, root, refusals by reason, error and last progress.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

# plain ADD/DROP COLUMN on both backends: a copy-and-move batch would drop and recreate `batches`, and
# with foreign keys on, SQLite's implicit delete would null every document's batch_id
COLUMNS = ("status", "root", "refused_reasons", "error_code", "error_message", "updated_at")


def upgrade() -> None:
    # existing rows were ingested inside their request, so they are finished
    op.add_column("batches", sa.Column("status", sa.String(16), server_default="done", nullable=False))
    op.add_column("batches", sa.Column("root", sa.Text(), nullable=True))
    op.add_column("batches", sa.Column("refused_reasons", sa.JSON(), server_default="{}", nullable=False))
    op.add_column("batches", sa.Column("error_code", sa.String(64), nullable=True))
    op.add_column("batches", sa.Column("error_message", sa.Text(), nullable=True))
    op.add_column("batches", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for name in reversed(COLUMNS):
        op.drop_column("batches", name)
