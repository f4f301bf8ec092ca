"""progress order: when each stored update happened by the server's clock

Revision ID: c0ffee000006
Revises: c0ffee000005
Create Date: 2026-12-01 05:40:00.000000
"""

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision = "c0ffee000006"
down_revision = "c0ffee000005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("listening_progress") as batch:
        batch.add_column(sa.Column("effective_at", DateTimeUTC(timezone=True), nullable=True))
    # Stored stamps were already capped a few seconds past their receipt; the earlier of the two is the best guess.
    progress = sa.table(
        "listening_progress",
        sa.column("effective_at", DateTimeUTC(timezone=True)),
        sa.column("client_updated_at", DateTimeUTC(timezone=True)),
        sa.column("updated_at", DateTimeUTC(timezone=True)),
    )
    op.execute(
        progress.update().values(
            effective_at=sa.case(
                (progress.c.client_updated_at < progress.c.updated_at, progress.c.client_updated_at),
                else_=progress.c.updated_at,
            )
        )
    )
    with op.batch_alter_table("listening_progress") as batch:
        batch.alter_column("effective_at", existing_type=DateTimeUTC(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("listening_progress") as batch:
        batch.drop_column("effective_at")
