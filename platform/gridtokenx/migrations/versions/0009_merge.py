"""Join the chains that grew side by side from 0007: the statement's trade rates and the
sequencer's (epoch, seq) index.

Revision ID: 0009
Revises: 0008_seq, 0008_statement
"""

revision = "0009"
down_revision = ("0008_seq", "0008_statement")


def upgrade() -> None:
    """Nothing to change: both parents' changes are independent."""


def downgrade() -> None:
    """Nothing to undo."""
