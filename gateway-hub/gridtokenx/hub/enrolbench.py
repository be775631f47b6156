"""`gridtokenx bench enrol`: registering N meters (approved, each an MQTT password, the
broker's files rewritten) one `hub meter add` process per meter, as `gridtokenx up` did,
against one batch (`enrol`), as it does now. Each on a fresh SQLite database."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from gridtokenx.hub.enrol import Enrolment, enrol
from gridtokenx.hub.store import HubStore, connect


def run(meters: int) -> dict[str, Any]:
    keys = {f"hh-{k:03d}": bytes(SigningKey.generate().verify_key) for k in range(1, meters + 1)}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        one_by_one = f"sqlite:///{base / 'one.db'}"
        HubStore(connect(one_by_one)).engine.dispose()  # migrated, as `up` finds it
        started = time.perf_counter()
        for meter_id, key in keys.items():
            subprocess.run(
                [
                    *(sys.executable, "-m", "gridtokenx.hub", "meter", "add", meter_id),
                    *("--pubkey", key.hex(), "--approve", "--database", one_by_one),
                    *("--broker-auth", str(base / "auth-one")),
                ],
                check=True,
                capture_output=True,
                env={**os.environ},
            )
        per_meter_s = time.perf_counter() - started
        store = HubStore(connect(f"sqlite:///{base / 'batch.db'}"))
        started = time.perf_counter()
        enrol(store, [Enrolment(m, k) for m, k in keys.items()], base / "auth-batch")
        batch_s = time.perf_counter() - started
        store.engine.dispose()
    return {
        "meters": meters,
        "process_per_meter_s": round(per_meter_s, 3),
        "batch_s": round(batch_s, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
