"""`gridtokenx sim run`: a SimBench neighbourhood's meters, without any hardware.

Emulated chips follow the households' profiles and the power flow; the unchanged firmware
runs for each on the MicroPython unix port and publishes signed readings to a broker. With
`serial`, each chip is on a serial line of its own (a pseudo-terminal) and the firmware runs
as on a Raspberry Pi: CPython, the Linux port layer, pyserial.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from gridtokenx.sim.devices import ChipServer, PtyChipServer
from gridtokenx.sim.fleet import Fleet
from gridtokenx.sim.grid import Grid, load_pandapower, load_simbench
from gridtokenx.sim.meters import GridMeters


def build_grid(
    grid_code: str,
    profiles: str | None = None,
    pv_share: float = 0.3,
    battery_share: float = 0.1,
    seed: int = 1,
) -> Grid:
    """A SimBench code (or a pandapower JSON path with a CSV of profiles), with pvlib PV
    and batteries added to a share of the households."""
    from gridtokenx.sim.households import BatteryConfig, PVConfig, equip

    grid = load_pandapower(grid_code, profiles) if profiles else load_simbench(grid_code)
    pv = PVConfig(share=pv_share) if pv_share > 0 else None
    battery = BatteryConfig(share=battery_share) if battery_share > 0 else None
    equipped, _ = equip(grid, pv, battery, seed=seed)
    return equipped


def run(
    grid_code: str | Grid,
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
    in_process: bool = False,
    ack: bool = True,
    serial: bool = False,
) -> GridMeters:
    grid = load_simbench(grid_code) if isinstance(grid_code, str) else grid_code
    physics = GridMeters.create(grid, households, speed, start_step)
    physics.record = record
    if in_process:
        return _run_in_process(physics, mqtt_host, mqtt_port, data, interval_s, stop, duration)
    # one RS485 line for all (RTU over TCP), or a serial line per meter (a Pi each)
    lines = [PtyChipServer([m.chip]).start() for m in physics.homes] if serial else []
    chips = ChipServer([m.chip for m in physics.homes]).start()
    clock = threading.Thread(target=physics.run, args=(stop,), daemon=True)
    fleet = Fleet(data, chips.address, mqtt_host, mqtt_port, interval_s, ack, linux=serial)
    try:
        keys = data / "meters.tsv"
        with keys.open("w") as f:
            for k, m in enumerate(physics.homes):
                meter = fleet.add(m.home.meter_id, m.chip, lines[k].device if serial else None)
                f.write(f"{meter.meter_id}\t{meter.public_key}\t{m.home.bus}\n")
        clock.start()
        fleet.start()
        print(
            f"{len(physics.homes)} meters of {grid.code} publish to "
            f"mqtt://{mqtt_host}:{mqtt_port} (time x{speed:g}); ids and public keys: {keys}",
            flush=True,
        )
        wait(stop, duration)
    finally:
        stop.set()
        fleet.stop()
        chips.stop()
        for line in lines:
            line.stop()
    return physics


def _run_in_process(
    physics: GridMeters,
    mqtt_host: str,
    mqtt_port: int,
    data: Path,
    interval_s: float,
    stop: threading.Event,
    duration: float,
) -> GridMeters:
    from gridtokenx.sim.inprocess import InProcessFleet

    data.mkdir(parents=True, exist_ok=True)
    fleet = InProcessFleet(physics, mqtt_host, mqtt_port, interval_s)
    fleet.write_keys(data / "meters.tsv")
    clock = threading.Thread(target=physics.run, args=(stop,), daemon=True)
    meters = threading.Thread(target=fleet.run, args=(stop,), daemon=True)
    clock.start()
    meters.start()
    print(
        f"{len(physics.homes)} in-process meters of {physics.grid.code} publish to "
        f"mqtt://{mqtt_host}:{mqtt_port}; ids and public keys: {data / 'meters.tsv'}",
        flush=True,
    )
    wait(stop, duration)
    stop.set()
    meters.join(timeout=10)
    clock.join(timeout=10)
    return physics


def wait(stop: threading.Event, duration: float) -> None:
    """Until `stop` is set, or `duration` seconds have passed (0: no limit). Short waits,
    so that signal handlers run promptly."""
    deadline = time.monotonic() + duration if duration else None
    while not stop.wait(0.2):
        if deadline is not None and time.monotonic() >= deadline:
            return
