"""The ingest use case: decide about a batch of messages and store the decisions.

The hub is the only writer of its readings, so the heads (each meter's newest accepted
reading) are cached here and advanced in memory as a batch is decided in order.

Each message is decided on its own: a bug met while deciding one (any exception from the
rules) makes that message an `internal_error` rejection, logged and counted, and the rest
of the batch goes on. Only database errors leave `ingest` (the caller retries the batch).

A batch is decided in two steps so that a caller may overlap them (`MqttIngest` does):
`prepare` starts the pure part (envelope, CBOR, signature: `rules.parse`) on the verify pool
and returns at once; `finish` waits for it, applies the history rules in order against the
heads and commits. While batch N is in `finish`, batch N+1's `prepare` already runs on the
pool; `finish` calls must come in `prepare` order, from one thread (the single writer).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from gridtokenx.hub.metrics import IngestMetrics
from gridtokenx.hub.rules import (
    Decision,
    Meter,
    Previous,
    RuleConfig,
    Verdict,
    follow,
    parse,
    reject,
)
from gridtokenx.hub.store import DATABASE_ERRORS, HubStore, Received
from gridtokenx.wire.topics import meter_of

log = logging.getLogger("gridtokenx.hub.ingest")

METER_CACHE_S = 5.0
PARSE_CHUNK = 128


@dataclass
class Counters:
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


def _internal_error(exc: Exception) -> Decision:
    log.error("internal error deciding a message", exc_info=exc)
    return reject("internal_error", exc.__class__.__name__)


def _parse(topic_meter: str, payload: bytes, meter: Meter | None) -> Decision:
    try:
        return parse(topic_meter, payload, meter)
    except Exception as exc:  # a bug must cost one message, not the batch
        return _internal_error(exc)


def _parse_all(work: Sequence[tuple[str, bytes, Meter | None]]) -> list[Decision]:
    return [_parse(*item) for item in work]


@dataclass
class Prepared:
    """A batch whose pure checks were started by `Ingestor.prepare` (see `Ingestor.finish`).

    `parts` holds the parse results per chunk (futures of the verify pool); None when the
    meters could not be read (a database error): `finish` then does everything itself."""

    messages: Sequence[tuple[str, bytes]]
    started: float
    owners: list[str] = field(default_factory=list)
    meters: list[Meter | None] = field(default_factory=list)
    parts: list[Future[list[Decision]]] | None = None

    def parsed(self) -> list[Decision]:
        assert self.parts is not None
        return [d for part in self.parts for d in part.result()]


def settled(decisions: Sequence[Decision]) -> dict[str, int]:
    """The highest settled seq per meter among a committed batch's decisions: what the hub
    acknowledges to the meters (docs/wire-format.md section 4.1, `acks.py`).

    Settled means a final decision about a reading signed by the meter's own key: stored
    (accepted, or a duplicate of what is stored), or refused by a rule that the same bytes can
    never pass (replayed, backdated, ...). A reading refused before its signature was checked
    (unknown, pending or suspended meter, bad signature) is not settled: it stays in the
    meter's ring and is sent again, e.g. once the meter is approved."""
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


