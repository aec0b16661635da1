"""Batches: the walk's checkpoint (`cursor`), so a walk proceeds in slices and resumes where it stopped.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # nullable, no default: a running batch from before has no checkpoint, and its next walk starts from
    # the beginning (as walks did); plain ADD COLUMN, see 0003 on why `batches` is never copied and moved.
    # documents.batch_id, which each checkpoint counts by, is indexed since 0001
    op.add_column("batches", sa.Column("cursor", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("batches", "cursor")
