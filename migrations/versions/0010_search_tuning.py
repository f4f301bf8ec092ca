"""search tuning: the curated synonym sets and the tally of searches that found nothing

Revision ID: c0ffee000010
Revises: c0ffee000009
Create Date: 2026-12-04 16:50:00.000000
"""

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision = "c0ffee000010"
down_revision = "c0ffee000009"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "search_synonyms",
        sa.Column("id", ID, nullable=False),
        sa.Column("sets", sa.JSON(), nullable=False),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_synonyms")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "search_zero_result",
        sa.Column("id", ID, nullable=False),
        sa.Column("query", sa.String(length=200), nullable=False),
        sa.Column("searches", sa.BigInteger(), nullable=False),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_zero_result")),
        sa.UniqueConstraint("query", name=op.f("uq_search_zero_result_query")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("search_zero_result")
    op.drop_table("search_synonyms")
