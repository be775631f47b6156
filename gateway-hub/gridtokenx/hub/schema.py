"""The hub's tables (SQLAlchemy Core). Migrations in migrations/ create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

meters = Table(
    "meters",
    metadata,
    Column("meter_id", String(64), primary_key=True),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("rated_power_w", Integer, nullable=False),
    Column("household", String(128)),
    Column("registered_at", BigInteger, nullable=False),
)

# Accepted readings, never altered. The primary key makes a redelivery idempotent.
readings = Table(
    "readings",
    metadata,
    Column("meter_id", String(64), ForeignKey("meters.meter_id"), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("ts", BigInteger, nullable=False),
    Column("import_wh", BigInteger, nullable=False),
    Column("export_wh", BigInteger, nullable=False),
    Column("interval_s", BigInteger, nullable=False),
    Column("voltage_dv", Integer, nullable=False),
    Column("current_ma", BigInteger, nullable=False),
    Column("pf_milli", Integer, nullable=False),
    Column("freq_chz", Integer, nullable=False),
    Column("flags", Integer, nullable=False),
    Column("raw", LargeBinary, nullable=False),  # the signed CBOR, byte for byte
    Column("signature", LargeBinary(64), nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Column("batch_id", BigInteger),
)
Index("readings_ts", readings.c.ts)
Index("readings_batch", readings.c.batch_id)

# The newest accepted reading per meter: what the next one is checked against.
heads = Table(
    "heads",
    metadata,
    Column("meter_id", String(64), ForeignKey("meters.meter_id"), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("import_wh", BigInteger, nullable=False),
    Column("export_wh", BigInteger, nullable=False),
    Column("raw", LargeBinary, nullable=False),
)

# Refused messages, the newest store.REJECTIONS_KEPT of them: what was refused and why,
# with the payload's digest, size and first bytes (not the payload: junk must not fill the
# disk). rejection_counts keeps the total per reason.
rejections = Table(
    "rejections",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("meter_id", String(64), nullable=False),
    Column("seq", BigInteger),
    Column("reason", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("payload_head", LargeBinary, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    Column("payload_sha256", LargeBinary(32), nullable=False),
    Column("payload_bytes", BigInteger, nullable=False),
)
Index("rejections_meter", rejections.c.meter_id)

rejection_counts = Table(
    "rejection_counts",
    metadata,
    Column("reason", String(32), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

gaps = Table(
    "gaps",
    metadata,
    Column("meter_id", String(64), ForeignKey("meters.meter_id"), primary_key=True),
    Column("first_seq", BigInteger, primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("found_at", BigInteger, nullable=False),
)

batches = Table(
    "batches",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("epoch", BigInteger, nullable=False, unique=True),
    Column("root", LargeBinary(32), nullable=False),
    Column("count", Integer, nullable=False),
    Column("header", LargeBinary, nullable=False),  # the CBOR batch header
    Column("signature", LargeBinary(64)),  # the hub key's, over BATCH_DOMAIN + header
    Column("created_at", BigInteger, nullable=False),
    # outbox: pending -> submitted (with the ledger's reference) ; attempts survive restarts
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("submitted_ref", String(128)),
    Column("chain_txs", Text),  # JSON list of the ledger's transaction signatures
    Column("last_error", String(200)),
    # readings retention (hub/retention.py): the archive file its pruned readings are in
    Column("archive", String(200)),
    Column("archived_at", BigInteger),
)

# Each meter's sequence range in an archived batch: where a pruned reading's proof is.
archived_ranges = Table(
    "archived_ranges",
    metadata,
    Column("meter_id", String(64), primary_key=True),
    Column("first_seq", BigInteger, primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("batch_id", BigInteger, nullable=False),
)

# Secrets the hub makes for itself on first use, e.g. the key of the household page links.
hub_secrets = Table(
    "hub_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)

# The feeder balance (hub/feeder.py): the grid operator's reference meter and loss model
# (one row), and one balance per batched epoch; a flagged epoch's batch is `held`.
feeder = Table(
    "feeder",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1: one transformer per hub
    Column("meter_id", String(64), ForeignKey("meters.meter_id"), nullable=False),
    Column("ppm_per_kw", Integer, nullable=False),
    Column("fixed_w", Integer, nullable=False),
    Column("tolerance_wh", Integer, nullable=False),
    Column("tolerance_ppm", Integer, nullable=False),
    Column("set_at", BigInteger, nullable=False),
)

balances = Table(
    "balances",
    metadata,
    Column("epoch", BigInteger, primary_key=True),
    Column("batch_id", BigInteger),
    Column("t0", BigInteger, nullable=False),
    Column("t1", BigInteger, nullable=False),
    Column("households_wh", BigInteger, nullable=False),
    Column("gross_wh", BigInteger, nullable=False),
    Column("feeder_wh", BigInteger, nullable=False),
    Column("losses_wh", BigInteger, nullable=False),
    Column("gap_wh", BigInteger, nullable=False),
    Column("tolerance_wh", BigInteger, nullable=False),
    Column("verdict", String(24), nullable=False),
    Column("named", Text, nullable=False),  # JSON list of meter ids, best explanation first
    Column("energies", Text, nullable=False),  # JSON {meter_id: [import_wh, export_wh]}
    Column("registers", Text, nullable=False),  # JSON, each meter's registers at t1
    Column("review", String(16)),  # the operator's: released | rejected
    Column("reviewed_at", BigInteger),
)

# Firmware updates (hub/firmware.py): the update files the operator published (signed with
# the release key, checked before they are stored), and what each meter says it runs.
firmware_images = Table(
    "firmware_images",
    metadata,
    Column("sha256", String(64), primary_key=True),  # of the image, hex
    Column("version", BigInteger, nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("update", LargeBinary, nullable=False),  # the whole signed file, byte for byte
    Column("published_at", BigInteger, nullable=False),
)

meter_images = Table(
    "meter_images",
    metadata,
    Column("meter_id", String(64), ForeignKey("meters.meter_id"), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),  # "" for the image flashed by cable
    Column("status_ts", BigInteger, nullable=False),  # the signed status's own ts
    Column("reported_at", BigInteger, nullable=False),
)
