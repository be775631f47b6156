"""The hub's reading rules and storage: every rejection reason, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cbor2
import pytest
from databases import database
from hub_readings import KEY, NOW, ingest, reading, sealed
from nacl.signing import SigningKey

from gridtokenx.hub.rules import MeterStatus, RuleConfig, Verdict
from gridtokenx.hub.store import HubStore, RegistrationError, connect
from gridtokenx.wire.reading import READING_DOMAIN, encode
from gridtokenx.wire.topics import reading_topic


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubStore]:
    with database(request.param, tmp_path) as url:
        engine = connect(url)
        s = HubStore(engine)
        s.add_meter("m1", bytes(KEY.verify_key), rated_power_w=5_000, status=MeterStatus.APPROVED)
        yield s
        engine.dispose()


def test_a_good_history_is_accepted_and_stored_unaltered(store: HubStore) -> None:
    first, second = sealed(reading(1)), sealed(reading(2, NOW - 540, 1_050, 3))
    assert ingest(store, first, second) == ["accepted", "accepted"]
    rows = store.readings_of("m1")
    assert [(r["seq"], r["import_wh"], r["export_wh"]) for r in rows] == [
        (2, 1050, 3),
        (1, 1000, 0),
    ]
    assert store.counts() == {"accepted": 2}


@pytest.mark.parametrize(
    "second,reason",
    [
        (sealed(reading(1, NOW - 540, 1_050)), "replayed"),
        (sealed(reading(2, NOW - 600, 1_050)), "backdated"),
        (sealed(reading(2, NOW + 61, 1_050)), "future_timestamp"),
        (sealed(reading(2, NOW - 540, 999)), "register_decreased"),
        (sealed(reading(2, NOW - 595, 1_001)), "interval_too_short"),
        # 5 kW for 60 s is 83 Wh; +10% tolerance allows 91 Wh
        (sealed(reading(2, NOW - 540, 1_092)), "energy_exceeds_rating"),
        (sealed(reading(2, NOW - 540, 1_000_000_001)), "out_of_bounds"),
        (sealed(reading(2, NOW - 540, 1_050, flags=1)), "time_not_set"),
        (sealed(reading(2, NOW - 540, 1_050), SigningKey.generate()), "bad_signature"),
        (sealed(replace(reading(2, NOW - 540, 1_050), meter_id="m2")), "topic_mismatch"),
        (b"\xff\x00", "malformed_cbor"),
        (cbor2.dumps([b"x"]), "malformed_envelope"),
    ],
)
def test_each_rejection_reason_is_stored_and_changes_nothing(
    store: HubStore, second: bytes, reason: str
) -> None:
    assert ingest(store, sealed(reading(1)), second) == ["accepted", reason]
    assert len(store.readings_of("m1")) == 1
    assert store.rejections_of("m1")[-1][1] == reason
    assert store.counts()[reason] == 1


def test_non_canonical_cbor_is_refused_even_when_signed(store: HubStore) -> None:
    raw = encode(reading(1)).replace(b"\x02\x01", b"\x02\x18\x01", 1)
    payload = cbor2.dumps([raw, KEY.sign(READING_DOMAIN + raw).signature])
    assert ingest(store, payload) == ["non_canonical_cbor"]


def test_meter_status_rules(store: HubStore) -> None:
    assert ingest(store, sealed(reading(1)), topic=reading_topic("nobody")) == ["unknown_meter"]
    store.add_meter("m2", bytes(KEY.verify_key))
    m2 = sealed(replace(reading(1), meter_id="m2"))
    assert ingest(store, m2, topic=reading_topic("m2")) == ["meter_not_approved"]
    store.set_status("m1", MeterStatus.SUSPENDED)
    assert ingest(store, sealed(reading(1))) == ["suspended_meter"]
    store.set_status("m1", MeterStatus.APPROVED)
    assert ingest(store, sealed(reading(1))) == ["accepted"]


def test_redelivery_is_a_duplicate_not_a_rejection(store: HubStore) -> None:
    payload = sealed(reading(1))
    assert ingest(store, payload) == ["accepted"]
    assert ingest(store, payload) == ["duplicate"]  # a fresh hub: heads come from the database
    assert store.counts() == {"accepted": 1}


def test_redelivery_of_an_older_reading_is_a_duplicate_but_a_forgery_is_a_replay(
    store: HubStore,
) -> None:
    one, two, three = (sealed(reading(k, NOW - 600 + 60 * k, 1_000 + k)) for k in (1, 2, 3))
    assert ingest(store, one, two, three) == ["accepted"] * 3
    # the hub died after its commit, before its acknowledgements: all three come again
    assert ingest(store, one, two, three) == ["duplicate"] * 3
    other = sealed(reading(2, NOW - 480, 1_002, 5))  # seq 2 again, different content
    assert ingest(store, other) == ["replayed"]
    assert ingest(store, one, one) == ["duplicate", "duplicate"]
    assert store.counts() == {"accepted": 3, "replayed": 1}


def test_gaps_are_visible(store: HubStore) -> None:
    assert ingest(store, sealed(reading(1)), sealed(reading(5, NOW - 300, 1_100))) == [
        "accepted",
        "accepted",
    ]
    assert store.gaps_of("m1") == [(2, 4)]


def test_registration_errors(store: HubStore) -> None:
    with pytest.raises(RegistrationError) as err:
        store.add_meter("m1", bytes(32))
    assert err.value.code == "meter_exists"
    with pytest.raises(RegistrationError) as err:
        store.add_meter("bad/id", bytes(32))
    assert err.value.code == "invalid_meter_id"
    with pytest.raises(RegistrationError) as err:
        store.add_meter("m9", bytes(31))
    assert err.value.code == "invalid_public_key"
    with pytest.raises(RegistrationError) as err:
        store.set_status("nope", MeterStatus.APPROVED)
    assert err.value.code == "unknown_meter"


def test_decisions_are_pure() -> None:
    from gridtokenx.hub.rules import Meter, check

    meter = Meter("m1", bytes(KEY.verify_key), MeterStatus.APPROVED)
    d = check("m1", sealed(reading(1)), meter, None, NOW, RuleConfig())
    assert d.verdict is Verdict.ACCEPTED and d.reading == reading(1)
