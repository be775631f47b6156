"""Join the chains that grew side by side from 0005: firmware images (OTA) and retention with
the optional TimescaleDB layout.

Revision ID: 0008
Revises: 0006_ota, 0007_ops_timescale
"""

revision = "0008"
down_revision = ("0006_ota", "0007_ops_timescale")


def upgrade() -> None:
    """Nothing to change: both parents' tables are independent."""


def downgrade() -> None:
    """Nothing to undo."""
