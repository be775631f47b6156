"""The hub's MQTT adapter reads the socket in chunks and cuts them into packets itself, and
writes PUBACKs and the meters' acks (QoS 0) straight into one buffer (`BufferedClient`):
a chunk may end anywhere in a packet, and nothing is lost or acknowledged twice."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey
from paho.mqtt.enums import CallbackAPIVersion
from services import Mosquitto

from gridtokenx.hub import mqtt as hub_mqtt
from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.mqtt import BufferedClient, Inbound, MqttIngest, _puback, _publish0
from gridtokenx.hub.rules import MeterStatus, RuleConfig
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.wire import envelope
from gridtokenx.wire.ack import Ack, ack_topic, decode_ack
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic

KEYS = {"m1": SigningKey(b"\x01" * 32), "m2": SigningKey(b"\x02" * 32)}


def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def publish_packet(topic: str | bytes, payload: bytes, qos: int, mid: int) -> bytes:
    name = topic if isinstance(topic, bytes) else topic.encode()
    body = len(name).to_bytes(2, "big") + name
    body += mid.to_bytes(2, "big") if qos else b""
    body += payload
    n, length = len(body), bytearray()
    while True:
        n, digit = divmod(n, 128)
        length.append(digit | (0x80 if n else 0))
        if not n:
            break
    return bytes([0x30 | qos << 1]) + bytes(length) + body


def test_write_vectors() -> None:
    assert _puback(0x1234) == b"\x40\x02\x12\x34"
    assert _publish0("a/b", b"xy", retain=True) == b"\x31\x07\x00\x03a/bxy"
    assert _publish0("a/b", b"xy", retain=False) == b"\x30\x07\x00\x03a/bxy"
    # 5 + 200 bytes of body: a remaining length of two bytes (205 = 0x4d + 1 * 128)
    assert _publish0("a/b", b"z" * 200, retain=True)[:6] == b"\x31\xcd\x01\x00\x03a"


def test_packets_cut_at_any_byte_are_handled_once_each() -> None:
    big = bytes(range(256)) * 2  # a remaining length of 2 bytes
    stream = (
        publish_packet("gtx/v1/meters/m1/reading", b"abc", 1, 7)
        + b"\xd0\x00"  # PINGRESP: handed to paho's own reader
        + publish_packet("gtx/v1/meters/m2/status", big, 1, 65535)
        + publish_packet("x", b"", 0, 0)
        + publish_packet(b"gtx/v1/meters/m\xe9/reading", b"\x00", 1, 1)  # not UTF-8
    )
    expected = [
        Inbound("gtx/v1/meters/m1/reading", b"abc", 7, 1),
        Inbound("gtx/v1/meters/m2/status", big, 65535, 1),
        Inbound("x", b"", 0, 0),
        Inbound("gtx/v1/meters/m\ufffd/reading", b"\x00", 1, 1),  # never a meter's topic
    ]
    for cut in range(len(stream) + 1):
        client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="t", manual_ack=True)
        got: list[Inbound] = []
        client.on_inbound = got.append
        client._ping_t = 1.0  # a ping is outstanding: the PINGRESP clears it
        ours, theirs = socket.socketpair()  # a connection (nothing is read from it here)
        client._sock = ours
        try:
            assert client._packets(stream[:cut]) == mqtt.MQTT_ERR_SUCCESS
            assert client._packets(client._rbuf + stream[cut:]) == mqtt.MQTT_ERR_SUCCESS
        finally:
            ours.close()
            theirs.close()
        assert got == expected, cut
        assert client._rbuf == b""
        assert client._ping_t == 0


def test_a_remaining_length_of_five_bytes_is_a_protocol_error() -> None:
    client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="t", manual_ack=True)
    client.on_inbound = lambda m: None
    assert client._packets(b"\x32\xff\xff\xff\xff\x01") == mqtt.MQTT_ERR_PROTOCOL


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


def sealed(meter_id: str, seq: int) -> bytes:
    now = int(time.time())
    r = Reading(meter_id, seq, now - 7200 + 60 * seq, 10 * seq, 0, 60, 2300, 1000, 1000, 5000)
    return envelope.seal(encode(r), READING_DOMAIN, KEYS[meter_id])


def test_tiny_reads_through_mosquitto_store_all_ack_each_once_and_acks_at_qos0(
    broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_mqtt, "READ_CHUNK", 7)  # every packet is cut, most several times
    store = HubStore(connect(f"sqlite:///{tmp_path / 'hub.db'}"))
    for meter_id, key in KEYS.items():
        store.add_meter(meter_id, bytes(key.verify_key), status=MeterStatus.APPROVED)

    def hub() -> MqttIngest:
        ingest = MqttIngest(
            Ingestor(store, RuleConfig(min_interval_s=0)), "127.0.0.1", broker.port, "hub-io"
        )
        ingest.start()
        until(ingest.connected.is_set, "the hub to subscribe")
        return ingest

    ingest = hub()
    meters = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="meters")
    acks: dict[str, tuple[int, int, bool]] = {}
    meters.on_message = lambda c, u, m: acks.__setitem__(
        m.topic, (decode_ack(bytes(m.payload)).seq, m.qos, m.retain)
    )
    meters.connect("127.0.0.1", broker.port)
    meters.subscribe("gtx/v1/meters/+/ack", qos=1)
    meters.loop_start()
    try:
        for seq in range(1, 101):
            for meter_id in KEYS:
                meters.publish(reading_topic(meter_id), sealed(meter_id, seq), qos=1)
        until(lambda: store.counts().get("accepted") == 200, "every reading")
        until(lambda: len(acks) == 2 and min(a[0] for a in acks.values()) == 100, "acks")
        # live acks: QoS 0 as the hub published them (the subscription allowed 1)
        assert acks == {ack_topic("m1"): (100, 0, False), ack_topic("m2"): (100, 0, False)}
        assert ingest.ingestor.counters.duplicates == 0
        ingest.stop()
        # every reading was PUBACKed: the broker redelivers nothing to the hub's session,
        # so the next reading after a restart is the first thing it decides
        ingest = hub()
        meters.publish(reading_topic("m1"), sealed("m1", 101), qos=1)
        until(lambda: store.counts().get("accepted") == 201, "the reading after a restart")
        assert ingest.ingestor.counters.duplicates == 0
        assert ingest.ingestor.counters.accepted == 1
        late = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="late")
        got: dict[str, bytes] = {}
        late.on_message = lambda c, u, m: got.__setitem__(m.topic, bytes(m.payload))
        late.connect("127.0.0.1", broker.port)
        late.subscribe(ack_topic("m2"), qos=1)  # the retained ack arrives on subscribe
        late.loop_start()
        until(lambda: len(got) == 1, "the retained ack")
        assert decode_ack(got[ack_topic("m2")]) == Ack("m2", 100)
        late.disconnect()
        late.loop_stop()
    finally:
        ingest.stop()
        meters.disconnect()
        meters.loop_stop()
        store.engine.dispose()


def test_a_broker_that_drops_every_connection_is_retried_at_1_2_4_s_not_in_a_loop() -> None:
    """A listener on this machine that accepts and closes at once (as a broker refusing the
    hub's login would): the hub tries again after 1 s, then 2 s, ..., not in a tight loop."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[float] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(time.monotonic())
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    store = HubStore(connect("sqlite:///:memory:"))
    ingest = MqttIngest(Ingestor(store), "127.0.0.1", port, client_id="hub-retry").start()
    try:
        time.sleep(3.5)
    finally:
        ingest.stop()
        server.close()
    # attempts at about 0, 1 and 3 s (a busy machine may delay the third past the window)
    assert 2 <= len(accepted) <= 3, accepted
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(accepted)), accepted
    assert not ingest.connected.is_set()
