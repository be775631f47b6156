"""The MQTT adapter: readings in from the broker, acknowledged only once durable.

paho-mqtt with `manual_ack`: the PUBACK of a QoS 1 reading is sent only after the batch
holding it was committed to the database. If the hub dies before that, the broker (the hub
has a persistent session) delivers the reading again, and the rules see a `duplicate` if it
had in fact been stored. So an accepted reading survives a crash at any point.

Only database errors are retried (the batch stays unacknowledged, `/health` reports it);
a bad or unexpected message is decided as a rejection by the ingest use case and never
holds the batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gridtokenx.hub import firmware, updates
from gridtokenx.hub.acks import AckPublisher
from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.rules import Decision
from gridtokenx.hub.store import DATABASE_ERRORS
from gridtokenx.wire import envelope, topics
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.status import STATUS_DOMAIN, Status, decode_status

log = logging.getLogger("gridtokenx.hub.mqtt")


class MqttIngest:
    def __init__(
        self,
        ingestor: Ingestor,
        host: str = "127.0.0.1",
        port: int = 1883,
        client_id: str = "gtx-hub",
        batch_max: int = 1000,
        batch_wait_s: float = 0.01,
    ) -> None:
        self.ingestor = ingestor
        self.host, self.port = host, port
        self.batch_max, self.batch_wait_s = batch_max, batch_wait_s
        self.statuses: dict[str, Status] = {}
        self.offered: bytes | None = None  # the firmware offer last published (retained)
        self.offer_every_s = 5.0
        self._next_offer = 0.0
        self.connected = threading.Event()
        self.last_commit = 0.0
        self.failing_since: float | None = None  # the database refuses the current batch
        # SimpleQueue (C, no task tracking): a put and a get per reading, the hot path
        self._queue: queue.SimpleQueue[mqtt.MQTTMessage] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="hub-ingest", daemon=True)
        self.on_batch: Callable[[list[Decision]], None] | None = None
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            manual_ack=True,
        )
        self.client.on_connect = self._on_connect
        if ingestor.on_stored is None:  # after each commit: acks to the meters (acks.py)
            ingestor.on_stored = AckPublisher(self.client)
        self.client.on_subscribe = lambda *a: self.connected.set()
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = lambda c, u, msg: self._queue.put(msg)
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        rc: object,
        properties: object = None,
    ) -> None:
        client.subscribe([(topics.READINGS, 1), (topics.STATUSES, 1)])
        self.offered, self._next_offer = None, 0.0  # publish the offer again: cheap

    def start(self) -> MqttIngest:
        self._worker.start()
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._worker.join(timeout=10)
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def problems(self) -> list[str]:
        """Why ingest is not making progress, if it is not: for /health."""
        out = []
        if self._worker.ident is not None and not self._worker.is_alive():
            out.append("ingest: the worker stopped")
        if self.failing_since is not None:
            out.append(f"ingest: database failing for {time.time() - self.failing_since:.0f} s")
        return out

    def _status(self, msg: mqtt.MQTTMessage) -> None:
        meter_id = topics.meter_of(msg.topic)
        meter = self.ingestor._meter(meter_id or "")
        if meter is None:
            return
        try:
            raw, signature = envelope.unwrap(bytes(msg.payload))
            envelope.verify(raw, signature, STATUS_DOMAIN, meter.public_key)
            status = decode_status(raw)
        except WireError:
            return
        if status.meter_id == meter_id:
            self.statuses[meter_id] = status
            firmware.report(self.ingestor.store, status)

    def _offer(self) -> None:
        """Publish the newest published image's offer, retained, when it changed (`gridtokenx
        hub firmware publish` writes only the database; this process reads it)."""
        if time.monotonic() < self._next_offer or not self.connected.is_set():
            return
        self._next_offer = time.monotonic() + self.offer_every_s
        try:
            head = firmware.offer(self.ingestor.store)
        except DATABASE_ERRORS:
            return  # the next tick asks again
        if head is not None and head != self.offered:
            self.client.publish(updates.OFFER_TOPIC, head, qos=1, retain=True)
            self.offered = head

    def _work(self) -> None:
        while not self._stop.is_set():
            self._offer()
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.monotonic() + self.batch_wait_s
            while len(batch) < self.batch_max:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except queue.Empty:
                    pass
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            readings = [m for m in batch if m.topic.endswith("/reading")]
            while True:
                try:
                    decisions = self.ingestor.ingest(
                        [(m.topic, bytes(m.payload)) for m in readings]
                    )
                    break
                except DATABASE_ERRORS:  # keep the batch, unacknowledged, and retry
                    log.exception("could not store %d readings; retrying", len(readings))
                    if self.failing_since is None:
                        self.failing_since = time.time()
                    if self._stop.wait(1.0):
                        return
            self.failing_since = None
            for m in batch:
                if m.topic.endswith("/status"):
                    try:
                        self._status(m)
                    except Exception:  # a bug in one status must not stop ingest
                        log.exception("internal error on a status message")
            self.last_commit = time.time()
            for m in batch:
                self.client.ack(m.mid, m.qos)
            if self.on_batch is not None:
                self.on_batch(decisions)
