"""Epoch windows and lifecycle."""

from __future__ import annotations

import pytest

from gridtokenx.market.epochs import Epoch, EpochStatus
from gridtokenx.market.errors import InvalidTransition


def test_quarter_hour_alignment() -> None:
    e = Epoch.at(1_767_226_499)  # 2026-01-01T00:14:59Z
    assert (e.start, e.end) == (1_767_225_600, 1_767_226_500)
    assert Epoch.at(1_767_226_500).number == e.number + 1
    fast = Epoch.at(125, length_s=60)
    assert (fast.start, fast.end) == (120, 180)


def test_happy_lifecycle() -> None:
    e = Epoch(10)
    for event, status in [
        ("open", EpochStatus.OPEN),
        ("close", EpochStatus.CLOSED),
        ("clear", EpochStatus.CLEARED),
        ("settle", EpochStatus.SETTLED),
    ]:
        e = e.apply(event)
        assert e.status is status


def test_halt_resume_returns_to_where_it_was() -> None:
    e = Epoch(1).apply("open").apply("close").apply("halt")
    assert e.status is EpochStatus.HALTED and e.halted_from is EpochStatus.CLOSED
    assert e.apply("resume").status is EpochStatus.CLOSED


@pytest.mark.parametrize(
    "events",
    [["close"], ["open", "settle"], ["open", "open"], ["halt"], ["open", "resume"]],
)
def test_illegal_transitions(events: list[str]) -> None:
    e = Epoch(1)
    with pytest.raises(InvalidTransition):
        for event in events:
            e = e.apply(event)


def test_fail_from_anywhere_but_final() -> None:
    assert Epoch(1).apply("open").apply("fail").status is EpochStatus.FAILED
    settled = Epoch(1).apply("open").apply("close").apply("clear").apply("settle")
    with pytest.raises(InvalidTransition):
        settled.apply("fail")


def test_due_events_follow_the_clock() -> None:
    e = Epoch(2, length_s=60)
    assert e.due(119) == []
    assert e.due(120) == ["open"]
    assert e.due(180) == ["open", "close"]
    assert e.apply("open").due(150) == []
