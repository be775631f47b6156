"""MQTT credentials: a password hash per meter (and one for the hub), for the brokers.

Revision ID: 0004_auth
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_auth"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "mqtt_credentials",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("issued_at", sa.BigInteger, nullable=False),
    )
