"""Readings retention: a batch whose readings were archived and pruned names its file.

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


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("archived_at")
        batch.drop_column("archive")
