"""Scenario progress: plain lines (one per simulated day) off a terminal, a Rich bar with
the ETA on one."""

from __future__ import annotations

import io

from gridtokenx.scenarios.progress import bar, plain


def test_plain_lines_once_a_day_with_the_eta() -> None:
    out = io.StringIO()
    now = [100.0]
    report = plain("june", out, clock=lambda: now[0])
    for epoch in range(1, 3 * 96 + 1):
        now[0] += 0.5  # half a second an epoch
        report(epoch, 3 * 96)
    assert out.getvalue().splitlines() == [
        "june: day 1/3, 33%, 48s elapsed, ETA 1m36s",
        "june: day 2/3, 67%, 1m36s elapsed, ETA 48s",
        "june: day 3/3, 100%, 2m24s elapsed, ETA 0s",
    ]


def test_a_run_shorter_than_a_day_reports_its_end() -> None:
    out = io.StringIO()
    report = plain("short", out, clock=lambda: 0.0)
    for epoch in range(1, 11):
        report(epoch, 10)
    assert out.getvalue() == "short: day 1/1, 100%, 0s elapsed, ETA 0s\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_rich_bar_and_a_pipe_plain_lines() -> None:
    tty = Terminal()
    with bar("year", tty) as report:
        for epoch in range(1, 193):
            report(epoch, 192)
    drawn = tty.getvalue()
    assert "year" in drawn and "192/192" in drawn and "ETA" in drawn
    assert "\x1b[" in drawn  # drawn with terminal control codes, not lines
    pipe = io.StringIO()
    with bar("year", pipe) as report:
        for epoch in range(1, 193):
            report(epoch, 192)
    assert [line.split(",")[0] for line in pipe.getvalue().splitlines()] == [
        "year: day 1/2",
        "year: day 2/2",
    ]
