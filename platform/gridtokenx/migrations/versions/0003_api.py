"""Login abuse control: revoked logins (access tokens die with their login) and login
failures with lockouts.

Revision ID: 0003_api
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_api"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "revoked_logins",
        sa.Column("family", sa.String(36), primary_key=True),
        sa.Column("revoked_at", sa.BigInteger, nullable=False),
    )
    op.create_index("revoked_logins_revoked_at", "revoked_logins", ["revoked_at"])
    op.create_table(
        "login_failures",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("lockouts", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("login_failures_updated_at", "login_failures", ["updated_at"])
