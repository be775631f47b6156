"""Named points where a test may kill the platform, to prove a crash there loses nothing.

`GTX_CRASH_AT=<name>` makes the process kill itself with SIGKILL when it reaches that
point, exactly as a power cut or `kill -9` would (no handler, no flush, no cleanup).
Unset, `reached` is one dictionary lookup. The points, in an order's placement:

- `order.intent`: a batch's escrow intent rows are committed, nothing is on the chain yet;
- `order.escrowed`: the batch's escrow transfers landed on the chain, no order row is
  written.
"""

from __future__ import annotations

import os
import signal

ENV = "GTX_CRASH_AT"


def reached(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
