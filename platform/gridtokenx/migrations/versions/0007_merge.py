"""Join the chains that grew side by side from 0002: the API's auth tables (0003_api) and
the market state in the database (0003-0006).

Revision ID: 0007
Revises: 0006, 0003_api
"""

revision = "0007"
down_revision = ("0006", "0003_api")


def upgrade() -> None:
    """Nothing to change: both parents' tables are independent."""


def downgrade() -> None:
    """Nothing to undo."""
