"""Each booked trade keeps its price, wheeling rate and fee rate, so that a household's
statement (docs/statement.md) lets it recompute every amount of the trade by the rounding
rule in units.py; trades booked before this revision have none (their statement says so).

Revision ID: 0008_statement
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_statement"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("ledger_trades") as batch:
        batch.add_column(sa.Column("price", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("wheeling_rate", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("fee_bps", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger_trades") as batch:
        batch.drop_column("fee_bps")
        batch.drop_column("wheeling_rate")
        batch.drop_column("price")
