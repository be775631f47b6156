"""The chain's certificates indexed by holder (`ledger_certificates`), so a holder's page is
read by an index range, not by a pass over the chain's history.

The table starts empty with no position stored: the first `catch_up_certificates` reads the
history once from the start.

Revision ID: 0011_certificates
Revises: 0010_lists
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_certificates"
down_revision = "0010_lists"


def upgrade() -> None:
    op.create_table(
        "ledger_certificates",
        sa.Column("mint", sa.String(44), primary_key=True),
        sa.Column("pos", sa.BigInteger, nullable=False),
        sa.Column("meter_id", sa.Text, nullable=False),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("from_wh", sa.BigInteger, nullable=False),
        sa.Column("to_wh", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("holder", sa.String(44), nullable=False),
    )
    op.create_index(
        "ledger_certificates_holder_page", "ledger_certificates", ["holder", "pos", "mint"]
    )


def downgrade() -> None:
    op.drop_index("ledger_certificates_holder_page", table_name="ledger_certificates")
    op.drop_table("ledger_certificates")
