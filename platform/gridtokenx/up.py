"""`gridtokenx up` (what `make run` runs): the system with embedded defaults.

Today: an embedded MQTT broker (amqtt); households of a SimBench grid whose emulated meter
chips follow their load and PV profiles and the power flow's voltages; the real firmware on
the MicroPython unix port for each of them; the hub (its own process, as on a gateway) with
its household page; and the market demo clearing accelerated epochs. The platform API,
grid-aware clearing and the ledger join as their issues land.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from gridtokenx.hub.broker import EmbeddedBroker
from gridtokenx.sim.devices import ChipServer
from gridtokenx.sim.fleet import Fleet
from gridtokenx.sim.grid import DEFAULT_GRID, load_simbench
from gridtokenx.sim.meters import GridMeters

NOON_IN_JUNE = 96 * 160 + 44  # a sunny quarter hour of the SimBench year


def up(
    meters: int = 3,
    data: Path = Path("var/up"),
    mqtt_port: int = 1884,
    http_port: int = 8080,
    interval_s: int = 10,
    speed: float = 60.0,
    grid_code: str = DEFAULT_GRID,
    epoch_seconds: float = 2.0,
    duration: float = 0,
) -> None:
    """Start everything; stop cleanly on SIGINT/SIGTERM (or after `duration` seconds)."""
    data.mkdir(parents=True, exist_ok=True)
    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"loading the SimBench grid {grid_code} and its year of profiles...", flush=True)
    grid = load_simbench(grid_code)
    physics = GridMeters.create(grid, meters, speed, NOON_IN_JUNE)
    db = f"sqlite:///{(data / 'hub.db').resolve()}"
    broker = EmbeddedBroker(mqtt_port).start()
    chips = ChipServer([m.chip for m in physics.homes]).start()
    clock = threading.Thread(target=physics.run, args=(stop,), daemon=True)
    clock.start()
    fleet = Fleet(data, chips.address, "127.0.0.1", mqtt_port, interval_s)
    hub: subprocess.Popen[bytes] | None = None
    try:
        for m in physics.homes:
            meter = fleet.add(m.home.meter_id, m.chip)
            subprocess.run(  # the installer registers the key the meter made (once)
                [
                    sys.executable,
                    "-m",
                    "gridtokenx.hub",
                    "meter",
                    "add",
                    meter.meter_id,
                    "--pubkey",
                    meter.public_key,
                    "--approve",
                    "--household",
                    f"bus {m.home.bus}",
                    "--database",
                    db,
                ],
                capture_output=True,
            )
        hub = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridtokenx.hub",
                "run",
                "--database",
                db,
                "--mqtt-port",
                str(mqtt_port),
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(http_port),
                "--epoch-s",
                "60",
                "--key-file",
                str(data / "hub.key"),
                "--min-interval-s",
                str(interval_s // 2),
            ],
            stdout=(logs / "hub.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while "ready" not in (logs / "hub.log").read_text(errors="replace"):
            if hub.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the hub did not start; see {logs / 'hub.log'}")
            time.sleep(0.1)
        fleet.start()
        print(
            f"GridTokenX is up: {meters} households of {grid_code} with meters running the\n"
            f"firmware on emulated chips (simulated time x{speed:g} from a June noon),\n"
            f"  MQTT broker (embedded amqtt)  mqtt://127.0.0.1:{mqtt_port}\n"
            f"  hub household page           http://127.0.0.1:{http_port}/\n"
            f"  hub metrics                  http://127.0.0.1:{http_port}/metrics\n"
            f"  logs and data                {data}/\n"
            "The market demo below clears an accelerated epoch every "
            f"{epoch_seconds:g} s. Ctrl-C stops everything.",
            flush=True,
        )
        from gridtokenx.demo import run_demo

        run_demo(
            epochs=0,
            epoch_seconds=epoch_seconds,
            stop=stop,
            deadline=time.monotonic() + duration if duration else None,
        )
    finally:
        stop.set()
        fleet.stop()
        if hub is not None and hub.poll() is None:
            hub.send_signal(signal.SIGTERM)
            try:
                hub.wait(timeout=15)
            except subprocess.TimeoutExpired:
                hub.kill()
        chips.stop()
        broker.stop()
        print("everything stopped; readings are kept in the meters' flash and the hub's database")
