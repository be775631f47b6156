"""Acknowledgements to the meters: after a batch is committed, each meter in it learns the
highest sequence number the hub has settled for it (docs/wire-format.md section 4.1).

Settled means the hub holds a final decision about a reading signed by the meter's own
key: stored (accepted, or a duplicate of what is stored), or refused by a rule that the
same bytes can never pass (replayed, backdated, ...). A reading refused before its
signature was checked (unknown, pending or suspended meter, bad signature) is not
settled: it stays in the meter's ring and is sent again, e.g. once the meter is approved.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import paho.mqtt.client as mqtt

from gridtokenx.hub.rules import Decision
from gridtokenx.wire.ack import Ack, ack_topic, encode_ack


def settled(decisions: Sequence[Decision]) -> dict[str, int]:
    """The highest settled seq per meter among a committed batch's decisions."""
    out: dict[str, int] = {}
    for d in decisions:
        r = d.reading
        # `reading` is set only once the envelope verified with the topic meter's key;
        # topic_mismatch is a reading of another meter id, which this meter cannot settle
        if r is None or d.reason == "topic_mismatch":
            continue
        if r.seq > out.get(r.meter_id, -1):
            out[r.meter_id] = r.seq
    return out


class AckPublisher:
    """Publishes each meter's ack, retained at QoS 1, never going backwards."""

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
                self.client.publish(ack_topic(meter_id), payload, qos=1, retain=True)
                self.published += 1
