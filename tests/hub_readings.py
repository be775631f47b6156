"""Signed readings for the hub's tests: one meter's key, a reading at a fixed time, its
envelope, and the hub's rules run over payloads (shared by test_hub_rules and test_metrics)."""

from __future__ import annotations

from nacl.signing import SigningKey

from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.rules import RuleConfig
from gridtokenx.hub.store import HubStore
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic

NOW = 1_767_225_600
KEY = SigningKey(bytes(range(32)))


def reading(
    seq: int = 1, ts: int = NOW - 600, imp: int = 1_000, exp: int = 0, **kw: int
) -> Reading:
    return Reading("m1", seq, ts, imp, exp, 60, 2300, 1000, 1000, 5000, **kw)


def sealed(r: Reading, key: SigningKey = KEY) -> bytes:
    return envelope.seal(encode(r), READING_DOMAIN, key)


def ingest(store: HubStore, *payloads: bytes, topic: str = reading_topic("m1")) -> list[str]:
    hub = Ingestor(store, RuleConfig(min_interval_s=10), clock=lambda: NOW)
    return [d.reason or d.verdict.value for d in hub.ingest([(topic, p) for p in payloads])]
