"""Readings retention: readings of on-chain batches older than N days are archived with their
Merkle proofs and pruned, on the hub and in the platform's books, and `gridtokenx audit`
still traces every mint from the archive; a tampered or missing archive fails the audit.
The whole path is real: hub -> platform over HTTP -> embedded ledger; SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import json
import os
import stat
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from databases import database
from fastapi.testclient import TestClient
from outbox_site import ADMIN, HUB_TOKEN, METERS, NOW, Server, feed
from services import gridtokenx
from solders.keypair import Keypair
from sqlalchemy import func, select

from gridtokenx.adapters import books
from gridtokenx.hub import batches, retention, schema
from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.outbox import Outbox
from gridtokenx.hub.rules import MeterStatus, RuleConfig
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.hub.web import HubContext, household_link
from gridtokenx.hub.web import create_app as hub_app
from gridtokenx.services.site import Platform
from gridtokenx.wire import archive, envelope
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic

DAY = 86_400


@pytest.fixture(params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """A hub and a platform, each on the parametrised database, the hub's meters owned."""
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    with ExitStack() as stack:
        hub_url = stack.enter_context(database(request.param, tmp_path / "hub"))
        books_url = stack.enter_context(database(request.param, tmp_path / "books"))
        if request.param == "sqlite":
            books_url = f"sqlite:///{tmp_path / 'platform' / 'books.db'}"
        (tmp_path / "hub").mkdir(exist_ok=True)
        store = HubStore(connect(hub_url))
        for meter_id, key in METERS.items():
            store.add_meter(meter_id, bytes(key.verify_key), status=MeterStatus.APPROVED)
        hub_key = batches.hub_key(tmp_path / "hub.key")
        platform = Platform(tmp_path / "platform", books_url)
        server = Server(platform)
        stack.callback(server.stop)
        auth = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=server.url, headers=auth) as admin:
            hub = {"hub_id": "hub-001", "public_key": bytes(hub_key.verify_key).hex()}
            assert admin.post("/api/v1/admin/hubs", json=hub | {"token": HUB_TOKEN}).is_success
            for m, key in METERS.items():
                meter = {"meter_id": m, "public_key": bytes(key.verify_key).hex()}
                meter["owner"] = str(Keypair().pubkey())
                assert admin.post("/api/v1/admin/meters", json=meter).is_success
        yield {
            "store": store,
            "key": hub_key,
            "platform": platform,
            "server": server,
            "data": tmp_path / "platform",
            "books_url": books_url,
            "hub_url": hub_url,
        }
        store.engine.dispose()
        platform.books.dispose()


def count(store: HubStore) -> int:
    with store.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(schema.readings)).scalar_one())


