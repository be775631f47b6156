"""Orders placed on an instance that is not the sequencer wait with seq 0 until the
sequencer enters them into the book: found by (epoch, seq).

Revision ID: 0008_seq
Revises: 0007
"""

from alembic import op

revision = "0008_seq"
down_revision = "0007"


def upgrade() -> None:
    op.create_index("market_orders_epoch_seq", "market_orders", ["epoch", "seq"])


def downgrade() -> None:
    op.drop_index("market_orders_epoch_seq", "market_orders")
