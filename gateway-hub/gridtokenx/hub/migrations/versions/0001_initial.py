"""The hub's first schema: meters, readings, heads, rejections, gaps, batches.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

BIGID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "meters",
        sa.Column("meter_id", sa.String(64), primary_key=True),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rated_power_w", sa.Integer, nullable=False),
        sa.Column("household", sa.String(128)),
        sa.Column("registered_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "readings",
        sa.Column("meter_id", sa.String(64), sa.ForeignKey("meters.meter_id"), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("import_wh", sa.BigInteger, nullable=False),
        sa.Column("export_wh", sa.BigInteger, nullable=False),
        sa.Column("interval_s", sa.BigInteger, nullable=False),
        sa.Column("voltage_dv", sa.Integer, nullable=False),
        sa.Column("current_ma", sa.BigInteger, nullable=False),
        sa.Column("pf_milli", sa.Integer, nullable=False),
        sa.Column("freq_chz", sa.Integer, nullable=False),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary(64), nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.Column("batch_id", sa.BigInteger),
    )
    op.create_index("readings_ts", "readings", ["ts"])
    op.create_index("readings_batch", "readings", ["batch_id"])
    op.create_table(
        "heads",
        sa.Column("meter_id", sa.String(64), sa.ForeignKey("meters.meter_id"), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("import_wh", sa.BigInteger, nullable=False),
        sa.Column("export_wh", sa.BigInteger, nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "rejections",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("meter_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
    )
    op.create_index("rejections_meter", "rejections", ["meter_id"])
    op.create_table(
        "gaps",
        sa.Column("meter_id", sa.String(64), sa.ForeignKey("meters.meter_id"), primary_key=True),
        sa.Column("first_seq", sa.BigInteger, primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("found_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "batches",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("epoch", sa.BigInteger, nullable=False, unique=True),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("header", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("submitted_ref", sa.String(128)),
    )
