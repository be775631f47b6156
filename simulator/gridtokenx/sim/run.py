"""`gridtokenx sim run`: a SimBench neighbourhood's meters, without any hardware.

Emulated chips follow the households' profiles and the power flow; the unchanged firmware
runs for each on the MicroPython unix port and publishes signed readings to a broker.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from gridtokenx.sim.devices import ChipServer
from gridtokenx.sim.fleet import Fleet
from gridtokenx.sim.grid import load_simbench
from gridtokenx.sim.meters import GridMeters


def run(
    grid_code: str,
    households: int,
    speed: float,
    mqtt_host: str,
    mqtt_port: int,
    data: Path,
    interval_s: float,
    start_step: int,
    stop: threading.Event,
    duration: float = 0,
    record: bool = False,
) -> GridMeters:
    grid = load_simbench(grid_code)
    physics = GridMeters.create(grid, households, speed, start_step)
    physics.record = record
    chips = ChipServer([m.chip for m in physics.homes]).start()
    clock = threading.Thread(target=physics.run, args=(stop,), daemon=True)
    fleet = Fleet(data, chips.address, mqtt_host, mqtt_port, interval_s)
    try:
        keys = data / "meters.tsv"
        with keys.open("w") as f:
            for m in physics.homes:
                meter = fleet.add(m.home.meter_id, m.chip)
                f.write(f"{meter.meter_id}\t{meter.public_key}\t{m.home.bus}\n")
        clock.start()
        fleet.start()
        print(
            f"{len(physics.homes)} meters of {grid_code} publish to "
            f"mqtt://{mqtt_host}:{mqtt_port} (time x{speed:g}); ids and public keys: {keys}",
            flush=True,
        )
        deadline = time.monotonic() + duration if duration else None
        while not stop.wait(0.2):
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        stop.set()
        fleet.stop()
        chips.stop()
    return physics
