"""The MQTT adapter: readings in from the broker, acknowledged only once durable.

paho-mqtt with `manual_ack`: the PUBACK of a QoS 1 reading is sent only after the batch
holding it was committed to the database. If the hub dies before that, the broker (the hub
has a persistent session) delivers the reading again, and the rules see a `duplicate` if it
had in fact been stored. So an accepted reading survives a crash at any point.

One thread does everything: it runs paho's network loop itself (`loop_read`, `loop_write`,
`loop_misc` around its own `select`), collects a batch, decides and commits it, then sends
the batch's PUBACKs and the meters' acks (acks.py) in one write. Batches are pipelined: a
batch taken from the backlog has its envelopes and signatures checked on the verify pool
(`Ingestor.prepare`) while the batch before it is committed and acknowledged
(`Ingestor.finish`); batches are committed one at a time, in the order received, and a batch
is acknowledged only after its own commit. The last batch is committed as soon as nothing
more is waiting. The socket is read in large
chunks and written once per turn of the loop (`BufferedClient`): paho alone reads a packet
with three or four `recv` calls and sends each packet with its own `send`.

Only database errors are retried (the batch stays unacknowledged, `/health` reports it; the
connection is kept alive meanwhile); a bad or unexpected message is decided as a rejection
by the ingest use case and never holds the batch.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import PayloadType, time_func
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties

from gridtokenx.hub import firmware, updates
from gridtokenx.hub.acks import AckPublisher
from gridtokenx.hub.ingest import Ingestor, Prepared
from gridtokenx.hub.rules import Decision
from gridtokenx.hub.store import DATABASE_ERRORS
from gridtokenx.wire import envelope, topics
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.status import STATUS_DOMAIN, Status, decode_status

log = logging.getLogger("gridtokenx.hub.mqtt")

READ_CHUNK = 1 << 18  # bytes asked of the socket at once
READS_PER_TURN = 8  # socket reads per `loop_read`, so writes and the batch get their turn
RECONNECT_MIN_S, RECONNECT_MAX_S = 1.0, 5.0


@dataclass(frozen=True, slots=True)
class Inbound:
    """A PUBLISH the broker delivered (paho's MQTTMessage carries a lock per message)."""

    topic: str
    payload: bytes
    mid: int
    qos: int


def _puback(mid: int) -> bytes:
    return b"\x40\x02" + mid.to_bytes(2, "big")


def _publish0(topic: str, payload: bytes, retain: bool) -> bytes:
    """An MQTT 3.1.1 PUBLISH at QoS 0."""
    name = topic.encode()
    n = 2 + len(name) + len(payload)
    head = bytearray([0x31 if retain else 0x30])
    while True:
        n, digit = divmod(n, 128)
        head.append(digit | (0x80 if n else 0))
        if not n:
            break
    return bytes(head) + len(name).to_bytes(2, "big") + name + payload


class BufferedClient(mqtt.Client):
    """paho's client with the hot path of a hub done in bulk, for a caller that runs the
    loop itself (`loop_read`, `loop_write`, `flush`, `loop_misc` from one thread).

    Reads: `loop_read` takes up to READ_CHUNK bytes per `recv` and cuts them into packets
    itself; a PUBLISH at QoS 0 or 1 goes to `on_inbound` as an `Inbound`, every other packet
    (CONNACK, SUBACK, PINGRESP, the PUBACK of our own QoS 1 publishes, ...) is handed to
    paho's own reader whole. paho alone reads a packet with three or four `recv` calls, one
    packet per `select`, and builds a message object with its own lock per PUBLISH. Bytes of
    a packet not yet complete stay here until the socket has the rest.

    Writes: whatever paho sends, the PUBACKs of `ack()` and QoS 0 publishes (the meters'
    acks) are appended to one buffer that `flush()` sends with as few `send` calls as the
    socket allows; `want_write()` is true while bytes wait. Not thread-safe: one thread.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_inbound: Callable[[Inbound], None] | None = None
        self._rbuf = b""  # received, not yet a whole packet
        self._feed = b""  # one whole packet for paho's reader
        self._wbuf = bytearray()
        self._sent = mqtt.MQTTMessageInfo(0)  # what a buffered QoS 0 publish returns
        self._sent.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        self._sent._set_as_published()

    # -- reading --

    def _sock_recv(self, bufsize: int) -> bytes:
        """paho's reader reads only the packet it was handed in `_feed`."""
        if not self._feed:
            raise BlockingIOError
        out, self._feed = self._feed[:bufsize], self._feed[bufsize:]
        return out

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read and handle packets until the socket has no more (or READS_PER_TURN reads)."""
        for _ in range(READS_PER_TURN):
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            try:
                data = super()._sock_recv(READ_CHUNK)
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except OSError as exc:
                log.warning("mqtt: receive failed: %s", exc)
                return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
            if not data:
                return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
            with self._msgtime_mutex:
                self._last_bytes_received = time_func()
            rc = self._packets(self._rbuf + data if self._rbuf else data)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return self._loop_rc_handle(rc)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _packets(self, buf: bytes) -> MQTTErrorCode:
        """Handle every whole packet in `buf`; keep the rest for the next read."""
        pos, size = 0, len(buf)
        lean = self._protocol == mqtt.MQTTv311 and self.on_inbound is not None
        while pos + 2 <= size:
            command = buf[pos]
            length, shift, at = 0, 0, pos + 1
            while True:  # the remaining length: 1 to 4 bytes of 7 bits
                if at >= size:
                    self._rbuf = buf[pos:]
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
                byte = buf[at]
                at += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
                if shift > 21:
                    return MQTTErrorCode.MQTT_ERR_PROTOCOL
            end = at + length
            if end > size:
                break
            qos = (command >> 1) & 3
            if lean and command & 0xF0 == 0x30 and qos < 2:
                topic_end = at + 2 + int.from_bytes(buf[at : at + 2], "big")
                mid = 0
                if qos:
                    mid = int.from_bytes(buf[topic_end : topic_end + 2], "big")
                if topic_end + 2 * qos > end:
                    return MQTTErrorCode.MQTT_ERR_PROTOCOL
                topic = buf[at + 2 : topic_end].decode("utf-8", "replace")
                assert self.on_inbound is not None
                self.on_inbound(Inbound(topic, buf[topic_end + 2 * qos : end], mid, qos))
            else:
                self._feed = buf[pos:end]
                rc = self._packet_read()
                self._feed = b""
                if rc > 0:
                    return rc
                if self._sock is None:  # e.g. a refused CONNACK
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
            pos = end
        self._rbuf = buf[pos:]
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    # -- writing --

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if self._sock is None:
            raise ConnectionError("self._sock is None")
        self._wbuf += buf
        return len(buf)

    def ack(self, mid: int, qos: int) -> MQTTErrorCode:
        if qos == 1 and self._manual_ack:
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN  # the broker delivers it again
            self._wbuf += _puback(mid)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super().ack(mid, qos)

    def publish(
        self,
        topic: str,
        payload: PayloadType = None,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> mqtt.MQTTMessageInfo:
        """A QoS 0 publish of bytes is buffered as is (no message id, nothing to track)."""
        if (
            qos == 0
            and properties is None
            and isinstance(payload, bytes)
            and self._protocol == mqtt.MQTTv311
            and self._sock is not None
            and topic
            and "+" not in topic
            and "#" not in topic
        ):
            self._wbuf += _publish0(topic, payload, retain)
            return self._sent
        return super().publish(topic, payload, qos, retain, properties)

    def want_write(self) -> bool:
        return bool(self._wbuf) or super().want_write()

    def flush(self) -> MQTTErrorCode:
        """Send the buffered bytes; what the socket does not take now stays for the next
        call (`want_write()` stays true). A broken connection is handled as paho would."""
        while self._wbuf and self._sock is not None:
            try:
                sent = super()._sock_send(self._wbuf)
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except OSError as exc:
                log.warning("mqtt: send failed: %s", exc)
                self._wbuf.clear()
                return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
            del self._wbuf[:sent]
            with self._msgtime_mutex:
                self._last_msg_out = time_func()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _sock_close(self) -> None:
        if self._sock is not None and self._wbuf:  # e.g. a DISCONNECT paho just "sent"
            with contextlib.suppress(OSError):
                super()._sock_send(self._wbuf)
        self._wbuf.clear()
        self._rbuf = self._feed = b""
        super()._sock_close()


class MqttIngest:
    def __init__(
        self,
        ingestor: Ingestor,
        host: str = "127.0.0.1",
        port: int = 1883,
        client_id: str = "gtx-hub",
        batch_max: int = 4000,
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
        self._pending: list[Inbound] = []  # received, not yet decided
        # taken from the backlog, its checks running on the pool, not yet committed
        self._inflight: tuple[list[Inbound], Prepared] | None = None
        self._first_at = 0.0  # when the oldest pending message arrived (monotonic)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="hub-ingest", daemon=True)
        self.on_batch: Callable[[list[Decision]], None] | None = None
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            manual_ack=True,
        )
        self.client.on_connect = self._on_connect
        if ingestor.on_stored is None:  # after each commit: acks to the meters (acks.py)
            ingestor.on_stored = AckPublisher(self.client)
        self._next_connect, self._retry_s = 0.0, RECONNECT_MIN_S
        self.client.on_subscribe = lambda *a: self._subscribed()
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_inbound = self._received
        self.client.on_message = lambda c, u, m: self._received(
            Inbound(m.topic, bytes(m.payload), m.mid, m.qos)
        )

    def _subscribed(self) -> None:
        self._retry_s = RECONNECT_MIN_S
        self.connected.set()

    def _received(self, message: Inbound) -> None:
        if not self._pending:
            self._first_at = time.monotonic()
        self._pending.append(message)

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
        self.client.connect_async(self.host, self.port, keepalive=30)
        self._worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._worker.join(timeout=10)
        self.client.disconnect()

    @property
    def backlog(self) -> int:
        inflight = self._inflight
        return len(self._pending) + (len(inflight[0]) if inflight is not None else 0)

    def problems(self) -> list[str]:
        """Why ingest is not making progress, if it is not: for /health."""
        out = []
        if self._worker.ident is not None and not self._worker.is_alive():
            out.append("ingest: the worker stopped")
        if self.failing_since is not None:
            out.append(f"ingest: database failing for {time.time() - self.failing_since:.0f} s")
        return out

    def _status(self, msg: Inbound) -> None:
        meter_id = topics.meter_of(msg.topic)
        meter = self.ingestor._meter(meter_id or "")
        if meter is None:
            return
        try:
            raw, signature = envelope.unwrap(msg.payload)
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

    # -- the loop ---------------------------------------------------------------------

    def _network(self, timeout: float) -> None:
        """One turn of the network loop: wait up to `timeout` for the socket, read all that
        is there, write what is buffered, keep the connection alive."""
        client = self.client
        sock = client.socket()
        if sock is None:
            self._stop.wait(timeout)
            return
        pending = getattr(sock, "pending", None)  # TLS may hold decrypted bytes
        if pending is not None and pending() > 0:
            timeout = 0.0
        try:
            readable, _, _ = select.select(
                [sock], [sock] if client.want_write() else [], [], timeout
            )
        except (OSError, ValueError, TypeError):  # the socket went away under us
            readable = [sock]
        if readable or timeout == 0.0:
            client.loop_read()
        if client.socket() is not None:
            client.loop_write()
            client.flush()
        if client.socket() is not None:
            client.loop_misc()

    def _connect(self) -> None:
        """(Re)connect when there is no socket: at most one attempt per `_retry_s`, which
        doubles from 1 to 5 s while attempts fail and is reset once subscribed."""
        if time.monotonic() < self._next_connect:
            self._stop.wait(min(0.2, self._next_connect - time.monotonic()))
            return
        self._next_connect = time.monotonic() + self._retry_s
        self._retry_s = min(self._retry_s * 2, RECONNECT_MAX_S)
        try:
            self.client.reconnect()
            self.client.flush()
        except Exception as exc:  # OSError mostly (refused, TLS, DNS): never the worker's end
            log.warning("mqtt: cannot connect to %s:%s: %s", self.host, self.port, exc)

    def _work(self) -> None:
        while not self._stop.is_set():
            if self.client.socket() is None:
                self._connect()
                continue
            self._offer()
            if not self._pending:
                if self._inflight is not None:
                    self._network(0.0)
                    if not self._pending:  # nothing to overlap with: commit it now
                        self._commit()
                    continue
                self._network(0.2)
            elif len(self._pending) < self.batch_max:
                wait = self._first_at + self.batch_wait_s - time.monotonic()
                if wait > 0:
                    self._network(wait)
                else:
                    self._network(0.0)  # take what has arrived meanwhile, then decide
                    self._decide()
            else:
                self._decide()

    def _decide(self) -> None:
        """Take the next batch and start its checks, then commit the batch before it."""
        batch = self._pending[: self.batch_max]
        del self._pending[: self.batch_max]
        if self._pending:
            self._first_at = time.monotonic()
        readings = [(m.topic, m.payload) for m in batch if m.topic.endswith("/reading")]
        taken = (batch, self.ingestor.prepare(readings))
        if self._commit():
            self._inflight = taken
        # else: stopping while the database failed; neither batch is acknowledged

    def _commit(self) -> bool:
        """Commit the batch in flight (retrying while the database fails), then acknowledge
        it. False if the worker was stopped first: then nothing of it is acknowledged."""
        if self._inflight is None:
            return True
        batch, prepared = self._inflight
        while True:
            try:
                decisions = self.ingestor.finish(prepared)
                break
            except DATABASE_ERRORS:  # keep the batch, unacknowledged, and retry
                log.exception("could not store %d readings; retrying", len(prepared.messages))
                if self.failing_since is None:
                    self.failing_since = time.time()
                retry_at = time.monotonic() + 1.0
                while (left := retry_at - time.monotonic()) > 0:  # the connection stays up
                    if self._stop.is_set():
                        return False
                    self._network(left)
        self._inflight = None
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
        self.client.flush()
        if self.on_batch is not None:
            self.on_batch(decisions)
        return True
