"""notifications: follows, notification preferences, and the log of mails decided (one per user, kind and period)

Also gives library_removal the index its model declares (on audiobook_id; 0008 indexed user_id, which
its unique constraint already leads with).

Revision ID: c0ffee000011
Revises: c0ffee000010
Create Date: 2026-12-04 20:40:00.000000
"""

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision = "c0ffee000011"
down_revision = "c0ffee000010"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["user_account.id"], name=op.f(f"fk_{table}_user_id_user_account"), ondelete="CASCADE"
    )


def _audit() -> list[sa.Column]:
    return [
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "follow",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column(
            "kind", sa.Enum("author", "narrator", "series", "genre", name="followkind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("target", sa.String(length=255), nullable=False),
        *_audit(),
        _user_fk("follow"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_follow")),
        sa.UniqueConstraint("user_id", "kind", "target", name=op.f("uq_follow_user_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("follow") as batch:
        batch.create_index(batch.f("ix_follow_user_id"), ["user_id"], unique=False)
    op.create_table(
        "notification_preferences",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column(
            "new_releases",
            sa.Enum("instant", "daily", "off", name="releasealerts", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("weekly_digest", sa.Boolean(), nullable=False),
        sa.Column("digest_day", sa.Integer(), nullable=False),
        sa.Column("digest_hour", sa.Integer(), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        *_audit(),
        _user_fk("notification_preferences"),
        sa.CheckConstraint("digest_day >= 0 AND digest_day <= 6", name=op.f("ck_notification_preferences_digest_day_range")),
        sa.CheckConstraint(
            "digest_hour >= 0 AND digest_hour <= 23", name=op.f("ck_notification_preferences_digest_hour_range")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_preferences")),
        sa.UniqueConstraint("user_id", name=op.f("uq_notification_preferences_user_id")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "notification_sent",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("period", sa.String(length=64), nullable=False),
        *_audit(),
        _user_fk("notification_sent"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_sent")),
        sa.UniqueConstraint("user_id", "kind", "period", name=op.f("uq_notification_sent_user_id")),
        sqlite_autoincrement=True,
    )


    with op.batch_alter_table("library_removal") as batch:
        batch.drop_index(batch.f("ix_library_removal_user_id"))
        batch.create_index(batch.f("ix_library_removal_audiobook_id"), ["audiobook_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("library_removal") as batch:
        batch.drop_index(batch.f("ix_library_removal_audiobook_id"))
        batch.create_index(batch.f("ix_library_removal_user_id"), ["user_id"], unique=False)
    op.drop_table("notification_sent")
    op.drop_table("notification_preferences")
    with op.batch_alter_table("follow") as batch:
        batch.drop_index(batch.f("ix_follow_user_id"))
    op.drop_table("follow")
