"""A licence page's AAMVA barcode reading (`pages.barcode`, JSON: {"fields": {...} | null, "reason"}),
decoded in the CPU stage beside OCR so that the GPU worker only reads it. Nullable: pages of other
document types, a front whose back held the barcode, and pages stored before have none.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("pages") as batch:
        batch.add_column(sa.Column("barcode", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pages") as batch:
        batch.drop_column("barcode")
