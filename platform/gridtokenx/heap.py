"""The garbage collector set for a long-running server process (the core, a front) and for
the bench's client: what is alive once started is frozen out of every later collection,
and the youngest generation is collected less often.

Why: a full collection walks every tracked object. In a front, the imports alone (FastAPI,
pydantic, uvicorn) made each one ~80-110 ms, every few seconds under load, and each such
pause held up every request in flight: the bench's p99 was those pauses (measured). A
request allocates thousands of objects that die with it: collecting the youngest
generation every 50,000 allocations instead of 700 took the group commit's time in
collections from ~10% to ~1% (measured)."""

from __future__ import annotations

import gc

THRESHOLD = (50_000, 20, 10)  # `gc.set_threshold` (Python's default: 700, 10, 10)


def settle() -> None:
    """Collect once, freeze what survived (the process's long-lived objects), then the
    thresholds above."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLD)
