"""Market epochs: UTC-aligned windows and their lifecycle, as a pure state machine.

    pending -> open -> closed -> cleared -> settled
    open | closed | cleared -> halted -> (resume) back to where it was halted
    any state but settled -> failed

A later layer persists Epoch values; nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from gridtokenx.market.errors import InvalidTransition

EPOCH_SECONDS = 900


class EpochStatus(StrEnum):
    PENDING = "pending"
    OPEN = "open"
    CLOSED = "closed"
    CLEARED = "cleared"
    SETTLED = "settled"
    HALTED = "halted"
    FAILED = "failed"


_NEXT = {
    (EpochStatus.PENDING, "open"): EpochStatus.OPEN,
    (EpochStatus.OPEN, "close"): EpochStatus.CLOSED,
    (EpochStatus.CLOSED, "clear"): EpochStatus.CLEARED,
    (EpochStatus.CLEARED, "settle"): EpochStatus.SETTLED,
}
_HALTABLE = frozenset({EpochStatus.OPEN, EpochStatus.CLOSED, EpochStatus.CLEARED})
_FINAL = frozenset({EpochStatus.SETTLED, EpochStatus.FAILED})


@dataclass(frozen=True)
class Epoch:
    """Epoch `number` covers [start, end) in Unix seconds; start = number * length."""

    number: int
    length_s: int = EPOCH_SECONDS
    status: EpochStatus = EpochStatus.PENDING
    halted_from: EpochStatus | None = None

    @property
    def start(self) -> int:
        return self.number * self.length_s

    @property
    def end(self) -> int:
        return self.start + self.length_s

    @classmethod
    def at(cls, unix_s: int, length_s: int = EPOCH_SECONDS) -> Epoch:
        """The epoch whose window holds `unix_s`; with 900 s, UTC quarter hours."""
        if length_s <= 0:
            raise ValueError("epoch length must be positive")
        return cls(number=unix_s // length_s, length_s=length_s)

    def apply(self, event: str) -> Epoch:
        """The epoch after `event` (open, close, clear, settle, halt, resume, fail)."""
        if event == "halt" and self.status in _HALTABLE:
            return replace(self, status=EpochStatus.HALTED, halted_from=self.status)
        if event == "resume" and self.status is EpochStatus.HALTED:
            assert self.halted_from is not None
            return replace(self, status=self.halted_from, halted_from=None)
        if event == "fail" and self.status not in _FINAL:
            return replace(self, status=EpochStatus.FAILED, halted_from=None)
        following = _NEXT.get((self.status, event))
        if following is None:
            raise InvalidTransition(
                "invalid_transition",
                f"epoch {self.number}: cannot {event} when {self.status.value}",
            )
        return replace(self, status=following)

    def due(self, unix_s: int) -> list[str]:
        """The time-driven events that are due at `unix_s` (open at start, close at end)."""
        events = []
        status = self.status
        if status is EpochStatus.PENDING and unix_s >= self.start:
            events.append("open")
            status = EpochStatus.OPEN
        if status is EpochStatus.OPEN and unix_s >= self.end:
            events.append("close")
        return events
