"""Rejections are kept bounded: the payload's digest, size and first bytes, not the payload;
a counter per reason that survives the pruning of old rejection rows. And the hub's own
secrets (the key of the household page links).

Revision ID: 0004
Revises: 0003
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

HEAD_BYTES = 64  # gridtokenx.hub.store.PAYLOAD_HEAD_BYTES when this revision was written


def upgrade() -> None:
    op.create_table(
        "hub_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "rejection_counts",
        sa.Column("reason", sa.String(32), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("rejections") as batch:
        batch.add_column(sa.Column("payload_sha256", sa.LargeBinary(32)))
        batch.add_column(sa.Column("payload_bytes", sa.BigInteger))
    connection = op.get_bind()
    connection.execute(
        sa.text(
            "INSERT INTO rejection_counts (reason, count) "
            "SELECT reason, count(*) FROM rejections GROUP BY reason"
        )
    )
    rows = connection.execute(sa.text("SELECT id, payload FROM rejections")).fetchall()
    for row_id, payload in rows:
        data = bytes(payload)
        connection.execute(
            sa.text(
                "UPDATE rejections SET payload = :head, payload_sha256 = :digest, "
                "payload_bytes = :size WHERE id = :id"
            ),
            {
                "head": data[:HEAD_BYTES],
                "digest": hashlib.sha256(data).digest(),
                "size": len(data),
                "id": row_id,
            },
        )
    with op.batch_alter_table("rejections") as batch:
        batch.alter_column("payload", new_column_name="payload_head")
        batch.alter_column("payload_sha256", nullable=False)
        batch.alter_column("payload_bytes", nullable=False)
