"""The household page's 15-minute bars from the database: by GROUP BY on SQLite and plain
PostgreSQL, from the `readings_15m` continuous aggregate on TimescaleDB, and in every case
exactly what the page computed before from the readings themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from databases import database
from nacl.signing import SigningKey
from sqlalchemy import text

from gridtokenx.hub import views
from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.rules import MeterStatus, RuleConfig
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic

DAY_START = 1_767_200_400  # a local midnight (UTC+7), a multiple of 900
KEY = SigningKey(b"\x07" * 32)
# irregular timestamps around midnight: one quarter with one reading, one with none
TIMES = [-1500, -800, -100, 50, 400, 1000, 1700, 1750, 3700, 3900, 4400]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubStore]:
    with database(request.param, tmp_path) as url:
        engine = connect(url)
        s = HubStore(engine)
        s.add_meter("m1", bytes(KEY.verify_key), status=MeterStatus.APPROVED)
        yield s
        engine.dispose()


def fill(store: HubStore) -> list[dict[str, int]]:
    rows = []
    messages = []
    for seq, dt in enumerate(TIMES, start=1):
        ts = DAY_START + dt
        r = Reading("m1", seq, ts, 1_000 + seq * seq * 7, 500 + seq * 3, 10, 2300, 0, 1000, 5000)
        rows.append({"ts": ts, "import_wh": r.import_wh, "export_wh": r.export_wh})
        messages.append((reading_topic("m1"), envelope.seal(encode(r), READING_DOMAIN, KEY)))
    hub = Ingestor(store, RuleConfig(min_interval_s=10), clock=lambda: DAY_START + 5000)
    assert all(d.accepted for d in hub.ingest(messages))
    return rows


def test_quarters_from_the_database_equal_the_pages_own(store: HubStore) -> None:
    rows = fill(store)
    since = DAY_START - 900
    expected = views.quarters([r for r in rows if r["ts"] >= since], DAY_START)
    got = views.quarters_of_buckets(store.quarter_registers("m1", since), DAY_START)
    assert got == expected
    # import = 1000 + 7 seq^2, export = 500 + 3 seq; the quarter before midnight is only the
    # first delta's base, the empty quarters have no bar
    assert [(q.start - DAY_START, q.import_wh, q.export_wh) for q in got] == [
        (0, 112, 6),
        (900, 273, 9),
        (3_600, 399, 9),
    ]
    assert store.timescale() == (timescale_missing(store) is None)


def timescale_missing(store: HubStore) -> str | None:
    if store.engine.dialect.name != "postgresql":
        return "SQLite has no TimescaleDB"
    with store.engine.connect() as c:
        if c.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).first():
            return None
        version = c.execute(text("SHOW server_version")).scalar()
        packaged = c.execute(
            text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        ).first()
    why = "not loaded (shared_preload_libraries)" if packaged else "not installed"
    return (
        f"TimescaleDB is {why} in this PostgreSQL {version}: migration 0007_ops_timescale "
        "(hypertable on ts, compression after 7 days, the readings_15m continuous "
        "aggregate) was NOT run here; only the GROUP BY path the page takes without it "
        "was tested"
    )


def test_timescale_hypertable_compression_and_aggregate(store: HubStore) -> None:
    reason = timescale_missing(store)
    if reason is not None:
        pytest.skip(reason)
    assert store.timescale()
    with store.engine.connect() as c:
        hyper = c.execute(
            text(
                "SELECT compression_enabled FROM timescaledb_information.hypertables "
                "WHERE hypertable_name = 'readings'"
            )
        ).scalar_one()
        assert hyper is True
        aggregate = c.execute(
            text(
                "SELECT materialized_only FROM timescaledb_information.continuous_aggregates "
                "WHERE view_name = 'readings_15m'"
            )
        ).scalar_one()
        assert aggregate is False  # the page sees readings not materialised yet
    rows = fill(store)
    since = DAY_START - 900
    expected = views.quarters([r for r in rows if r["ts"] >= since], DAY_START)
    assert views.quarters_of_buckets(store.quarter_registers("m1", since), DAY_START) == expected
