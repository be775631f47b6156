"""Lists whose cost follows the page: a user's orders by (epoch, seq, order_id), a wallet's
trades by (epoch, trade_id), a household's meters, a meter's readings by (epoch, idx,
hub_id), the users by (created_at, user_id), and every account's ledger transactions by
their place in the chain.

Revision ID: 0010_lists
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_lists"
down_revision = "0009"


def upgrade() -> None:
    op.create_table(
        "ledger_account_entries",
        sa.Column("account", sa.String(44), primary_key=True),
        sa.Column("pos", sa.BigInteger, primary_key=True),
        sa.Column("signature", sa.String(88), nullable=False),
        sa.Column("memos", sa.Text, nullable=False),
    )
    op.drop_index("ledger_trades_buyer", table_name="ledger_trades")
    op.drop_index("ledger_trades_seller", table_name="ledger_trades")
    op.create_index("ledger_trades_buyer_page", "ledger_trades", ["buyer", "epoch", "trade_id"])
    op.create_index("ledger_trades_seller_page", "ledger_trades", ["seller", "epoch", "trade_id"])
    op.create_index(
        "market_orders_user_page", "market_orders", ["user_id", "epoch", "seq", "order_id"]
    )
    op.drop_index("ledger_batch_readings_meter", table_name="ledger_batch_readings")
    op.create_index(
        "ledger_batch_readings_meter_page",
        "ledger_batch_readings",
        ["meter_id", "epoch", "idx", "hub_id"],
    )
    op.create_index("ledger_meters_owner", "ledger_meters", ["owner"])
    op.create_index("users_page", "users", ["created_at", "user_id"])
    op.create_index("users_status_page", "users", ["status", "created_at", "user_id"])


def downgrade() -> None:
    op.drop_index("users_status_page", table_name="users")
    op.drop_index("users_page", table_name="users")
    op.drop_index("ledger_meters_owner", table_name="ledger_meters")
    op.drop_index("market_orders_user_page", table_name="market_orders")
    op.drop_index("ledger_batch_readings_meter_page", table_name="ledger_batch_readings")
    op.create_index(
        "ledger_batch_readings_meter", "ledger_batch_readings", ["meter_id", "epoch", "idx"]
    )
    op.drop_index("ledger_trades_seller_page", table_name="ledger_trades")
    op.drop_index("ledger_trades_buyer_page", table_name="ledger_trades")
    op.create_index("ledger_trades_seller", "ledger_trades", ["seller", "epoch"])
    op.create_index("ledger_trades_buyer", "ledger_trades", ["buyer", "epoch"])
    op.drop_table("ledger_account_entries")
