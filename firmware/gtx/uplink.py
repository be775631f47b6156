# The MQTT session to the hub's broker: QoS 1 publishing with reconnect and backoff.
# A message counts as sent only when the broker's PUBACK came back; until then it stays
# in the ring and is sent again (at-least-once; the hub drops repeats by sequence).
import time

from umqtt.simple import MQTTClient


class Uplink:
    def __init__(
        self,
        cfg: dict,
        client_id: str,
        status_topic: str | None = None,
        offline_status: bytes | None = None,
    ) -> None:
        broker = cfg["broker"]
        self.client = MQTTClient(
            client_id,
            broker["host"],
            broker.get("port", 1883),
            user=broker.get("user"),
            password=broker.get("password"),
            keepalive=broker.get("keepalive_s", 60),
        )
        if status_topic and offline_status:
            self.client.set_last_will(status_topic, offline_status, retain=True, qos=1)
        self.timeout_s = broker.get("timeout_s", 5)
        self.min_backoff_ms = broker.get("min_backoff_ms", 500)
        self.max_backoff_ms = broker.get("max_backoff_ms", 60000)
        self.backoff_ms = self.min_backoff_ms
        self.next_try = time.ticks_ms()
        self.connected = False

    def ensure(self) -> bool:
        """Connect if needed and if the backoff allows; True when connected."""
        if self.connected:
            return True
        if time.ticks_diff(self.next_try, time.ticks_ms()) > 0:
            return False
        try:
            self.client.connect(clean_session=False)
            self.connected = True
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

    def close(self) -> None:
        """Disconnect cleanly (the broker then drops the last-will 'offline' status)."""
        if self.connected:
            try:
                self.client.disconnect()
            except OSError:
                pass
            self.connected = False
