"""Documents: how long rasterising took, so a run's timings include the CPU stage as well.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # nullable, no default: documents rasterised before this have no figure (their runs report 0)
    op.add_column("documents", sa.Column("rasterize_ms", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("documents", "rasterize_ms")
