"""Backups: the platform (keystore, deployment, chain log, books) taken while orders are
being placed, restored on a fresh directory and database, and `gridtokenx audit` of the
restore reconciling; the hub (database, key); refusals that change nothing. On SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from databases import database
from ledger_fixtures import evidence, make_chain, reading, signed
from nacl.signing import SigningKey
from services import gridtokenx
from sqlalchemy import Engine, select

from gridtokenx import backup
from gridtokenx.adapters import books
from gridtokenx.hub import backup as hub_backup
from gridtokenx.hub import schema as hub_schema
from gridtokenx.hub.rules import MeterStatus
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.keynames import user_key
from gridtokenx.ledger.oracle import Marks, mint_batch, reviewing_signer
from gridtokenx.market.config import MarketConfig
from gridtokenx.market.engine import Market
from gridtokenx.market.errors import MarketError
from gridtokenx.market.orders import Order, Side
from gridtokenx.services.exchange import Exchange
from gridtokenx.wire import batch as wire_batch

SECRET = os.urandom(32)


@pytest.fixture(autouse=True)
def keystore_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", SECRET.hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(the live books' URL, a fresh database to restore into)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'live' / 'books.db'}", f"sqlite:///{tmp_path / 'new.db'}"
        return
    with ExitStack() as stack:
        live = stack.enter_context(database("postgresql", tmp_path / "a"))
        fresh = stack.enter_context(database("postgresql", tmp_path / "b"))
        yield live, fresh


def platform_with_history(data: Path, url: str) -> tuple[Exchange, Engine]:
    """A meter's export minted from a hub batch, orders escrowed, an epoch settled."""
    chain = make_chain(data, SECRET)
    dep = chain.dep
    engine = books.connect(url)
    wallets = {name: chain.keys.ensure(user_key(name)) for name in ("sun", "moon")}
    for key in wallets.values():
        dep.open_wallet(key.pubkey())
        dep.top_up(key.pubkey(), 50_000_000, f"deposit-{key.pubkey()}")
    meter_key = SigningKey.generate()
    readings = [signed(meter_key, reading("m-sun", s, 10, 1_000 * s)) for s in (1, 2, 3)]
    ev = evidence(chain, 1, readings)
    owners = {"m-sun": wallets["sun"].pubkey()}
    meter_row = {
        "meter_id": "m-sun",
        "public_key": bytes(meter_key.verify_key),
        "owner": str(owners["m-sun"]),
    }
    books.add_rows(engine, books.meters, [meter_row])
    header = wire_batch.encode_header(ev.header)
    batch = {"hub_id": "hub-1", "epoch": 1, "root": ev.header.root, "header": header}
    batch |= {"hub_signature": ev.hub_signature, "hub_key": bytes(chain.hub_signing.verify_key)}
    books.add_rows(engine, books.batches, [batch])
    books.add_rows(
        engine,
        books.batch_readings,
        [
            {"hub_id": "hub-1", "epoch": 1, "idx": k, "raw": raw, "signature": sig}
            for k, (raw, sig) in enumerate(ev.readings)
        ],
    )
    signers = [chain.hub, dep.oracle("oracle/platform"), dep.oracle("oracle/grid-operator")]
    mint_batch(
        dep.ledger,
        dep.grx,
        dep.oracle_multisig,
        ev,
        owners,
        Marks("gtx1 mint"),
        {k.pubkey(): reviewing_signer(k, lambda: None) for k in signers},
    )
    exchange = Exchange(dep, engine, Market(MarketConfig()), wallets)
    exchange.place(Order("s1", "sun", Side.SELL, 1_500, 3_000_000))
    exchange.place(Order("b1", "moon", Side.BUY, 1_000, 4_000_000))
    exchange.clear()
    return exchange, engine


