"""The findings of issue 13 through a real Mosquitto into the hub's MQTT adapter: the bomb,
the bignum and 1 MiB junk do not stop ingest and /health tells the truth, also while the
database is away (PostgreSQL refusing connections), when it answers 503 until it is back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
import pytest
from databases import PG_ADMIN, database
from fastapi.testclient import TestClient
from nacl.signing import SigningKey
from services import Mosquitto
from sqlalchemy import create_engine, text

from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.mqtt import MqttIngest
from gridtokenx.hub.rules import MeterStatus, RuleConfig
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.hub.web import HubContext, create_app
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import KEYS, READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic

KEY = SigningKey(bytes(range(32)))
TOPIC = reading_topic("m1")


def reading(seq: int) -> Reading:
    now = int(time.time())
    return Reading("m1", seq, now - 3600 + 60 * seq, 1_000 + seq, 0, 60, 2300, 1000, 1000, 5000)


def sealed(seq: int) -> bytes:
    return envelope.seal(encode(reading(seq)), READING_DOMAIN, KEY)


def bignum_reading(seq: int) -> bytes:
    fields: dict[int, object] = {0: 1}
    fields.update({k: getattr(reading(seq), name) for name, k in KEYS.items()})
    fields[4] = 10**5000
    raw = cbor2.dumps(fields, canonical=True)
    return cbor2.dumps([raw, KEY.sign(READING_DOMAIN + raw).signature])


def bomb(depth: int = 25) -> bytes:
    def level(k: int) -> bytes:
        if k == 0:
            return b"\xd8\x1c\x41a"
        return b"\xd8\x1c\x82" + level(k - 1) + b"\xd8\x1d" + cbor2.dumps(depth - k + 1)

    return level(depth)


def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


def publish(port: int, *payloads: bytes) -> None:
    """An anonymous client: the brokers in these tests accept it, as the finding had it."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="anonymous")
    client.connect("127.0.0.1", port)
    client.loop_start()
    for payload in payloads:
        client.publish(TOPIC, payload, qos=1).wait_for_publish(timeout=30)
    client.loop_stop()
    client.disconnect()


def running_hub(url: str, port: int) -> tuple[HubStore, MqttIngest, TestClient]:
    store = HubStore(connect(url))
    store.add_meter("m1", bytes(KEY.verify_key), rated_power_w=5_000, status=MeterStatus.APPROVED)
    ingest = MqttIngest(Ingestor(store, RuleConfig()), "127.0.0.1", port, client_id="hub-test")
    ingest.start()
    until(ingest.connected.is_set, "the hub to subscribe")
    return store, ingest, TestClient(create_app(HubContext(store, ingest=ingest)))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_bomb_bignum_and_junk_do_not_stop_ingest(
    kind: str, broker: Mosquitto, tmp_path: Path
) -> None:
    with database(kind, tmp_path) as url:
        store, ingest, web = running_hub(url, broker.port)
        try:
            publish(broker.port, sealed(1), bomb(), bignum_reading(2), b"\x00" * (1 << 20))
            publish(broker.port, sealed(3))
            until(lambda: store.counts().get("accepted") == 2, "both good readings")
            assert store.counts() == {"accepted": 2, "malformed_cbor": 1, "too_large": 2}
            assert web.get("/health").json() == {"status": "ok"}
            assert ingest.backlog == 0
        finally:
            ingest.stop()
            store.engine.dispose()


def test_health_is_503_while_the_database_refuses_and_ok_after(
    broker: Mosquitto, tmp_path: Path
) -> None:
    with database("postgresql", tmp_path) as url:
        name = url.rsplit("/", 1)[1]
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        store, ingest, web = running_hub(url, broker.port)
        try:
            store.engine.dispose()  # no pooled connection survives the outage
            with admin.connect() as c:
                c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
                c.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                    ),
                    {"n": name},
                )
            publish(broker.port, sealed(1))
            until(lambda: web.get("/health").status_code == 503, "/health to report it")
            body = web.get("/health").json()
            assert body["status"] == "failing"
            assert body["problems"][0].startswith("ingest: database failing for ")
            with admin.connect() as c:
                c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            until(lambda: web.get("/health").status_code == 200, "ingest to recover")
            assert store.counts() == {"accepted": 1}  # retried, stored once
        finally:
            with admin.connect() as c:
                c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            ingest.stop()
            store.engine.dispose()
            admin.dispose()


def test_pages_answer_503_in_the_error_shape_while_the_database_is_away(tmp_path: Path) -> None:
    with database("postgresql", tmp_path) as url:
        name = url.rsplit("/", 1)[1]
        store = HubStore(connect(url))
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        web = TestClient(
            create_app(HubContext(store, installer_token="t")), raise_server_exceptions=False
        )
        store.engine.dispose()
        try:
            with admin.connect() as c:
                c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            down = web.get("/api/meters", headers={"Authorization": "Bearer t"})
            assert down.status_code == 503
            assert down.json() == {"code": "database_unavailable", "message": "try again shortly"}
        finally:
            with admin.connect() as c:
                c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            store.engine.dispose()
            admin.dispose()
