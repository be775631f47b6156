"""Acknowledgements to the meters: after a batch is committed, each meter in it learns the
highest sequence number the hub has settled for it (docs/wire-format.md section 4.1; what
counts as settled is `ingest.settled`, which the ingest use case hands to this publisher).

An ack is cumulative (it covers every reading up to its seq), so a meter's acks are sent at
most once per `every_s`: a meter publishing faster than that gets one ack for all its
readings of the interval, the newest, sent by `flush` once the interval has passed. A meter
re-sends only after `ack_timeout_s` (10 s) without an ack, well above the 1 s default.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import paho.mqtt.client as mqtt

from gridtokenx.wire.ack import Ack, ack_topic, encode_ack

ACK_EVERY_S = 1.0


class AckPublisher:
    """Publishes each meter's ack, retained at QoS 1, never going backwards, at most once
    per `every_s` per meter (the newest is kept until `flush` may send it)."""

    def __init__(
        self,
        client: mqtt.Client,
        every_s: float = ACK_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.every_s = every_s
        self.clock = clock
        self.highest: dict[str, int] = {}
        self.pending: dict[str, int] = {}  # settled, its ack not yet sent
        self.published = 0
        # when each meter's ack was last sent, oldest first: `flush` reads only what is due
        self._sent_at: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, stored: dict[str, int]) -> None:
        with self._lock:
            now = self.clock()
            for meter_id, seq in stored.items():
                seq = max(seq, self.highest.get(meter_id, -1))
                self.highest[meter_id] = seq
                sent = self._sent_at.get(meter_id)
                if sent is None or now - sent >= self.every_s:
                    self.pending.pop(meter_id, None)
                    self._publish(meter_id, seq, now)
                else:
                    self.pending[meter_id] = seq

    def flush(self) -> None:
        """Send the pending acks whose interval has passed (the ingest worker calls this on
        every turn, also when no message came)."""
        with self._lock:
            now = self.clock()
            while self._sent_at:
                meter_id, sent = next(iter(self._sent_at.items()))
                if now - sent < self.every_s:
                    break
                del self._sent_at[meter_id]  # its next ack may go at once
                seq = self.pending.pop(meter_id, None)
                if seq is not None:
                    self._publish(meter_id, seq, now)

    def _publish(self, meter_id: str, seq: int, now: float) -> None:
        payload = encode_ack(Ack(meter_id, seq))
        self.client.publish(ack_topic(meter_id), payload, qos=1, retain=True)
        self._sent_at[meter_id] = now
        self._sent_at.move_to_end(meter_id)
        self.published += 1
