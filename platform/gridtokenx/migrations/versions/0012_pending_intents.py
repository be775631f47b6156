"""The escrow intents still pending indexed on their own (`ledger_orders_pending`, a partial
index), so the sweep at every epoch's close reads a handful of rows: with the table's
statistics (ANALYZE), SQLite judged the status index useless on a year of closed orders
and scanned them all.

Revision ID: 0012_pending_intents
Revises: 0011_certificates
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_pending_intents"
down_revision = "0011_certificates"


def upgrade() -> None:
    op.create_index(
        "ledger_orders_pending",
        "ledger_orders",
        ["order_id"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ledger_orders_pending", table_name="ledger_orders")