def test_platform_backup_while_trading_restores_and_audits_clean(
    tmp_path: Path, urls: tuple[str, str]
) -> None:
    live_url, fresh_url = urls
    live = tmp_path / "live"
    exchange, engine = platform_with_history(live, live_url)
    # orders keep being placed and cancelled while the backup is taken
    stop, placed = threading.Event(), [0]

    def trade() -> None:
        while not stop.is_set():
            order_id = f"b-{placed[0]}"
            try:
                exchange.place(Order(order_id, "moon", Side.BUY, 10, 2_000_000))
                exchange.cancel(order_id, "moon")
            except MarketError:
                pass
            placed[0] += 1

    worker = threading.Thread(target=trade)
    worker.start()
    try:
        while placed[0] < 3:
            stop.wait(0.05)
        made = gridtokenx(
            "backup", "create", str(tmp_path / "bk"), "--data", str(live), "--database", live_url
        )
    finally:
        stop.set()
        worker.join()
    assert made.returncode == 0, made.stdout + made.stderr
    summary = json.loads(made.stdout)
    assert sorted(summary["files"]) == sorted(
        [
            "books.db" if live_url.startswith("sqlite") else "books.dump",
            "keys.json",
            "deployment.json",
            "chain/chain.log",
        ]
    )
    assert summary["checked"]["mints"] == 1 and summary["checked"]["settlements"] >= 1
    assert placed[0] > 3  # the backup ran while orders were being placed
    bk = tmp_path / "bk"
    assert bk.stat().st_mode & 0o777 == 0o700
    for path in bk.rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path

    # restore into a fresh directory and a fresh database; the audit reconciles
    restored = tmp_path / "restored"
    done = gridtokenx(
        "backup", "restore", str(bk), "--data", str(restored), "--database", fresh_url
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (restored / "keys.json").stat().st_mode & 0o777 == 0o600
    audit = gridtokenx("audit", "--data", str(restored), "--database", fresh_url)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    report = json.loads(audit.stdout)
    assert report["ok"] is True and report["checked"]["mints"] == 1
    assert report["checked"]["settlements"] == summary["checked"]["settlements"]
    # the restored books hold the live history up to the backup
    again = books.connect(fresh_url)
    assert [t["buy_id"] for t in books.rows(again, books.trades)] == ["b1"]
    assert {m["meter_id"] for m in books.rows(again, books.meters)} == {"m-sun"}
    again.dispose()

    # a second restore over it is refused and changes nothing
    before = (restored / "chain" / "chain.log").read_bytes()
    refused = gridtokenx(
        "backup", "restore", str(bk), "--data", str(restored), "--database", fresh_url
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: not_fresh: ")
    assert (restored / "chain" / "chain.log").read_bytes() == before
    engine.dispose()


def test_a_corrupt_or_foreign_backup_is_refused(tmp_path: Path) -> None:
    live = tmp_path / "live"
    _exchange, engine = platform_with_history(live, f"sqlite:///{live / 'books.db'}")
    bk = tmp_path / "bk"
    manifest = backup.create(live, bk)
    assert manifest["attempts"] == 1 and manifest["database_file"] == "books.db"
    with pytest.raises(backup.BackupError) as err:
        backup.create(live, bk)
    assert err.value.code == "not_fresh"
    log = bk / "chain" / "chain.log"
    log.write_bytes(log.read_bytes()[:-1])
    with pytest.raises(backup.BackupError) as err:
        backup.restore(bk, tmp_path / "r")
    assert (err.value.code, err.value.message) == (
        "corrupt_backup",
        "chain/chain.log is missing or differs from the manifest",
    )
    assert not (tmp_path / "r" / "books.db").exists()
    with pytest.raises(backup.BackupError) as err:
        backup.restore(tmp_path, tmp_path / "r")
    assert err.value.code == "no_backup"
    engine.dispose()


def test_only_whole_chain_records_are_copied() -> None:
    def record(body: bytes) -> bytes:
        import zlib

        return backup.RECORD.pack(len(body), zlib.crc32(body)) + body

    one, two = record(b"first transaction"), record(b"second")
    assert backup.whole_records(one + two) == one + two
    assert backup.whole_records(one + two[:-1]) == one  # a writer midway through `two`
    assert backup.whole_records(one + two[:5]) == one
    flipped = two[:-1] + bytes([two[-1] ^ 1])
    assert backup.whole_records(one + flipped) == one


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_hub_backup_restores_its_database_and_key(tmp_path: Path, kind: str) -> None:
    with ExitStack() as stack:
        if kind == "sqlite":
            live_url, fresh_url = (
                f"sqlite:///{tmp_path / 'hub.db'}",
                f"sqlite:///{tmp_path / 'new.db'}",
            )
        else:
            live_url = stack.enter_context(database("postgresql", tmp_path / "a"))
            fresh_url = stack.enter_context(database("postgresql", tmp_path / "b"))
        store = HubStore(connect(live_url))
        store.add_meter("m-1", b"\x01" * 32, household="bus 3", status=MeterStatus.APPROVED)
        store.add_meter("m-2", b"\x02" * 32)
        key = tmp_path / "hub.key"
        key.write_bytes(b"k" * 32)
        key.chmod(0o600)
        bk = tmp_path / "hub-backup"
        made = gridtokenx(
            "hub", "backup", "create", str(bk), "--database", live_url, "--key-file", str(key)
        )
        assert made.returncode == 0, made.stderr
        new_key = tmp_path / "restored" / "hub.key"
        done = gridtokenx(
            "hub", "backup", "restore", str(bk), "--database", fresh_url, "--key-file", str(new_key)
        )
        assert done.returncode == 0, done.stderr
        assert new_key.read_bytes() == b"k" * 32 and new_key.stat().st_mode & 0o777 == 0o600
        restored = connect(fresh_url)

        def meters(engine: Engine) -> list[Any]:
            with engine.connect() as c:
                query = select(hub_schema.meters).order_by(hub_schema.meters.c.meter_id)
                return [tuple(row) for row in c.execute(query)]

        assert meters(restored) == meters(store.engine)
        assert [m[0] for m in meters(restored)] == ["m-1", "m-2"]
        # a restore onto existing data is refused
        again = gridtokenx(
            "hub",
            "backup",
            "restore",
            str(bk),
            "--database",
            fresh_url,
            "--key-file",
            str(tmp_path / "k2"),
        )
        assert again.returncode == 2 and "not_fresh" in again.stderr
        assert not (tmp_path / "k2").exists()
        with pytest.raises(hub_backup.BackupError) as err:
            hub_backup.create(tmp_path / "other", live_url, tmp_path / "missing.key")
        assert err.value.code == "no_key"
        restored.dispose()
        store.engine.dispose()


def test_the_postgresql_check_reads_the_exported_snapshot(tmp_path: Path) -> None:
    """What the audit of a PostgreSQL backup reads is what pg_dump dumps: the snapshot, not
    rows committed after it."""
    from sqlalchemy import create_engine, text

    from gridtokenx.backup import books_snapshot

    with database("postgresql", tmp_path) as url:
        live = create_engine(url)
        with live.begin() as c:
            c.execute(text("CREATE TABLE t (x int)"))
            c.execute(text("INSERT INTO t VALUES (1)"))
        with books_snapshot(url, tmp_path) as (reader, snapshot, name):
            with live.begin() as c:
                c.execute(text("INSERT INTO t VALUES (2)"))
            for _ in range(2):  # every transaction of the reader, not only the first
                with reader.connect() as c:
                    assert c.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
            assert snapshot and name == "books.dump"
            hub_backup.dump_database(url, tmp_path, "books", snapshot)
        with live.connect() as c:
            assert c.execute(text("SELECT count(*) FROM t")).scalar_one() == 2
        live.dispose()
        restored = tmp_path / "r"
        with database("postgresql", restored) as fresh:
            hub_backup.restore_database(fresh, tmp_path, "books.dump")
            engine = create_engine(fresh)
            with engine.connect() as c:
                assert c.execute(text("SELECT x FROM t")).scalars().all() == [1]
            engine.dispose()
