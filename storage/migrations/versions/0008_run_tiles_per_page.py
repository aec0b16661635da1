"""Each run's tiles per page (`extraction_runs.tiles_per_page`, JSON list): a long document gets fewer
tiles on every page to fit the model's context, and the Result says how many. Nullable: runs stored
before have none.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("extraction_runs") as batch:
        batch.add_column(sa.Column("tiles_per_page", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("extraction_runs") as batch:
        batch.drop_column("tiles_per_page")
