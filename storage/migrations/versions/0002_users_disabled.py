"""Users: a `disabled` flag (admins disable accounts from /review/admin/users instead of deleting them).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # a constant default: SQLite adds such a column in place, and every existing account stays enabled
    op.add_column("users", sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    # plain DROP COLUMN (SQLite >= 3.35): a copy-and-move batch could lose the table's CHECK constraint
    op.drop_column("users", "disabled")
