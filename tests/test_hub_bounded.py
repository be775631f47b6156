"""Bounded ingest (issue 13, items 1 and 2): the attacks that stalled or filled the hub.

The shared-reference bomb, bignum registers signed with the meter's own key, an internal
error on one message, 50 x 1 MiB of junk, the rejection cap, and fuzzing of every input
path (arbitrary bytes, mutations of valid readings). On SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cbor2
import pytest
from alembic import command
from alembic.config import Config
from databases import database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from sqlalchemy import create_engine, func, select, text

from gridtokenx.hub import schema
from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.rules import REASONS, Meter, MeterStatus, RuleConfig, Verdict, check
from gridtokenx.hub.store import MIGRATIONS, PAYLOAD_HEAD_BYTES, HubStore, connect
from gridtokenx.wire import cbor, envelope
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import KEYS, READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic

NOW = 1_767_225_600
KEY = SigningKey(bytes(range(32)))
METER = Meter("m1", bytes(KEY.verify_key), MeterStatus.APPROVED, 5_000)


def reading(seq: int = 1, ts: int = NOW - 600, imp: int = 1_000, **kw: int) -> Reading:
    return Reading("m1", seq, ts, imp, 0, 60, 2300, 1000, 1000, 5000, **kw)


def sealed(r: Reading) -> bytes:
    return envelope.seal(encode(r), READING_DOMAIN, KEY)


def signed_map(fields: dict[int, object]) -> bytes:
    """A reading map encoded by plain cbor2 (bignums become tags 2/3), signed with the
    meter's own key: what a meter with a stolen or buggy firmware could send."""
    raw = cbor2.dumps(fields, canonical=True)
    return cbor2.dumps([raw, KEY.sign(READING_DOMAIN + raw).signature], canonical=True)


def reading_fields(r: Reading) -> dict[int, object]:
    item: dict[int, object] = {0: 1}
    item.update({key: getattr(r, name) for name, key in KEYS.items()})
    return item


def shared_reference_bomb(depth: int = 25) -> bytes:
    """s_k = 28([s_(k-1), 29(s_(k-1))]): decodes in microseconds to a value whose encoding
    (what the old canonical check built) has 2^(depth+2) bytes. 156 bytes at depth 25."""

    def level(k: int) -> bytes:
        if k == 0:
            return b"\xd8\x1c\x41a"
        return b"\xd8\x1c\x82" + level(k - 1) + b"\xd8\x1d" + cbor2.dumps(depth - k + 1)

    return level(depth)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as found:
        yield found


@pytest.fixture
def store(url: str) -> Iterator[HubStore]:
    engine = connect(url)
    s = HubStore(engine)
    s.add_meter("m1", bytes(KEY.verify_key), rated_power_w=5_000, status=MeterStatus.APPROVED)
    yield s
    engine.dispose()


def decide(store: HubStore, *payloads: bytes, topic: str = reading_topic("m1")) -> list[str]:
    hub = Ingestor(store, RuleConfig(), clock=lambda: NOW)
    return [d.reason or d.verdict.value for d in hub.ingest([(topic, p) for p in payloads])]


# -- item 1: bounded decoding -----------------------------------------------------------


def test_the_shared_reference_bomb_is_refused_by_the_scan_and_the_batch_goes_on(
    store: HubStore,
) -> None:
    bomb = shared_reference_bomb()
    assert len(bomb) == 156
    assert isinstance(cbor2.loads(bomb), list)  # cbor2 alone takes it (and would expand it)
    with pytest.raises(WireError) as err:
        cbor.loads(bomb)
    assert (err.value.reason, err.value.message) == (
        "malformed_cbor",
        "CBOR tag 28 is not part of the format",
    )
    # sent with no key to an approved meter's topic, between two good readings
    assert decide(store, sealed(reading(1)), bomb, sealed(reading(2, NOW - 540, 1_050))) == [
        "accepted",
        "malformed_cbor",
        "accepted",
    ]
    assert [r["seq"] for r in store.readings_of("m1")] == [2, 1]


def test_a_5001_digit_register_signed_with_the_meter_key_is_too_large(store: HubStore) -> None:
    fields = reading_fields(reading(2, NOW - 540))
    fields[4] = 10**5000  # 5,001 digits: more than int() may format
    payload = signed_map(fields)
    assert len(payload) > envelope.MAX_MESSAGE_BYTES
    assert decide(store, sealed(reading(1)), payload, sealed(reading(3, NOW - 480, 1_050))) == [
        "accepted",
        "too_large",
        "accepted",
    ]
    assert store.counts() == {"accepted": 2, "too_large": 1}


