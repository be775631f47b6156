"""Progress of a scenario run: a Rich bar with ETA on a terminal, plain lines otherwise
(a log file or CI gets one line per simulated day, not a redrawn bar)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

EPOCHS_PER_DAY = 96

Report = Callable[[int, int], None]  # (epochs done, epochs in all)


def _eta(seconds: float) -> str:
    whole = round(seconds)
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    if whole >= 60:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole}s"


def plain(label: str, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> Report:
    """One line per simulated day (and at the end): done, share, elapsed, ETA."""
    started = clock()

    def report(done: int, total: int) -> None:
        if done % EPOCHS_PER_DAY and done != total:
            return
        elapsed = clock() - started
        eta = elapsed / done * (total - done) if done else 0.0
        day, days = -(-done // EPOCHS_PER_DAY), -(-total // EPOCHS_PER_DAY)
        stream.write(
            f"{label}: day {day}/{days}, {done / total:.0%}, "
            f"{_eta(elapsed)} elapsed, ETA {_eta(eta)}\n"
        )
        stream.flush()

    return report


@contextmanager
def bar(label: str, stream: TextIO | None = None) -> Iterator[Report]:
    """A reporter for `scenarios.run.run(progress=...)`: Rich on a terminal, else `plain`."""
    out = sys.stderr if stream is None else stream
    if not out.isatty():
        yield plain(label, out)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(file=out),
        transient=False,
    ) as rich_bar:
        task = rich_bar.add_task(label, total=None)

        def report(done: int, total: int) -> None:
            rich_bar.update(task, completed=done, total=total)

        yield report
