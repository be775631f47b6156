"""The feeder balance: the reference meter and loss model, and one balance per epoch.

Revision ID: 0004_feeder
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_feeder"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "feeder",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("meter_id", sa.String(64), sa.ForeignKey("meters.meter_id"), nullable=False),
        sa.Column("ppm_per_kw", sa.Integer, nullable=False),
        sa.Column("fixed_w", sa.Integer, nullable=False),
        sa.Column("tolerance_wh", sa.Integer, nullable=False),
        sa.Column("tolerance_ppm", sa.Integer, nullable=False),
        sa.Column("set_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "balances",
        sa.Column("epoch", sa.BigInteger, primary_key=True),
        sa.Column("batch_id", sa.BigInteger),
        sa.Column("t0", sa.BigInteger, nullable=False),
        sa.Column("t1", sa.BigInteger, nullable=False),
        sa.Column("households_wh", sa.BigInteger, nullable=False),
        sa.Column("gross_wh", sa.BigInteger, nullable=False),
        sa.Column("feeder_wh", sa.BigInteger, nullable=False),
        sa.Column("losses_wh", sa.BigInteger, nullable=False),
        sa.Column("gap_wh", sa.BigInteger, nullable=False),
        sa.Column("tolerance_wh", sa.BigInteger, nullable=False),
        sa.Column("verdict", sa.String(24), nullable=False),
        sa.Column("named", sa.Text, nullable=False),
        sa.Column("energies", sa.Text, nullable=False),
        sa.Column("registers", sa.Text, nullable=False),
        sa.Column("review", sa.String(16)),
        sa.Column("reviewed_at", sa.BigInteger),
    )


def downgrade() -> None:
    op.drop_table("balances")
    op.drop_table("feeder")