@pytest.mark.parametrize(
    "value,detail",
    [
        (1 << 64, "CBOR tag 2 is not part of the format"),  # a bignum that fits the size
        (-(1 << 64) - 1, "CBOR tag 3 is not part of the format"),
        (1 << 63, "import_wh=9223372036854775808 outside 0..9223372036854775807"),
        (1.5, "floats and simple values are not part of the format"),
    ],
)
def test_register_values_outside_the_format_are_refused_with_their_reason(
    value: object, detail: str
) -> None:
    fields = reading_fields(reading(1))
    fields[4] = value
    d = check("m1", signed_map(fields), METER, None, NOW, RuleConfig())
    assert d.verdict is Verdict.REJECTED and d.detail == detail
    assert d.reason == ("invalid_field" if value == 1 << 63 else "malformed_cbor")


def test_an_unexpected_error_on_one_message_is_an_internal_error_logged_and_counted(
    store: HubStore, caplog: pytest.LogCaptureFixture
) -> None:
    # A real bug, not a stub: a bound set to None makes the register check raise TypeError
    # (follow runs it only for readings whose clock is set).
    broken = RuleConfig(max_register_wh=None)  # type: ignore[arg-type]
    hub = Ingestor(store, broken, clock=lambda: NOW)
    topic = reading_topic("m1")
    with caplog.at_level(logging.ERROR, logger="gridtokenx.hub.ingest"):
        decisions = hub.ingest(
            [(topic, sealed(reading(1, flags=1))), (topic, sealed(reading(2))), (topic, b"\x01")]
        )
    assert [(d.reason, d.detail) for d in decisions] == [
        ("time_not_set", "the meter's clock was not set"),
        ("internal_error", "TypeError"),
        ("malformed_envelope", "an envelope is a CBOR array [bstr, bstr]"),
    ]
    assert hub.counters.rejected == {
        "time_not_set": 1,
        "internal_error": 1,
        "malformed_envelope": 1,
    }
    assert store.counts() == {
        "accepted": 0,
        "time_not_set": 1,
        "internal_error": 1,
        "malformed_envelope": 1,
    }
    assert any(r.exc_info and r.exc_info[0] is TypeError for r in caplog.records)


def test_on_stored_gets_the_highest_settled_seq_per_meter_after_each_commit(
    store: HubStore,
) -> None:
    store.add_meter("m2", bytes(KEY.verify_key), status=MeterStatus.APPROVED)
    calls: list[dict[str, int]] = []
    hub = Ingestor(store, RuleConfig(), clock=lambda: NOW, on_stored=calls.append)
    m1, m2 = reading_topic("m1"), reading_topic("m2")
    one, two = sealed(reading(1)), sealed(reading(2, NOW - 540, 1_050))
    other = envelope.seal(encode(replace(reading(7), meter_id="m2")), READING_DOMAIN, KEY)
    hub.ingest([(m1, one), (m1, two), (m2, other), (m1, b"junk")])
    assert calls == [{"m1": 2, "m2": 7}]
    hub.ingest([(m1, one)])  # a re-sent older reading: stored already, so settled
    assert calls[-1] == {"m1": 1}
    hub.ingest([(m1, b"junk"), (m1, sealed(reading(1, NOW - 500, 1_001)))])  # a replay
    assert calls[-1] == {"m1": 1}  # refused by a rule the same bytes never pass: settled
    hub.ingest([(m1, b"junk")])
    assert len(calls) == 3  # nothing signed by the meter, nothing to acknowledge


# -- item 2: rejections kept bounded ----------------------------------------------------


def _size(store: HubStore, url: str) -> int:
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    with store.engine.connect() as c:
        return int(c.execute(text("SELECT pg_total_relation_size('rejections')")).scalar_one())


def test_fifty_one_mib_junk_messages_do_not_grow_the_database(store: HubStore, url: str) -> None:
    before = _size(store, url)
    junk = [bytes([k]) * (1 << 20) for k in range(50)]
    hub = Ingestor(store, RuleConfig(), clock=lambda: NOW)
    for k in range(0, 50, 10):  # from an anonymous client, to a meter's and a made-up topic
        hub.ingest([(reading_topic("m1" if k % 20 else "nobody"), j) for j in junk[k : k + 10]])
    grown = _size(store, url) - before
    assert grown < 256 * 1024, grown
    assert store.counts() == {"accepted": 0, "too_large": 50}
    with store.engine.connect() as c:
        rows = c.execute(select(schema.rejections).order_by(schema.rejections.c.id)).all()
    assert [bytes(r.payload_head) for r in rows] == [j[:PAYLOAD_HEAD_BYTES] for j in junk]
    assert [bytes(r.payload_sha256) for r in rows] == [hashlib.sha256(j).digest() for j in junk]
    assert {r.payload_bytes for r in rows} == {1 << 20}


