"""job request id: the request that asked for each deferred job, for its log lines

Revision ID: c0ffee000007
Revises: c0ffee000006
Create Date: 2026-12-01 07:05:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "c0ffee000007"
down_revision = "c0ffee000006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_outbox") as batch:
        batch.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_outbox") as batch:
        batch.drop_column("request_id")
