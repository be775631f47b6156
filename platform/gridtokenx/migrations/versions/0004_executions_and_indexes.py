"""CDA executions persisted when they happen; indexes so that no request or epoch step
reads more than its own rows (cost that does not grow with history).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "market_executions",
        sa.Column("epoch", sa.BigInteger, primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("buy_id", sa.String(64), nullable=False),
        sa.Column("sell_id", sa.String(64), nullable=False),
        sa.Column("buyer", sa.String(36), nullable=False),
        sa.Column("seller", sa.String(36), nullable=False),
        sa.Column("buyer_zone", sa.String(64), nullable=False),
        sa.Column("seller_zone", sa.String(64), nullable=False),
        sa.Column("quantity_wh", sa.BigInteger, nullable=False),
        sa.Column("price", sa.BigInteger, nullable=False),
        sa.Column("wheeling_rate", sa.BigInteger, nullable=False),
        sa.Column("fee_bps", sa.Integer, nullable=False),
    )
    op.create_index("market_orders_epoch_status", "market_orders", ["epoch", "status"])
    op.create_index("market_orders_status", "market_orders", ["status"])
    op.create_index("ledger_orders_status", "ledger_orders", ["status"])
    op.create_index("ledger_trades_buy", "ledger_trades", ["buy_id"])
    op.create_index("ledger_trades_sell", "ledger_trades", ["sell_id"])
    op.create_index("ledger_refunds_epoch", "ledger_refunds", ["epoch", "kind"])
