"""The hub's database adapter: SQLite by default, PostgreSQL with DATABASE_URL.

Everything the ingest decides is written in one transaction per batch of messages, and
only after that commit are the messages acknowledged to the broker (see mqtt.py).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Engine,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from gridtokenx.hub import schema
from gridtokenx.hub.rules import Decision, Meter, MeterStatus, Previous

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DEFAULT_URL = "sqlite:///var/hub.db"
# What the database adapter raises when the database is away or refuses a write: the only
# errors a caller retries a batch for.
# (the hot path writes through the driver, whose own errors are not wrapped by SQLAlchemy).
DATABASE_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, sqlite3.Error, psycopg.Error)
# A rejection keeps the payload's SHA-256, size and first bytes; the newest REJECTIONS_KEPT
# rows are kept (about 2 MB at most), the counts per reason forever.
PAYLOAD_HEAD_BYTES = 64
DETAIL_CHARS = 200
REJECTIONS_KEPT = 10_000
QUARTER_S = 900  # the household page's bars (and TimescaleDB's readings_15m buckets)
READING_COLUMNS = tuple(
    column.name for column in schema.readings.columns if column.name != "batch_id"
)


class RegistrationError(Exception):
    """A meter registration request that cannot be done (with a stable code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def connect(url: str = DEFAULT_URL) -> Engine:
    """An engine with the schema migrated to the newest revision."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def durable(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")  # a commit survives power loss
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return engine


def _meter(row: object) -> Meter:
    return Meter(
        meter_id=row.meter_id,  # type: ignore[attr-defined]
        public_key=bytes(row.public_key),  # type: ignore[attr-defined]
        status=MeterStatus(row.status),  # type: ignore[attr-defined]
        rated_power_w=row.rated_power_w,  # type: ignore[attr-defined]
        household=row.household,  # type: ignore[attr-defined]
    )


@dataclass(frozen=True)
class Received:
    """One message and what the rules decided about it."""

    topic_meter: str
    payload: bytes
    decision: Decision
    received_at: int


class HubStore:
    def __init__(self, engine: Engine, rejections_kept: int = REJECTIONS_KEPT) -> None:
        self.engine = engine
        self.rejections_kept = rejections_kept
        self._timescale: bool | None = None

    # -- meters -------------------------------------------------------------------------

    def add_meter(
        self,
        meter_id: str,
        public_key: bytes,
        rated_power_w: int = 23_000,
        household: str | None = None,
        status: MeterStatus = MeterStatus.PENDING,
    ) -> Meter:
        from gridtokenx.wire.reading import METER_ID

        if not METER_ID.fullmatch(meter_id):
            raise RegistrationError("invalid_meter_id", "meter id: 1-64 of A-Z a-z 0-9 . _ -")
        if len(public_key) != 32:
            raise RegistrationError("invalid_public_key", "an Ed25519 public key has 32 bytes")
        if not 0 < rated_power_w <= 1_000_000:
            raise RegistrationError("invalid_rating", "rated power must be 1 W..1 MW")
        with self.engine.begin() as c:
            if c.execute(
                select(schema.meters.c.meter_id).where(schema.meters.c.meter_id == meter_id)
            ).first():
                raise RegistrationError("meter_exists", f"meter {meter_id!r} is registered")
            c.execute(
                insert(schema.meters).values(
                    meter_id=meter_id,
                    public_key=public_key,
                    status=status.value,
                    rated_power_w=rated_power_w,
                    household=household,
                    registered_at=int(time.time()),
                )
            )
        return Meter(meter_id, public_key, status, rated_power_w, household)

    def set_status(self, meter_id: str, status: MeterStatus) -> None:
        with self.engine.begin() as c:
            done = c.execute(
                update(schema.meters)
                .where(schema.meters.c.meter_id == meter_id)
                .values(status=status.value)
            )
            if done.rowcount == 0:
                raise RegistrationError("unknown_meter", f"no meter {meter_id!r}")

    def link_household(self, meter_id: str, household: str) -> None:
        with self.engine.begin() as c:
            done = c.execute(
                update(schema.meters)
                .where(schema.meters.c.meter_id == meter_id)
                .values(household=household)
            )
            if done.rowcount == 0:
                raise RegistrationError("unknown_meter", f"no meter {meter_id!r}")

    def meters(self) -> list[Meter]:
        with self.engine.connect() as c:
            rows = c.execute(select(schema.meters).order_by(schema.meters.c.meter_id))
            return [_meter(r) for r in rows]

    def meter(self, meter_id: str) -> Meter | None:
        with self.engine.connect() as c:
            row = c.execute(
                select(schema.meters).where(schema.meters.c.meter_id == meter_id)
            ).first()
            return None if row is None else _meter(row)

    # -- readings -----------------------------------------------------------------------

    def heads(self, meter_ids: Iterable[str]) -> dict[str, Previous]:
        ids = list(meter_ids)
        if not ids:
            return {}
        with self.engine.connect() as c:
            rows = c.execute(select(schema.heads).where(schema.heads.c.meter_id.in_(ids)))
            return {
                r.meter_id: Previous(r.seq, r.ts, r.import_wh, r.export_wh, bytes(r.raw))
                for r in rows
            }

    def stored_raw(self, meter_id: str, seq: int) -> bytes | None:
        """The signed CBOR of an accepted reading, if stored (to tell redeliveries apart)."""
        with self.engine.connect() as c:
            row = c.execute(
                select(schema.readings.c.raw).where(
                    schema.readings.c.meter_id == meter_id, schema.readings.c.seq == seq
                )
            ).first()
            return None if row is None else bytes(row.raw)

    def record(self, received: Sequence[Received]) -> None:
        """Write a batch of decisions in one transaction (readings, heads, gaps, rejections)."""
        rows: list[tuple[object, ...]] = []
        rejected, gaps = [], []
        newest: dict[str, Decision] = {}
        for item in received:
            d = item.decision
            if d.accepted and d.reading is not None:
                r = d.reading
                rows.append(
                    (
                        r.meter_id,
                        r.seq,
                        r.ts,
                        r.import_wh,
                        r.export_wh,
                        r.interval_s,
                        r.voltage_dv,
                        r.current_ma,
                        r.pf_milli,
                        r.freq_chz,
                        r.flags,
                        d.raw,
                        d.signature,
                        item.received_at,
                    )
                )
                newest[r.meter_id] = d
                if d.gap is not None:
                    gaps.append(
                        {
                            "meter_id": r.meter_id,
                            "first_seq": d.gap[0],
                            "last_seq": d.gap[1],
                            "found_at": item.received_at,
                        }
                    )
            elif not d.accepted and d.verdict.value == "rejected":
                rejected.append(
                    {
                        "meter_id": item.topic_meter,
                        "seq": d.reading.seq if d.reading is not None else None,
                        "reason": d.reason,
                        "detail": d.detail[:DETAIL_CHARS],
                        "payload_head": item.payload[:PAYLOAD_HEAD_BYTES],
                        "payload_sha256": hashlib.sha256(item.payload).digest(),
                        "payload_bytes": len(item.payload),
                        "received_at": item.received_at,
                    }
                )
        with self.engine.begin() as c:
            if rows:
                self._insert_readings(c, rows)
            if gaps:
                c.execute(insert(schema.gaps), gaps)
            if rejected:
                self._reject(c, rejected)
            if newest:
                self._set_heads(c, newest)

    def _upsert(self, table: Table) -> PgInsert | SqliteInsert:
        """An INSERT that can take ON CONFLICT, in the engine's dialect."""
        if self.engine.dialect.name == "postgresql":
            return pg_insert(table)
        return sqlite_insert(table)

    def _reject(self, c: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Store rejections, count them per reason, and prune all but the newest
        `rejections_kept` (ids grow, so that is one range delete on the primary key)."""
        c.execute(insert(schema.rejections), rows)
        per_reason: dict[str, int] = {}
        for row in rows:
            reason = str(row["reason"])
            per_reason[reason] = per_reason.get(reason, 0) + 1
        statement = self._upsert(schema.rejection_counts)
        c.execute(
            statement.on_conflict_do_update(
                index_elements=[schema.rejection_counts.c.reason],
                set_={"count": schema.rejection_counts.c.count + statement.excluded["count"]},
            ),
            [{"reason": r, "count": n} for r, n in per_reason.items()],
        )
        newest = c.execute(select(func.max(schema.rejections.c.id))).scalar_one()
        if newest is not None and newest > self.rejections_kept:
            c.execute(
                delete(schema.rejections).where(
                    schema.rejections.c.id <= newest - self.rejections_kept
                )
            )

    def _insert_readings(self, c: Connection, rows: list[tuple[object, ...]]) -> None:
        """The hot path of ingest, at the driver: COPY on PostgreSQL, executemany on SQLite
        (SQLAlchemy's per-row parameter processing cost more than the insert itself)."""
        columns = ", ".join(READING_COLUMNS)
        driver: Any = c.connection.driver_connection
        if self.engine.dialect.name == "postgresql":
            with (
                driver.cursor() as cursor,
                cursor.copy(f"COPY readings ({columns}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(READING_COLUMNS))
            driver.executemany(f"INSERT INTO readings ({columns}) VALUES ({marks})", rows)

    def _set_heads(self, c: Connection, newest: dict[str, Decision]) -> None:
        """Upsert each meter's newest reading in one executemany (the same SQL on SQLite and
        PostgreSQL, only the parameter marks differ)."""
        rows = []
        for meter_id, d in newest.items():
            assert d.reading is not None
            r = d.reading
            rows.append((meter_id, r.seq, r.ts, r.import_wh, r.export_wh, d.raw))
        mark = "%s" if self.engine.dialect.name == "postgresql" else "?"
        sql = (
            "INSERT INTO heads (meter_id, seq, ts, import_wh, export_wh, raw) "
            f"VALUES ({', '.join([mark] * 6)}) ON CONFLICT (meter_id) DO UPDATE SET "
            "seq = excluded.seq, ts = excluded.ts, import_wh = excluded.import_wh, "
            "export_wh = excluded.export_wh, raw = excluded.raw"
        )
        driver: Any = c.connection.driver_connection
        if self.engine.dialect.name == "postgresql":
            with driver.cursor() as cursor:
                cursor.executemany(sql, rows)
        else:
            driver.executemany(sql, rows)

    def secret(self, name: str) -> bytes:
        """The hub's secret `name`, 32 random bytes made on first use and kept (the first
        writer wins if two processes race)."""
        with self.engine.begin() as c:
            statement = self._upsert(schema.hub_secrets).values(name=name, value=os.urandom(32))
            c.execute(statement.on_conflict_do_nothing(index_elements=["name"]))
            value = c.execute(
                select(schema.hub_secrets.c.value).where(schema.hub_secrets.c.name == name)
            ).scalar_one()
            return bytes(value)

    def counts(self) -> dict[str, int]:
        """Accepted readings, and rejections by reason (all of them: old rows are pruned,
        the counts are not)."""
        with self.engine.connect() as c:
            out = {
                "accepted": c.execute(
                    select(func.count()).select_from(schema.readings)
                ).scalar_one()
            }
            for reason, n in c.execute(
                select(schema.rejection_counts.c.reason, schema.rejection_counts.c.count)
            ):
                out[reason] = n
            return out

    def readings_of(self, meter_id: str, limit: int = 100) -> list[dict[str, int]]:
        with self.engine.connect() as c:
            rows = c.execute(
                select(schema.readings)
                .where(schema.readings.c.meter_id == meter_id)
                .order_by(schema.readings.c.seq.desc())
                .limit(limit)
            )
            return [
                {k: v for k, v in r._mapping.items() if k not in ("raw", "signature")} for r in rows
            ]

    def timescale(self) -> bool:
        """Whether migration 0007 made readings a TimescaleDB hypertable with the
        `readings_15m` continuous aggregate (checked once)."""
        if self._timescale is None:
            self._timescale = False
            if self.engine.dialect.name == "postgresql":
                with self.engine.connect() as c:
                    found = c.execute(
                        text("SELECT 1 FROM pg_class WHERE relname = 'readings_15m'")
                    ).first()
                    self._timescale = found is not None
        return self._timescale

    def quarter_registers(self, meter_id: str, since: int) -> list[tuple[int, ...]]:
        """(quarter start, first and last import register, first and last export register,
        readings) per 15 minutes from `since`: from the continuous aggregate on
        TimescaleDB, else by GROUP BY (registers never go down: min is the first, max the
        last)."""
        if self.timescale():
            sql = text(
                "SELECT bucket, import_first_wh, import_last_wh, export_first_wh, "
                "export_last_wh, readings FROM readings_15m "
                "WHERE meter_id = :m AND bucket >= :since ORDER BY bucket"
            )
            with self.engine.connect() as c:
                rows = c.execute(sql, {"m": meter_id, "since": since - since % QUARTER_S})
                return [tuple(int(v) for v in row) for row in rows]
        r = schema.readings.c
        bucket = (r.ts - r.ts % QUARTER_S).label("bucket")
        query = (
            select(
                bucket,
                func.min(r.import_wh),
                func.max(r.import_wh),
                func.min(r.export_wh),
                func.max(r.export_wh),
                func.count(),
            )
            .where(r.meter_id == meter_id, r.ts >= since - since % QUARTER_S)
            .group_by(bucket)
            .order_by(bucket)
        )
        with self.engine.connect() as c:
            return [tuple(int(v) for v in row) for row in c.execute(query)]

    def gaps_of(self, meter_id: str) -> list[tuple[int, int]]:
        with self.engine.connect() as c:
            rows = c.execute(
                select(schema.gaps.c.first_seq, schema.gaps.c.last_seq)
                .where(schema.gaps.c.meter_id == meter_id)
                .order_by(schema.gaps.c.first_seq)
            )
            return [(r.first_seq, r.last_seq) for r in rows]

    def rejections_of(self, meter_id: str) -> list[tuple[int | None, str]]:
        with self.engine.connect() as c:
            rows = c.execute(
                select(schema.rejections.c.seq, schema.rejections.c.reason)
                .where(schema.rejections.c.meter_id == meter_id)
                .order_by(schema.rejections.c.id)
            )
            return [(r.seq, r.reason) for r in rows]