class Ingestor:
    """Decides and stores batches. `on_stored`, if given, is called after each commit with
    `settled(decisions)` of the batch (the meters' end-to-end acks; `MqttIngest` sets it to
    `acks.AckPublisher`); an exception it raises is logged, never retried."""

    def __init__(
        self,
        store: HubStore,
        config: RuleConfig | None = None,
        clock: Callable[[], float] = time.time,
        on_stored: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.store = store
        self.on_stored = on_stored
        self.config = config or RuleConfig()
        self.clock = clock
        self.counters = Counters()
        self.metrics = IngestMetrics()
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
        """Decide and durably record a batch of (topic, payload) messages, in order.

        Raises only database errors (DATABASE_ERRORS): then nothing of the batch is stored
        and the caller may retry it whole."""
        return self.finish(self.prepare(messages))

    def prepare(self, messages: Sequence[tuple[str, bytes]]) -> Prepared:
        """Start the pure checks of a batch on the verify pool and return at once.

        Never raises: what cannot be started here (the meters cannot be read, a bug) is
        done by `finish`, which raises or isolates it as `ingest` describes."""
        prepared = Prepared(messages, time.perf_counter())
        try:
            owners = [meter_of(topic) or "" for topic, _ in messages]
            meters = [self._meter(m) for m in owners]
        except Exception:  # database errors included: `finish` meets them again, and retries
            return prepared
        work = list(zip(owners, [p for _, p in messages], meters, strict=True))
        # one task per chunk: a future per message cost as much as its signature
        chunks = [work[k : k + PARSE_CHUNK] for k in range(0, len(work), PARSE_CHUNK)]
        prepared.owners, prepared.meters = owners, meters
        prepared.parts = [self._pool.submit(_parse_all, chunk) for chunk in chunks]
        return prepared

    def finish(self, prepared: Prepared) -> list[Decision]:
        """Wait for `prepared`'s checks, apply the history rules and commit: `ingest`'s
        contract. After a database error the same `prepared` may be finished again (its
        checks are kept; only the heads are reloaded)."""
        messages, start = prepared.messages, prepared.started
        try:
            decisions = self._ingest(prepared)
        except DATABASE_ERRORS:
            self._heads.clear()  # the cache may be ahead of the database: reload it
            raise
        except Exception as exc:  # a bug outside the per-message checks: isolate it
            self._heads.clear()
            if len(messages) > 1:
                log.error("internal error in a batch; deciding its messages one by one")
                return [d for m in messages for d in self.ingest([m])]
            decisions = [_internal_error(exc)]
            topic, payload = messages[0]
            kept = bytes(payload) if isinstance(payload, bytes | bytearray | memoryview) else b""
            meter = meter_of(topic) if isinstance(topic, str) else None
            try:
                self.store.record([Received(meter or "", kept, decisions[0], int(self.clock()))])
            except DATABASE_ERRORS:
                raise
            except Exception:  # not even the rejection can be written: log it, go on
                log.exception("could not record an internal error; the message is dropped")
        self._count(decisions)
        self.metrics.seconds.observe(time.perf_counter() - start)
        self.metrics.batch.observe(len(messages))
        if self.on_stored is not None:
            stored = settled(decisions)
            if stored:
                try:
                    self.on_stored(stored)
                except Exception:
                    log.exception("on_stored failed (the readings are stored)")
        return decisions

    def _ingest(self, prepared: Prepared) -> list[Decision]:
        now = int(self.clock())
        messages = prepared.messages
        if prepared.parts is None:  # `prepare` could not start: do it here, synchronously
            owners = [meter_of(topic) or "" for topic, _ in messages]
            meters = [self._meter(m) for m in owners]
            work = list(zip(owners, [p for _, p in messages], meters, strict=True))
            parsed = _parse_all(work)
        else:  # Signatures and CBOR were checked in parallel (libsodium releases the GIL) ...
            owners, meters, parsed = prepared.owners, prepared.meters, prepared.parsed()
        wanted = {m for m in owners if m and m not in self._heads}
        if wanted:
            found = self.store.heads(wanted)
            for meter_id in wanted:
                self._heads[meter_id] = found.get(meter_id)
        received = []
        decisions = []
        batch: dict[tuple[str, int], bytes] = {}  # accepted in this batch, not yet stored
        # ... then the history rules, in order, each reading against the one before it.
        for (_, payload), topic_meter, meter, first in zip(
            messages, owners, meters, parsed, strict=True
        ):
            decision = first
            if meter is not None and first.accepted:
                try:
                    decision = follow(first, meter, self._heads.get(topic_meter), now, self.config)
                except Exception as exc:  # a bug must cost one message, not the batch
                    decision = _internal_error(exc)
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
        self.store.record(received)
        return decisions

    def _count(self, decisions: Sequence[Decision]) -> None:
        per: dict[tuple[str, str], int] = {}
        for d in decisions:
            key = (d.verdict.value, d.reason or "ok")
            per[key] = per.get(key, 0) + 1
        for (verdict, reason), n in per.items():
            self.metrics.decisions.labels(verdict, reason).inc(n)
        for d in decisions:
            if d.verdict is Verdict.ACCEPTED:
                self.counters.accepted += 1
            elif d.verdict is Verdict.DUPLICATE:
                self.counters.duplicates += 1
            else:
                self.counters.rejected[d.reason] = self.counters.rejected.get(d.reason, 0) + 1
