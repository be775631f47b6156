"""The hub's ack message: one vector file both implementations pass, and what the hub
counts as settled."""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey
from services import ROOT, Mosquitto, run_micropython

from gridtokenx.hub.acks import AckPublisher
from gridtokenx.hub.ingest import settled
from gridtokenx.hub.rules import Meter, MeterStatus, Previous, RuleConfig, check
from gridtokenx.wire import envelope
from gridtokenx.wire.ack import Ack, ack_topic, decode_ack, encode_ack, vectors
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode

VECTORS = ROOT / "docs" / "vectors" / "ack-v1.json"


def test_checked_in_vectors_match_the_generator() -> None:
    assert json.loads(VECTORS.read_text()) == vectors()


def test_hub_decodes_every_vector_and_refuses_every_invalid_one() -> None:
    v = json.loads(VECTORS.read_text())
    for case in v["acks"]:
        ack = Ack(**case["fields"])
        assert encode_ack(ack).hex() == case["cbor_hex"]
        assert decode_ack(bytes.fromhex(case["cbor_hex"])) == ack
    for case in v["invalid"]:
        with pytest.raises(WireError) as info:
            decode_ack(bytes.fromhex(case["hex"]))
        assert info.value.reason == case["reason"], case
    assert v["topic_of_mtr-0001"] == ack_topic("mtr-0001") == "gtx/v1/meters/mtr-0001/ack"


def test_firmware_reads_every_vector_and_refuses_every_invalid_one() -> None:
    v = json.loads(VECTORS.read_text())
    cases = [(c["cbor_hex"], c["fields"]["meter_id"]) for c in v["acks"]]
    cases += [(c["hex"], "mtr-0001") for c in v["invalid"]]
    cases.append((v["acks"][0]["cbor_hex"], "mtr-0002"))  # another meter's ack
    cases.append((v["acks"][0]["cbor_hex"] + "00" * 200, "mtr-0001"))  # longer than an ack
    code = f"""
from gtx.uplink import Uplink
for payload, meter in {cases!r}:
    u = Uplink({{"broker": {{"host": "127.0.0.1"}}}}, "probe", None, None, meter)
    u(b"gtx/v1/meters/" + meter.encode() + b"/ack", bytes.fromhex(payload))
    print(u.acked if u.acked >= 0 else "refused")
"""
    out = run_micropython(code).splitlines()
    assert out == [
        *[str(c["fields"]["seq"]) for c in v["acks"]],
        *["refused"] * (len(v["invalid"]) + 2),
    ]


def reading(meter_id: str, seq: int, ts: int, import_wh: int) -> Reading:
    return Reading(meter_id, seq, ts, import_wh, 0, 60, 2300, 1000, 1000, 5000)


def test_settled_covers_stored_and_rule_refused_readings_only() -> None:
    key, other = SigningKey(b"\x01" * 32), SigningKey(b"\x02" * 32)
    meter = Meter("m1", bytes(key.verify_key), MeterStatus.APPROVED)
    pending = Meter("m2", bytes(other.verify_key), MeterStatus.PENDING)
    now = 1_767_225_600
    config = RuleConfig(min_interval_s=0)

    def sealed(r: Reading, k: SigningKey) -> bytes:
        return envelope.seal(encode(r), READING_DOMAIN, k)

    previous = Previous(4, now - 120, 1000, 0, b"")
    decisions = [
        check("m1", sealed(reading("m1", 5, now - 60, 1010), key), meter, previous, now, config),
        # refused by a rule (the register went back): settled, the same bytes never pass
        check("m1", sealed(reading("m1", 6, now, 900), key), meter, previous, now, config),
        # another key on m1's topic, a pending meter, another meter's id: not settled
        check("m1", sealed(reading("m1", 9, now, 2000), other), meter, previous, now, config),
        check("m2", sealed(reading("m2", 3, now, 10), other), pending, None, now, config),
        check("m1", sealed(reading("m3", 8, now, 2000), key), meter, previous, now, config),
    ]
    assert [d.reason for d in decisions] == [
        "",
        "register_decreased",
        "bad_signature",
        "meter_not_approved",
        "topic_mismatch",
    ]
    assert settled(decisions) == {"m1": 6}


def test_publisher_retains_each_meters_ack_and_never_goes_back(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    try:
        hub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hub")
        hub.connect("127.0.0.1", broker.port)
        hub.loop_start()
        publish = AckPublisher(hub)
        publish({"m1": 7, "m2": 3})
        publish({"m1": 5})  # a redelivered older reading: the ack stays at 7
        time.sleep(0.5)
        got: dict[str, bytes] = {}
        meter = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="late-meter")
        meter.on_message = lambda c, u, m: got.__setitem__(m.topic, bytes(m.payload))
        meter.connect("127.0.0.1", broker.port)
        meter.subscribe("gtx/v1/meters/+/ack", qos=1)  # retained: arrives on subscribe
        meter.loop_start()
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {t: decode_ack(p) for t, p in got.items()} == {
            ack_topic("m1"): Ack("m1", 7),
            ack_topic("m2"): Ack("m2", 3),
        }
        assert publish.published == 3
        for client in (hub, meter):
            client.disconnect()
            client.loop_stop()
    finally:
        broker.stop()
