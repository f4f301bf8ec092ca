"""sqlite ids never reused: every table with an integer id autoincrements, as PostgreSQL's sequences do

Without AUTOINCREMENT SQLite gives a new row the largest id plus one, so deleting the newest book,
listener or job hands its id to the next one: a client's cached book, the recommendation lists
cached under a deleted listener's id, or an in-flight job's claim would then belong to someone else.
PostgreSQL never reuses a sequence value; this makes the embedded profile keep the same promise.

Revision ID: c0ffee000009
Revises: c0ffee000008
Create Date: 2026-12-04 14:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "c0ffee000009"
down_revision = "c0ffee000008"
branch_labels = None
depends_on = None

TABLES_WITH_INTEGER_IDS = (
    "user_account",
    "email_token",
    "refresh_token",
    "author",
    "narrator",
    "genre",
    "audiobook",
    "catalog_outbox",
    "chapter",
    "review",
    "helpful_vote",
    "bookmark",
    "library_entry",
    "library_removal",
    "listening_ledger",
    "listening_progress",
    "play_window",
    "job_outbox",
)
# Batch mode rebuilds a table from its reflection, which cannot read an index on an expression.
EXPRESSION_INDEXES = (
    ("uq_user_account_username_lower", "user_account", "lower(username)", True),
    ("uq_author_name_lower", "author", "lower(name)", True),
    ("uq_narrator_name_lower", "narrator", "lower(name)", True),
    ("ix_audiobook_title_lower", "audiobook", "lower(title)", False),
)


def _rebuild(autoincrement: bool) -> None:
    # Migrations run without SQLite's foreign key enforcement, so a parent table can be rebuilt under its children.
    for table in TABLES_WITH_INTEGER_IDS:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass
    for name, table, expression, unique in EXPRESSION_INDEXES:
        op.create_index(name, table, [sa.text(expression)], unique=unique)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(autoincrement=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(autoincrement=False)
