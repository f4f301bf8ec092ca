"""search nodes: each Meilisearch node's own record of the catalog changes it has taken in

Revision ID: c0ffee000012
Revises: c0ffee000011
Create Date: 2026-12-05 02:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "c0ffee000012"
down_revision = "c0ffee000011"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "search_node_applied",
        sa.Column("outbox_id", ID, nullable=False),
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["catalog_outbox.id"],
            name=op.f("fk_search_node_applied_outbox_id_catalog_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("outbox_id", "node", name=op.f("pk_search_node_applied")),
    )


def downgrade() -> None:
    op.drop_table("search_node_applied")
