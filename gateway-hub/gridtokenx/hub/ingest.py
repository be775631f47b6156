"""The ingest use case: decide about a batch of messages and store the decisions.

The hub is the only writer of its readings, so the heads (each meter's newest accepted
reading) are cached here and advanced in memory as a batch is decided in order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from gridtokenx.hub.rules import Decision, Meter, Previous, RuleConfig, Verdict, follow, parse
from gridtokenx.hub.store import HubStore, Received
from gridtokenx.wire.topics import meter_of

METER_CACHE_S = 5.0
PARSE_CHUNK = 64


@dataclass
class Counters:
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


class Ingestor:
    def __init__(
        self,
        store: HubStore,
        config: RuleConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config or RuleConfig()
        self.clock = clock
        self.counters = Counters()
        self._meters: dict[str, Meter] = {}
        self._meters_at = -1e9
        self._heads: dict[str, Previous | None] = {}
        self._pool = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 2, thread_name_prefix="verify"
        )

    def _meter(self, meter_id: str) -> Meter | None:
        # Registrations change from other processes (CLI, API): re-read the meters every
        # METER_CACHE_S, and for an unknown meter at most twice a second.
        age = time.monotonic() - self._meters_at
        if age > METER_CACHE_S or (meter_id not in self._meters and age > 0.5):
            self._meters = {m.meter_id: m for m in self.store.meters()}
            self._meters_at = time.monotonic()
        return self._meters.get(meter_id)

    def _stored(self, parsed: Decision, batch: dict[tuple[str, int], bytes]) -> bool:
        assert parsed.reading is not None
        key = (parsed.reading.meter_id, parsed.reading.seq)
        raw = batch.get(key) or self.store.stored_raw(*key)
        return raw == parsed.raw

    def ingest(self, messages: Sequence[tuple[str, bytes]]) -> list[Decision]:
        """Decide and durably record a batch of (topic, payload) messages, in order."""
        now = int(self.clock())
        wanted = {m for t, _ in messages if (m := meter_of(t)) and m not in self._heads}
        if wanted:
            found = self.store.heads(wanted)
            for meter_id in wanted:
                self._heads[meter_id] = found.get(meter_id)
        received = []
        decisions = []
        batch: dict[tuple[str, int], bytes] = {}  # accepted in this batch, not yet stored
        owners = [meter_of(topic) or "" for topic, _ in messages]
        meters = [self._meter(m) for m in owners]
        # Signatures and CBOR first, in parallel (libsodium releases the GIL) ...
        parsed = list(
            self._pool.map(parse, owners, [p for _, p in messages], meters, chunksize=PARSE_CHUNK)
        )
        # ... then the history rules, in order, each reading against the one before it.
        for (_, payload), topic_meter, meter, first in zip(
            messages, owners, meters, parsed, strict=True
        ):
            decision = first
            if meter is not None and first.accepted:
                decision = follow(first, meter, self._heads.get(topic_meter), now, self.config)
                if decision.reason == "replayed" and self._stored(first, batch):
                    # a redelivery of a reading already stored (e.g. the hub died between
                    # commit and acknowledgement), not a replay attack
                    decision = replace(first, verdict=Verdict.DUPLICATE, reason="duplicate")
            if decision.accepted and decision.reading is not None:
                r = decision.reading
                batch[(r.meter_id, r.seq)] = decision.raw
                self._heads[topic_meter] = Previous(
                    r.seq, r.ts, r.import_wh, r.export_wh, decision.raw
                )
            decisions.append(decision)
            received.append(Received(topic_meter, payload, decision, now))
        try:
            self.store.record(received)
        except Exception:
            self._heads.clear()  # the cache may be ahead of the database: reload it
            raise
        for d in decisions:
            if d.verdict is Verdict.ACCEPTED:
                self.counters.accepted += 1
            elif d.verdict is Verdict.DUPLICATE:
                self.counters.duplicates += 1
            else:
                self.counters.rejected[d.reason] = self.counters.rejected.get(d.reason, 0) + 1
        return decisions
