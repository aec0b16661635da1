"""Grounding: each page's OCR words (`pages.words`, JSON: status, ms, [text, x0, y0, x1, y1, confidence,
line] per word, boxes in page fractions) and each run's value locations (`extraction_runs.locations`,
JSON: pointer -> {page, box, score}). Both nullable: pages and runs stored before have neither.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("pages") as batch:
        batch.add_column(sa.Column("words", sa.JSON(), nullable=True))
    with op.batch_alter_table("extraction_runs") as batch:
        batch.add_column(sa.Column("locations", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("extraction_runs") as batch:
        batch.drop_column("locations")
    with op.batch_alter_table("pages") as batch:
        batch.drop_column("words")