def audit(data: Path, books_url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    done = gridtokenx("audit", "--data", str(data), "--database", books_url, *extra)
    return done.returncode, json.loads(done.stdout)


def test_prune_archives_with_proofs_and_audit_still_traces_every_mint(
    site: dict[str, Any], tmp_path: Path
) -> None:
    store, key, server = site["store"], site["key"], site["server"]
    data, books_url = site["data"], site["books_url"]
    feed(store, range(1, 4), NOW)
    batches.build(store, "hub-001", 1, NOW + 1, key)
    assert Outbox(store, key, server.url, HUB_TOKEN).run_once()["submitted"] == 1
    feed(store, range(4, 6), NOW + 900)
    batches.build(store, "hub-001", 2, NOW + 901, key)  # built, not on the chain
    feed(store, range(6, 7), NOW + 1800)  # not batched
    assert count(store) == 18
    before = {seq: batches.proof(store, "m1", seq) for seq in (1, 2, 3)}
    heads = store.heads(METERS)

    # not yet N days old: nothing goes
    hub_archive = tmp_path / "hub-archive"
    done = gridtokenx(
        *("hub", "retention", "--days", "7", "--archive-dir", str(hub_archive)),
        *("--database", site["hub_url"]),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "batches": 0,
        "readings": 0,
        "files": [],
        "archive": str(hub_archive),
    }
    now = int(time.time()) + 8 * DAY
    pruned = retention.prune(store, hub_archive, days=7, now=now)
    assert [(p.epoch, p.readings, p.file) for p in pruned] == [
        (1, 9, "batch-hub-001-000000000001.json.gz")
    ]
    assert count(store) == 9  # epoch 2 (not on the chain) and the unbatched readings stay
    assert retention.prune(store, hub_archive, days=7, now=now) == []  # once only
    path = hub_archive / pruned[0].file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = archive.load(path.read_bytes())
    assert loaded.header.epoch == 1 and loaded.header.count == 9
    with store.engine.connect() as c:
        row = c.execute(select(schema.batches).where(schema.batches.c.epoch == 1)).one()
    assert loaded.chain_txs == tuple(json.loads(row.chain_txs))
    assert row.archive == pruned[0].file and row.archived_at is not None
    # the same bytes as the platform's archive of the same batch (one format, deterministic)
    # and the household's proofs are answered from the archive exactly as before
    assert batches.proof(store, "m1", 2) is None
    for seq, proof in before.items():
        assert retention.archived_proof(store, hub_archive, "m1", seq) == proof
    assert retention.archived_proof(store, hub_archive, "m1", 4) is None  # not archived
    web = TestClient(hub_app(HubContext(store, archive_dir=hub_archive)))
    web.get(household_link(store, "m1"))
    answer = web.get("/api/proof/m1/2")
    assert answer.status_code == 200 and answer.json() == before[2]
    # the rules still hold: heads are kept, an old reading is a replay, a new one goes in
    assert store.heads(METERS) == heads
    hub = Ingestor(store, RuleConfig(), clock=lambda: NOW + 2700)
    old = Reading("m0", 2, NOW - 3600 + 2 * 900, 102, 2_000, 900, 2300, 0, 1000, 5000)
    new = Reading("m0", 7, NOW - 3600 + 7 * 900, 107, 7_000, 900, 2300, 0, 1000, 5000)
    decisions = hub.ingest(
        [
            (reading_topic("m0"), envelope.seal(encode(r), READING_DOMAIN, METERS["m0"]))
            for r in (old, new)
        ]
    )
    assert [(d.accepted, d.reason) for d in decisions] == [(False, "replayed"), (True, "")]

    # the platform's books: the minted batch's readings archived and pruned
    code, report = audit(data, books_url)
    assert code == 0 and report["checked"]["mints"] == 3, report
    made = gridtokenx("retention", "--days", "7", "--data", str(data), "--database", books_url)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout) == {
        "batches": 1,
        "readings": 9,
        "files": ["batch-hub-001-000000000001.json.gz"],
        "archive": str(data / "archive"),
    }
    with site["platform"].books.connect() as c:
        left = c.execute(select(func.count()).select_from(books.batch_readings)).scalar_one()
    assert left == 0
    assert (data / "archive" / pruned[0].file).read_bytes() == path.read_bytes()
    code, report = audit(data, books_url)
    assert code == 0, report
    assert report["checked"]["mints"] == 3 and report["checked"]["archived_batches"] == 1

    # a missing archive, or one changed by a single reading, fails the audit
    code, report = audit(data, books_url, "--archive-dir", str(tmp_path / "none"))
    assert code == 1
    assert report["failures"][0].startswith("batch hub-001/1: archive does not verify")
    document = json.loads(gzip.decompress(path.read_bytes()))
    first = document["readings"][0]
    first["raw"] = first["raw"][:-2] + ("00" if first["raw"][-2:] != "00" else "01")
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / pruned[0].file).write_bytes(gzip.compress(json.dumps(document).encode()))
    with pytest.raises(WireError) as refused:
        archive.load((tampered / pruned[0].file).read_bytes())
    assert refused.value.reason == "bad_archive"
    code, report = audit(data, books_url, "--archive-dir", str(tampered))
    assert code == 1 and "archive does not verify (bad_archive" in report["failures"][0]


def test_archive_refuses_readings_that_are_not_the_batch(tmp_path: Path) -> None:
    from gridtokenx.wire import batch as wire_batch

    key = batches.hub_key(tmp_path / "hub.key")
    meter = METERS["m0"]
    raws = [encode(Reading("m0", s, NOW + s * 900, s, s, 900, 2300, 0, 1000, 5000)) for s in (1, 2)]
    header = wire_batch.encode_header(wire_batch.build("hub-001", 1, raws))
    sig = key.sign(wire_batch.BATCH_DOMAIN + header).signature
    readings = [(raw, meter.sign(READING_DOMAIN + raw).signature) for raw in raws]
    loaded = archive.load(archive.dumps(header, sig, readings, ["tx"]))
    assert loaded.readings == tuple(readings) and loaded.chain_txs == ("tx",)
    with pytest.raises(WireError) as wrong:
        archive.dumps(header, sig, readings[:1], [])
    assert wrong.value.reason == "bad_archive"
    for junk in (b"", b"not gzip", gzip.compress(b"[]"), gzip.compress(b'{"format": "x"}')):
        with pytest.raises(WireError) as bad:
            archive.load(junk)
        assert bad.value.reason == "bad_archive"
