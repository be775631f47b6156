"""TimescaleDB, when the server has the extension (the compose image has it): readings as
a hypertable on `ts`, compressed after 7 days, and `readings_15m`, the continuous aggregate
of 15-minute register buckets the household page reads. Without the extension (SQLite, or
a plain PostgreSQL) nothing changes and the page computes the same buckets with GROUP BY.

A hypertable's unique keys must hold its time column, so the primary key becomes
(meter_id, seq, ts): a redelivery is the same (meter_id, seq, ts) and still collides.
Needs TimescaleDB >= 2.11 (deletes and updates on compressed chunks, for batching a late
backlog and readings retention). Tested only where the extension exists; see
docs/operations.md for what was and was not run.

Revision ID: 0007_ops_timescale
Revises: 0006_ops
"""

from alembic import op
from sqlalchemy import text

revision = "0007_ops_timescale"
down_revision = "0006_ops"

WEEK_S = 7 * 86_400
STEPS = (
    "CREATE EXTENSION IF NOT EXISTS timescaledb",
    "ALTER TABLE readings DROP CONSTRAINT readings_pkey",
    "ALTER TABLE readings ADD PRIMARY KEY (meter_id, seq, ts)",
    f"SELECT create_hypertable('readings', 'ts', chunk_time_interval => {WEEK_S}::bigint,"
    " migrate_data => true)",
    "CREATE OR REPLACE FUNCTION gtx_unix_now() RETURNS BIGINT LANGUAGE SQL STABLE AS"
    " $$ SELECT extract(epoch FROM now())::bigint $$",
    "SELECT set_integer_now_func('readings', 'gtx_unix_now')",
    "ALTER TABLE readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'meter_id',"
    " timescaledb.compress_orderby = 'seq')",
    f"SELECT add_compression_policy('readings', compress_after => {WEEK_S}::bigint)",
    "CREATE MATERIALIZED VIEW readings_15m"
    " WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS"
    " SELECT meter_id, time_bucket(900::bigint, ts) AS bucket,"
    " min(import_wh) AS import_first_wh, max(import_wh) AS import_last_wh,"
    " min(export_wh) AS export_first_wh, max(export_wh) AS export_last_wh,"
    " count(*) AS readings"
    " FROM readings GROUP BY meter_id, time_bucket(900::bigint, ts) WITH NO DATA",
    "SELECT add_continuous_aggregate_policy('readings_15m', start_offset => 259200::bigint,"
    " end_offset => 900::bigint, schedule_interval => INTERVAL '15 minutes')",
)


def available() -> bool:
    """The extension is installed and loaded (CREATE EXTENSION fails otherwise)."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    found = bind.execute(
        text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    ).first()
    preloaded = bind.execute(text("SELECT current_setting('shared_preload_libraries')")).scalar()
    return found is not None and "timescaledb" in str(preloaded)


def upgrade() -> None:
    if not available():
        return
    for step in STEPS:
        op.execute(step)


def downgrade() -> None:
    """The aggregate goes; the hypertable stays one (TimescaleDB cannot turn it back)."""
    if available():
        op.execute("DROP MATERIALIZED VIEW IF EXISTS readings_15m")
