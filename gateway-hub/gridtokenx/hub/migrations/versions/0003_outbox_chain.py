"""The outbox keeps the ledger transactions of a submitted batch and the last error.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("chain_txs", sa.Text))
        batch.add_column(sa.Column("last_error", sa.String(200)))
