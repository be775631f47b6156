"""`heap.settle`: a server process's garbage collector, set once it has started (in a
process of its own here: the test run's collector stays as it is)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_settle_freezes_what_is_alive_and_collects_the_young_less_often() -> None:
    script = (
        "import gc, json\n"
        "import fastapi  # what a front imports: alive from here on\n"
        "before = gc.get_count()[2], gc.get_freeze_count()\n"
        "from gridtokenx import heap\n"
        "heap.settle()\n"
        "print(json.dumps([gc.get_threshold(), before[1], gc.get_freeze_count() > 10_000,"
        " gc.get_count()[1:]]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    threshold, frozen_before, frozen_after, counts = json.loads(out)
    assert threshold == [50_000, 20, 10]
    assert (frozen_before, frozen_after) == (0, True)
    assert counts == [0, 0]  # collected once: older generations start empty
