# The MQTT session to the hub's broker: QoS 1 publishing with reconnect and backoff, and
# the hub's acks in. A PUBACK only says the broker has a message; a reading leaves the ring
# when the hub's ack covers it, so a broker that loses messages loses nothing.
import time

from umqtt.simple import MQTTClient

from gtx import cbor


class Uplink:
    def __init__(
        self,
        cfg: dict,
        client_id: str,
        status_topic: str | None = None,
        offline_status: bytes | None = None,
        meter_id: str | None = None,
    ) -> None:
        """With a meter_id, subscribe to that meter's ack and track `acked`."""
        broker = cfg["broker"]
        ssl = None
        if "ca" in broker:  # MQTT over TLS with the site's CA pinned (gtx/tls.py)
            from gtx.tls import context

            ssl = context(broker["ca"])
        self.client = MQTTClient(
            client_id,
            broker["host"],
            broker.get("port", 8883 if ssl else 1883),
            user=broker.get("user"),
            password=broker.get("password"),
            keepalive=broker.get("keepalive_s", 60),
            ssl=ssl,
        )
        if status_topic and offline_status:
            self.client.set_last_will(status_topic, offline_status, retain=True, qos=1)
        self.meter_id = meter_id
        self.acked = -1  # the highest seq the hub has settled, -1 before its first ack
        self.offer: bytes | None = None  # the hub's firmware offer: an update's 108-byte head
        self.client.set_callback(self)  # acks arrive at __call__
        self.timeout_s = broker.get("timeout_s", 5)
        self.min_backoff_ms = broker.get("min_backoff_ms", 500)
        self.max_backoff_ms = broker.get("max_backoff_ms", 60000)
        self.backoff_ms = self.min_backoff_ms
        self.next_try = time.ticks_ms()
        self.connected = False
        self.sessions = 0  # connections made so far: a new one means resend what is in flight

    def __call__(self, topic: bytes, payload: bytes) -> None:
        """The hub's ack (docs/wire-format.md section 4.1). It has exactly one canonical
        encoding per seq, {0: 1, 1: meter_id, 2: seq}: this meter's fixed prefix, then the
        seq as a shortest-form unsigned integer. Checking those bytes is as strict as
        decoding and re-encoding, without a CBOR decoder. Anything else is ignored."""
        if topic == b"gtx/v1/firmware/offer":
            if len(payload) == 108:
                self.offer = payload
            return
        if self.meter_id is None:
            return
        start = b"\xa3" + cbor.encode({0: 1, 1: self.meter_id})[1:] + b"\x02"
        n = len(start)
        if len(payload) <= n or payload[:n] != start or payload[n] > 27:
            return
        seq = payload[n] if payload[n] < 24 else int.from_bytes(payload[n + 1 :], "big")
        if seq < 1 << 63 and cbor.encode(seq) == payload[n:] and seq > self.acked:
            self.acked = seq

    def ensure(self) -> bool:
        """Connect if needed and if the backoff allows; True when connected. A new session
        subscribes to the meter's ack, so the retained one arrives at once."""
        if self.connected:
            return True
        if time.ticks_diff(self.next_try, time.ticks_ms()) > 0:
            return False
        try:
            self.client.connect(clean_session=False)
            self.client.sock.settimeout(self.timeout_s)
            if self.meter_id is not None:  # a long format string is not a qstr
                self.client.subscribe("gtx/v1/meters/{}/ack".format(self.meter_id), 0)
            self.client.subscribe("gtx/v1/firmware/offer", 0)  # retained: arrives at once
            self.connected = True
            self.sessions += 1
            self.backoff_ms = self.min_backoff_ms
        except Exception:  # OSError, a refused CONNACK, a truncated answer
            self._lost()
        return self.connected

    def _lost(self) -> None:
        try:
            if self.client.sock is not None:
                self.client.sock.close()
        except OSError:
            pass
        self.connected = False
        self.next_try = time.ticks_add(time.ticks_ms(), self.backoff_ms)
        self.backoff_ms = min(self.backoff_ms * 2, self.max_backoff_ms)

    def send(self, topic: str, payload: bytes, retain: bool = False) -> bool:
        """Publish at QoS 1 and wait for the PUBACK; False (and disconnected) on failure."""
        if not self.ensure():
            return False
        try:
            self.client.sock.settimeout(self.timeout_s)
            self.client.publish(topic, payload, retain, 1)
            return True
        except Exception:  # OSError, a timeout, or a malformed answer: reconnect later
            self._lost()
            return False

    def poll(self, timeout_ms: int) -> bool:
        """Wait up to timeout_ms for one message from the broker (an ack, a ping answer)
        and handle it; True if one came. Sleeps when not connected. Only the packet's
        first byte can time out: the rest is read blocking, so the stream stays aligned."""
        if not self.connected:
            time.sleep_ms(timeout_ms)
            return False
        try:
            self.client.sock.settimeout(max(timeout_ms, 1) / 1000)
            op = self.client.wait_msg()
            if op is not None:  # a late PUBACK or SUBACK: skip its body
                self.client.sock.read(self.client._recv_len())
            return True
        except OSError as exc:
            if exc.args and exc.args[0] in (11, 110):  # EAGAIN, ETIMEDOUT: nothing came
                return False
            self._lost()
        except Exception:  # a malformed packet: start a new session
            self._lost()
        return False

    def close(self) -> None:
        """Disconnect cleanly (the broker then drops the last-will 'offline' status)."""
        if self.connected:
            try:
                self.client.disconnect()
            except OSError:
                pass
            self.connected = False
