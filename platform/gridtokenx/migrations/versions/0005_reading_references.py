"""Each stored batch reading names its meter (and its registers), indexed, so that a
household's readings are found without decoding every reading ever stored; a wallet's
trades are found by index. Existing rows are filled in from their raw bytes.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

CHUNK = 5_000


def upgrade() -> None:
    from gridtokenx.wire.errors import WireError
    from gridtokenx.wire.reading import decode

    with op.batch_alter_table("ledger_batch_readings") as batch:
        batch.add_column(sa.Column("meter_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("seq", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("import_wh", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("export_wh", sa.BigInteger, nullable=True))
    readings = sa.table(
        "ledger_batch_readings",
        sa.column("hub_id"),
        sa.column("epoch"),
        sa.column("idx"),
        sa.column("raw"),
        sa.column("meter_id"),
        sa.column("seq"),
        sa.column("import_wh"),
        sa.column("export_wh"),
    )
    bind = op.get_bind()
    while True:
        rows = bind.execute(
            sa.select(readings.c.hub_id, readings.c.epoch, readings.c.idx, readings.c.raw)
            .where(readings.c.meter_id.is_(None))
            .limit(CHUNK)
        ).all()
        if not rows:
            break
        for r in rows:
            try:
                reading = decode(bytes(r.raw))
                values = {
                    "meter_id": reading.meter_id,
                    "seq": reading.seq,
                    "import_wh": reading.import_wh,
                    "export_wh": reading.export_wh,
                }
            except WireError:  # stored raw that does not decode: named as such
                values = {"meter_id": "", "seq": 0, "import_wh": 0, "export_wh": 0}
            bind.execute(
                readings.update()
                .where(
                    readings.c.hub_id == r.hub_id,
                    readings.c.epoch == r.epoch,
                    readings.c.idx == r.idx,
                )
                .values(**values)
            )
    op.create_index(
        "ledger_batch_readings_meter", "ledger_batch_readings", ["meter_id", "epoch", "idx"]
    )
    op.create_index("ledger_trades_buyer", "ledger_trades", ["buyer", "epoch"])
    op.create_index("ledger_trades_seller", "ledger_trades", ["seller", "epoch"])