def test_only_the_newest_rejections_are_kept_but_all_are_counted(url: str) -> None:
    engine = connect(url)
    store = HubStore(engine, rejections_kept=5)
    hub = Ingestor(store, RuleConfig(), clock=lambda: NOW)
    for k in range(4):
        hub.ingest([(reading_topic("nobody"), bytes([k, n])) for n in range(3)])
    with engine.connect() as c:
        kept = c.execute(
            select(schema.rejections.c.payload_head).order_by(schema.rejections.c.id)
        ).all()
        assert c.execute(select(func.count()).select_from(schema.rejections)).scalar_one() == 5
    assert [bytes(r.payload_head) for r in kept] == [
        bytes([2, 1]),
        bytes([2, 2]),
        bytes([3, 0]),
        bytes([3, 1]),
        bytes([3, 2]),
    ]
    assert store.counts() == {"accepted": 0, "unknown_meter": 12}
    engine.dispose()


def test_migration_0004_shrinks_stored_payloads_and_keeps_their_counts(url: str) -> None:
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as c:
        config.attributes["connection"] = c
        command.upgrade(config, "0003")
    big = b"\xab" * 100_000
    with engine.begin() as c:
        for reason, payload in (
            ("unknown_meter", big),
            ("bad_signature", b"x"),
            ("unknown_meter", b""),
        ):
            c.execute(
                text(
                    "INSERT INTO rejections (meter_id, seq, reason, detail, payload, received_at)"
                    " VALUES ('m1', NULL, :reason, '', :payload, 1)"
                ),
                {"reason": reason, "payload": payload},
            )
    engine.dispose()
    store = HubStore(connect(url))
    assert store.counts() == {"accepted": 0, "unknown_meter": 2, "bad_signature": 1}
    with store.engine.connect() as c:
        rows = c.execute(select(schema.rejections).order_by(schema.rejections.c.id)).all()
    assert [(bytes(r.payload_head), r.payload_bytes) for r in rows] == [
        (big[:64], 100_000),
        (b"x", 1),
        (b"", 0),
    ]
    assert bytes(rows[0].payload_sha256) == hashlib.sha256(big).digest()
    store.engine.dispose()


# -- fuzzing: every input gets a decision, nothing escapes ------------------------------


def _decision_of(payload: bytes) -> str:
    d = check("m1", payload, METER, None, NOW, RuleConfig())
    assert d.verdict is Verdict.ACCEPTED or d.reason in REASONS, d
    return d.reason or d.verdict.value


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes_get_a_decision(data: bytes) -> None:
    assert _decision_of(data) != "accepted"
    try:
        cbor.loads(data)
    except WireError as err:
        assert err.reason in ("too_large", "malformed_cbor", "non_canonical_cbor")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(encode(reading(draw(st.integers(0, 1 << 40)))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and at < len(raw):
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete" and at < len(raw):
            del raw[at]
        elif action == "truncate":
            del raw[at:]
    return bytes(raw)


@FUZZ
@given(mutated())
def test_mutations_of_a_valid_reading_signed_with_the_meter_key_get_a_decision(
    raw: bytes,
) -> None:
    # signed after mutating, so the decoder and the field checks see every mutation
    payload = cbor2.dumps([raw, KEY.sign(READING_DOMAIN + raw).signature])
    _decision_of(payload)


@FUZZ
@given(st.binary(min_size=1, max_size=64), st.integers(0, 260))
def test_mutations_of_a_valid_envelope_get_a_decision(chunk: bytes, at: int) -> None:
    payload = sealed(reading(1))
    at = min(at, len(payload))
    assert _decision_of(payload[:at] + chunk + payload[at:]) != "accepted"


def test_a_bug_outside_the_rules_costs_only_its_message(store: HubStore) -> None:
    # A caller's bug, for real: a payload that is text, not bytes. Deciding it is an
    # internal error, and storing the batch fails outside the database (hashing text):
    # the batch is then decided message by message, the good readings are stored.
    hub = Ingestor(store, RuleConfig(), clock=lambda: NOW)
    topic = reading_topic("m1")
    batch = [(topic, sealed(reading(1))), (topic, "text"), (topic, sealed(reading(2, NOW - 540)))]
    decisions = hub.ingest(batch)  # type: ignore[arg-type]
    assert [d.reason or d.verdict.value for d in decisions] == [
        "accepted",
        "internal_error",
        "accepted",
    ]
    assert store.counts() == {"accepted": 2, "internal_error": 1}
    assert [r["seq"] for r in store.readings_of("m1")] == [2, 1]
