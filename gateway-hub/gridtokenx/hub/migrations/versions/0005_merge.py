"""Join the chains that grew side by side from 0003: bounded rejections, broker credentials
and the feeder balance.

Revision ID: 0005
Revises: 0004, 0004_auth, 0004_feeder
"""

revision = "0005"
down_revision = ("0004", "0004_auth", "0004_feeder")


def upgrade() -> None:
    """Nothing to change: both parents' tables are independent."""


def downgrade() -> None:
    """Nothing to undo."""
