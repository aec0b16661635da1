"""Batches: the walk's checkpoint (`checkpoint`, its number; `cursor`, its position), so a walk proceeds in
slices and resumes where it stopped.

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
    # a running batch from before is at checkpoint 0 with no cursor: its next walk (the batch id alone, the
    # message it may be waiting for) starts from the beginning, as walks did; plain ADD COLUMN, see 0003 on
    # why `batches` is never copied and moved. documents.batch_id, which each checkpoint counts by, is
    # indexed since 0001
    op.add_column("batches", sa.Column("cursor", sa.Text(), nullable=True))
    op.add_column("batches", sa.Column("checkpoint", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    op.drop_column("batches", "checkpoint")
    op.drop_column("batches", "cursor")
