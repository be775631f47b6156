"""The transactions proposed to a hub for its co-signature, kept until they land, so that
the hub's signatures are accepted by a restarted platform (or another instance).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "cosign_pending",
        sa.Column("hub_id", sa.String(64), primary_key=True),
        sa.Column("epoch", sa.BigInteger, primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("memo", sa.Text, nullable=False),
        sa.Column("message", sa.LargeBinary, nullable=False),
    )
