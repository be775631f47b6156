"""Firmware updates: published images and the image each meter reports running.

Revision ID: 0006_ota
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_ota"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "firmware_images",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False, unique=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("update", sa.LargeBinary, nullable=False),
        sa.Column("published_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "meter_images",
        sa.Column("meter_id", sa.String(64), sa.ForeignKey("meters.meter_id"), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("status_ts", sa.BigInteger, nullable=False),
        sa.Column("reported_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("meter_images")
    op.drop_table("firmware_images")
