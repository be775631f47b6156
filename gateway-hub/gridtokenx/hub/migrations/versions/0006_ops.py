"""Readings retention: a batch whose readings were archived and pruned names its file, and
each meter's sequence range in it is indexed (to find a pruned reading's archive).

Revision ID: 0006_ops
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_ops"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("archive", sa.String(200)))
        batch.add_column(sa.Column("archived_at", sa.BigInteger))
    op.create_table(
        "archived_ranges",
        sa.Column("meter_id", sa.String(64), primary_key=True),
        sa.Column("first_seq", sa.BigInteger, primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("batch_id", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("archived_ranges")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("archived_at")
        batch.drop_column("archive")
