"""An Idempotency-Key is claimed (status 0) before anything is placed, with the request's
fingerprint, so that concurrent duplicates wait for the first and a different body is refused.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("idempotency") as batch:
        batch.add_column(sa.Column("request_sha256", sa.LargeBinary(32), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.BigInteger, nullable=True))
