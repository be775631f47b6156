"""`gridtokenx up` (what `make run` runs): the system with embedded defaults.

Today: an embedded MQTT broker (amqtt), emulated meter chips, the real firmware on the
MicroPython unix port for each household, the hub (its own process, as on a gateway) with
its household page, and the market demo clearing accelerated epochs. The platform API,
grid physics and ledger join as their issues land.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from gridtokenx.provision import FIRMWARE, _tool
from gridtokenx.sim.devices import ChipServer, EmulatedChip


class EmbeddedBroker:
    """amqtt in a background thread: MQTT without installing Mosquitto."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._broker: object | None = None

    def start(self) -> EmbeddedBroker:
        from amqtt.broker import Broker

        self._thread.start()

        async def start() -> None:
            config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}}}
            broker = Broker(config, loop=self._loop)
            await broker.start()
            self._broker = broker

        asyncio.run_coroutine_threadsafe(start(), self._loop).result(timeout=20)
        return self

    def stop(self) -> None:
        async def stop() -> None:
            if self._broker is not None:
                await self._broker.shutdown()  # type: ignore[attr-defined]

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)


@dataclass
class Household:
    meter_id: str
    chip: EmulatedChip
    power_w: int  # positive: drawing from the grid; negative: exporting (solar)


def households(count: int) -> list[Household]:
    out = []
    for k in range(count):
        solar = k % 3 == 0
        chip = EmulatedChip("sdm120" if solar else "pzem004t", unit=k + 1)
        chip.update(
            import_wh=1_000 * (k + 1),
            voltage_dv=2300,
            current_ma=2_000,
            pf_milli=980,
            freq_chz=5000,
        )
        out.append(Household(f"house-{k + 1:02d}", chip, -1_500 if solar else 300 + 150 * k))
    return out


def advance(homes: list[Household], stop: threading.Event, speed: float) -> None:
    """Turn each household's power into register counts, `speed` times real time."""
    carry = {h.meter_id: [0.0, 0.0] for h in homes}
    last = time.monotonic()
    while not stop.wait(0.5):
        now = time.monotonic()
        hours = (now - last) * speed / 3600
        last = now
        for h in homes:
            acc = carry[h.meter_id]
            acc[0 if h.power_w > 0 else 1] += abs(h.power_w) * hours
            whole = [int(acc[0]), int(acc[1])]
            acc[0] -= whole[0]
            acc[1] -= whole[1]
            v = h.chip.values
            h.chip.update(
                import_wh=v.import_wh + whole[0],
                export_wh=v.export_wh + whole[1],
                current_ma=abs(h.power_w) * 1000 // 230,
                power_dw=abs(h.power_w) * 10,
            )


def up(
    meters: int = 3,
    data: Path = Path("var/up"),
    mqtt_port: int = 1884,
    http_port: int = 8080,
    interval_s: int = 10,
    epoch_seconds: float = 2.0,
    duration: float = 0,
) -> None:
    """Start everything; stop cleanly on SIGINT/SIGTERM (or after `duration` seconds)."""
    data.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    micropython = _tool("micropython")
    db = f"sqlite:///{(data / 'hub.db').resolve()}"
    homes = households(meters)
    broker = EmbeddedBroker(mqtt_port).start()
    chips = ChipServer([h.chip for h in homes]).start()
    procs: list[subprocess.Popen[bytes]] = []
    physics = threading.Thread(target=advance, args=(homes, stop, 1.0), daemon=True)
    physics.start()
    env = dict(os.environ, MICROPYPATH=f"{FIRMWARE}:{FIRMWARE / 'lib'}")
    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    try:
        for h in homes:
            flash = data / h.meter_id
            flash.mkdir(exist_ok=True)
            config = data / f"{h.meter_id}.json"
            config.write_text(
                json.dumps(
                    {
                        "meter_id": h.meter_id,
                        "chip": h.chip.chip,
                        "unit": h.chip.unit,
                        "uart": {"tcp": chips.address, "timeout_ms": 100},
                        "broker": {"host": "127.0.0.1", "port": mqtt_port},
                        "interval_s": interval_s,
                        "heartbeat_s": 30,
                        "data_dir": str(flash.resolve()),
                    }
                )
            )
            # first boot makes the meter's key; the installer registers its public key
            subprocess.run(
                [micropython, "-c", f"from gtx import keys; keys.load_or_create({str(flash)!r})"],
                env=env,
                check=True,
                capture_output=True,
            )
            pubkey = (flash / "meter.pub").read_text().strip()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "gridtokenx.hub",
                    "meter",
                    "add",
                    h.meter_id,
                    "--pubkey",
                    pubkey,
                    "--approve",
                    "--household",
                    f"household {h.meter_id[-2:]}",
                    "--database",
                    db,
                ],
                capture_output=True,
            )  # already registered on a second run: fine
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
        procs.append(hub)
        deadline = time.monotonic() + 60
        while "ready" not in (logs / "hub.log").read_text(errors="replace"):
            if hub.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the hub did not start; see {logs / 'hub.log'}")
            time.sleep(0.1)
        for h in homes:
            procs.append(
                subprocess.Popen(
                    [micropython, str(FIRMWARE / "main.py"), str(data / f"{h.meter_id}.json")],
                    env=env,
                    stdout=(logs / f"{h.meter_id}.log").open("ab"),
                    stderr=subprocess.STDOUT,
                )
            )
        print(
            f"GridTokenX is up: {meters} meters running the firmware on emulated chips,\n"
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
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        chips.stop()
        broker.stop()
        print("everything stopped; readings are kept in the meters' flash and the hub's database")
