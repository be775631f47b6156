"""Acknowledgements to the meters: after a batch is committed, each meter in it learns the
highest sequence number the hub has settled for it (docs/wire-format.md section 4.1; what
counts as settled is `ingest.settled`, which the ingest use case hands to this publisher).

Acks go out at QoS 0: each is cumulative and retained, so one lost on the way is superseded
by the meter's next ack, or by the retained one it gets on reconnecting; a meter that heard
none re-sends its reading after `ack_timeout_s`, and the duplicate is acknowledged again. One
ack per meter per committed batch (`settled` keeps each meter's highest seq only).
"""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt

from gridtokenx.wire.ack import Ack, ack_topic, encode_ack

ACK_QOS = 0


class AckPublisher:
    """Publishes each meter's ack, retained at QoS 0, never going backwards (the same seq
    again is published again: it may answer a meter that missed the first one)."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self.highest: dict[str, int] = {}
        self.published = 0
        self._lock = threading.Lock()

    def __call__(self, stored: dict[str, int]) -> None:
        with self._lock:
            for meter_id, seq in stored.items():
                seq = max(seq, self.highest.get(meter_id, -1))
                self.highest[meter_id] = seq
                payload = encode_ack(Ack(meter_id, seq))
                self.client.publish(ack_topic(meter_id), payload, qos=ACK_QOS, retain=True)
                self.published += 1
