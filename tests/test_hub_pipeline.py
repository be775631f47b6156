"""Pipelined ingest: batch N+1's checks run on the verify pool while batch N commits, and a
database outage in the middle loses nothing and acknowledges nothing not yet committed.

Real PostgreSQL (made to refuse connections, as in test_hub_mqtt_bounded). No broker: the
batches are put in the backlog as the MQTT reader would, and what the hub acknowledges is
recorded at its two exits (`client.ack`, the PUBACK; `on_stored`, the meters' acks), each
wrapped to note, at that instant, what a second connection sees committed. The wire side of
both is tested through Mosquitto in test_hub_mqtt_io."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from databases import PG_ADMIN, database
from nacl.signing import SigningKey
from paho.mqtt.enums import MQTTErrorCode
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from gridtokenx.hub import ingest as ingest_mod
from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.mqtt import Inbound, MqttIngest
from gridtokenx.hub.rules import MeterStatus, RuleConfig
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic

KEYS = {"m1": SigningKey(b"\x01" * 32), "m2": SigningKey(b"\x02" * 32)}


def sealed(meter_id: str, seq: int) -> bytes:
    now = int(time.time())
    r = Reading(meter_id, seq, now - 7200 + 60 * seq, 10 * seq, 0, 60, 2300, 1000, 1000, 5000)
    return envelope.seal(encode(r), READING_DOMAIN, KEYS[meter_id])


def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_an_outage_between_pipelined_batches_loses_nothing_and_acks_only_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_mod, "PARSE_CHUNK", 1)  # every message a task on the pool
    with database("postgresql", tmp_path) as url:
        name = url.rsplit("/", 1)[1]
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        store = HubStore(connect(url))
        observer = HubStore(connect(url))  # another connection: sees only committed rows
        for meter_id, key in KEYS.items():
            store.add_meter(meter_id, bytes(key.verify_key), status=MeterStatus.APPROVED)

        def committed() -> set[tuple[str, int]] | None:
            """What is committed; None while the database refuses connections."""
            try:
                return {(m, r["seq"]) for m in KEYS for r in observer.readings_of(m)}
            except OperationalError:
                return None

        stored_calls: list[tuple[dict[str, int], set[tuple[str, int]] | None]] = []
        ingestor = Ingestor(
            store,
            RuleConfig(min_interval_s=0),
            on_stored=lambda s: stored_calls.append((dict(s), committed())),
        )
        hub = MqttIngest(ingestor, batch_max=3)  # never started: no broker, no worker
        pubacks: list[tuple[int, set[tuple[str, int]] | None]] = []
        real_ack = hub.client.ack

        def ack(mid: int, qos: int) -> MQTTErrorCode:
            pubacks.append((mid, committed()))
            return real_ack(mid, qos)

        monkeypatch.setattr(hub.client, "ack", ack)
        first = [("m1", 1), ("m1", 2), ("m1", 3)]
        second = [("m1", 4), ("m2", 1), ("m2", 2)]
        for mid, (meter_id, seq) in enumerate(first + second, start=1):
            hub._received(Inbound(reading_topic(meter_id), sealed(meter_id, seq), mid, 1))
        try:
            hub._decide()  # batch 1 taken, its checks started; nothing before it to commit
            assert hub._inflight is not None and [m.mid for m in hub._inflight[0]] == [1, 2, 3]
            assert pubacks == [] and stored_calls == [] and committed() == set()
            assert hub.backlog == 6

            observer.engine.dispose()
            store.engine.dispose()  # no pooled connection survives the outage
            with admin.connect() as c:
                c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
                c.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                    ),
                    {"n": name},
                )
            # batch 2 taken and checked on the pool, batch 1's commit fails and is retried
            worker = threading.Thread(target=hub._decide)
            worker.start()
            until(lambda: hub.failing_since is not None, "the commit to fail")
            time.sleep(1.5)  # at least one retry, 1 s later, also fails
            assert worker.is_alive()
            assert pubacks == [] and stored_calls == []
            with admin.connect() as c:
                c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            worker.join(timeout=30)
            assert not worker.is_alive()
            assert hub.failing_since is None
            # batch 1 committed, then acknowledged; each ack saw its readings committed
            assert [mid for mid, _ in pubacks] == [1, 2, 3]
            assert all(seen == set(first) for _, seen in pubacks)
            assert stored_calls == [({"m1": 3}, set(first))]
            # batch 2 is in flight, its checks done on the pool, not committed, not acked
            assert hub._inflight is not None and [m.mid for m in hub._inflight[0]] == [4, 5, 6]
            parts = hub._inflight[1].parts
            assert parts is not None and len(parts) == 3
            until(lambda: all(p.done() for p in parts), "batch 2's checks")
            assert committed() == set(first)
            assert hub.backlog == 3

            assert hub._commit()  # what the worker does once nothing more is waiting
            assert [mid for mid, _ in pubacks] == [1, 2, 3, 4, 5, 6]
            assert all(seen == set(first + second) for _, seen in pubacks[3:])
            assert stored_calls[1] == ({"m1": 4, "m2": 2}, set(first + second))
            assert store.counts() == {"accepted": 6}
            assert ingestor.counters.duplicates == 0
            assert hub.backlog == 0 and hub._inflight is None
        finally:
            with admin.connect() as c:
                c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            hub._stop.set()
            store.engine.dispose()
            observer.engine.dispose()
            admin.dispose()
