"""library removal: books a listener took out of their library, never recommended again

Revision ID: c0ffee000008
Revises: c0ffee000007
Create Date: 2026-12-01 11:10:00.000000
"""

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision = "c0ffee000008"
down_revision = "c0ffee000007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "library_removal",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("audiobook_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["audiobook_id"],
            ["audiobook.id"],
            name=op.f("fk_library_removal_audiobook_id_audiobook"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_library_removal_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_removal")),
        sa.UniqueConstraint("user_id", "audiobook_id", name=op.f("uq_library_removal_user_id")),
    )
    with op.batch_alter_table("library_removal") as batch:
        batch.create_index(batch.f("ix_library_removal_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("library_removal") as batch:
        batch.drop_index(batch.f("ix_library_removal_user_id"))
    op.drop_table("library_removal")
