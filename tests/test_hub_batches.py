"""Epoch batches and inclusion proofs, on SQLite and PostgreSQL."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from databases import database
from nacl.signing import SigningKey, VerifyKey

from gridtokenx.hub import batches
from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.rules import MeterStatus, RuleConfig
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire import envelope, merkle
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic

NOW = 1_767_225_600
KEYS = {f"m{k}": SigningKey(bytes([k + 1]) * 32) for k in range(3)}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubStore]:
    with database(request.param, tmp_path) as url:
        engine = connect(url)
        s = HubStore(engine)
        for meter_id, key in KEYS.items():
            s.add_meter(meter_id, bytes(key.verify_key), status=MeterStatus.APPROVED)
        yield s
        engine.dispose()


def feed(store: HubStore, seqs: range, received_at: int) -> None:
    hub = Ingestor(store, RuleConfig(), clock=lambda: received_at)
    messages = []
    for seq in seqs:
        for meter_id, key in KEYS.items():
            r = Reading(meter_id, seq, NOW - 3600 + seq * 60, 100 + seq, 7, 60, 2300, 0, 1000, 5000)
            messages.append(
                (reading_topic(meter_id), envelope.seal(encode(r), READING_DOMAIN, key))
            )
    assert all(d.accepted for d in hub.ingest(messages))


def test_batch_root_ranges_proofs_and_signature(store: HubStore, tmp_path: Path) -> None:
    key = batches.hub_key(tmp_path / "hub.key")
    assert stat.S_IMODE((tmp_path / "hub.key").stat().st_mode) == 0o600
    feed(store, range(1, 5), received_at=NOW)
    built = batches.build(store, "hub-001", 7, cutoff=NOW + 1, key=key)
    assert built is not None and built.header.count == 12
    assert [
        (r.meter_id, r.first_seq, r.last_seq, r.import_first_wh, r.import_last_wh)
        for r in built.header.ranges
    ] == [(m, 1, 4, 101, 104) for m in sorted(KEYS)]
    VerifyKey(bytes(key.verify_key)).verify(
        wire_batch.BATCH_DOMAIN + wire_batch.encode_header(built.header), built.signature
    )
    for meter_id in KEYS:
        for seq in range(1, 5):
            p = batches.proof(store, meter_id, seq)
            assert p is not None and p["root"] == built.header.root.hex()
            assert merkle.verify_inclusion(
                bytes.fromhex(p["signed_bytes"]),  # type: ignore[arg-type]
                p["index"],  # type: ignore[arg-type]
                p["size"],  # type: ignore[arg-type]
                [bytes.fromhex(h) for h in p["path"]],  # type: ignore[union-attr]
                built.header.root,
            )
    assert batches.pending(store) == 1


def test_every_reading_is_batched_exactly_once(store: HubStore, tmp_path: Path) -> None:
    key = batches.hub_key(tmp_path / "hub.key")
    feed(store, range(1, 3), received_at=NOW)
    first = batches.build(store, "hub-001", 1, cutoff=NOW + 1, key=key)
    assert batches.build(store, "hub-001", 1, cutoff=NOW + 1, key=key) is None  # re-run
    feed(store, range(3, 5), received_at=NOW + 900)  # late, after the first batch
    second = batches.build(store, "hub-001", 2, cutoff=NOW + 901, key=key)
    assert first is not None and second is not None
    assert (first.header.count, second.header.count) == (6, 6)
    assert batches.build(store, "hub-001", 3, cutoff=NOW + 2000, key=key) is None  # nothing new
    assert batches.proof(store, "m0", 3)["epoch"] == 2  # type: ignore[index]
    assert batches.proof(store, "m0", 99) is None


def test_hub_key_refuses_loose_permissions(tmp_path: Path) -> None:
    path = tmp_path / "hub.key"
    batches.hub_key(path)
    path.chmod(0o644)
    with pytest.raises(PermissionError):
        batches.hub_key(path)
