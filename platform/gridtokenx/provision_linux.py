"""Installing the meter firmware on a Linux computer (Raspberry Pi) as a systemd service.

The same firmware as on an ESP32 (gtx/, lib/) runs under the system's CPython with
pyserial, through its Linux port layer firmware/linux/gtx_linux.py. `install_linux`
writes, under `root` (`/` on the Pi itself, or a mounted SD card's root filesystem):

- PREFIX/ (default /opt/gridtokenx-meter): gtx/, lib/ and linux/ as source;
- /etc/gridtokenx-meter/config.json (0600: it holds the meter's MQTT password), with
  `data_dir` set to the service's state directory, and the site CA (ca.der) beside it when
  the config uses TLS;
- /etc/systemd/system/gridtokenx-meter.service.

The service runs as a dynamic user in the `dialout` group (the serial adapter), gets the
config through systemd's LoadCredential (readable by that user only), keeps the meter's
key and ring in /var/lib/gridtokenx-meter (0700), and is restarted by systemd's watchdog
when its loop stops. hardware/raspberry-pi.md walks through it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridtokenx.provision import FIRMWARE, ProvisionError, check_config, site_ca

SERVICE = "gridtokenx-meter"
STATE_DIR = f"/var/lib/{SERVICE}"
CONFIG_DIR = f"/etc/{SERVICE}"
CREDENTIALS = f"/run/credentials/{SERVICE}.service"

UNIT = """\
# The GridTokenX meter firmware on Linux (written by `gridtokenx firmware install-linux`).
[Unit]
Description=GridTokenX meter {meter_id}
Wants=network-online.target
After=network-online.target time-sync.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={python} {prefix}/linux/gtx_linux.py {credentials}/config.json
LoadCredential=config.json:{config_dir}/config.json
Environment=PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WatchdogSec=60
Restart=always
RestartSec=5
DynamicUser=yes
SupplementaryGroups=dialout
StateDirectory={service}
StateDirectoryMode=0700
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class Installed:
    prefix: Path
    config: Path
    unit: Path


def _inside(root: Path, absolute: str) -> Path:
    return root / absolute.lstrip("/")


def _write(path: Path, data: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def check_linux_config(path: Path) -> dict[str, Any]:
    cfg = check_config(path)
    uart = cfg["uart"]
    if not isinstance(uart, dict) or not ("device" in uart or "tcp" in uart):
        raise ProvisionError(
            'on Linux the uart is a serial device: "uart": {"device": "/dev/ttyUSB0", '
            '"baudrate": 9600} (or "tcp" for an RTU-over-TCP converter)'
        )
    if "wifi" in cfg:
        raise ProvisionError("remove 'wifi': on Linux the operating system joins the network")
    return cfg


def install_linux(
    config: Path,
    root: Path = Path("/"),
    prefix: str = "/opt/gridtokenx-meter",
    python: str = "/usr/bin/python3",
    data_dir: str = STATE_DIR,
) -> Installed:
    """Copy the firmware, the meter's config and the unit under `root`."""
    cfg = check_linux_config(config)
    if not prefix.startswith("/") or not python.startswith("/"):
        raise ProvisionError("prefix and python must be absolute paths")
    try:
        return _install(cfg, site_ca(cfg, config), root, prefix, python, data_dir)
    except OSError as exc:
        raise ProvisionError(
            f"cannot write {exc.filename or root}: {exc.strerror} (as root: sudo)"
        ) from None


def _install(
    cfg: dict[str, Any], der: bytes | None, root: Path, prefix: str, python: str, data_dir: str
) -> Installed:
    target = _inside(root, prefix)
    for part in ("gtx", "lib", "linux"):
        if (target / part).exists():
            shutil.rmtree(target / part)
        shutil.copytree(
            FIRMWARE / part, target / part, ignore=shutil.ignore_patterns("__pycache__")
        )
    if der is not None:
        ca_file = _inside(root, CONFIG_DIR) / "ca.der"
        ca_file.parent.mkdir(parents=True, exist_ok=True)
        ca_file.write_bytes(der)
        os.chmod(ca_file, 0o644)
        cfg["broker"]["ca"] = f"{CONFIG_DIR}/ca.der"
    cfg["data_dir"] = data_dir
    config_file = _inside(root, CONFIG_DIR) / "config.json"
    _write(config_file, json.dumps(cfg, indent=2) + "\n", 0o600)
    unit = _inside(root, f"/etc/systemd/system/{SERVICE}.service")
    _write(
        unit,
        UNIT.format(
            meter_id=cfg["meter_id"],
            python=python,
            prefix=prefix,
            credentials=CREDENTIALS,
            config_dir=CONFIG_DIR,
            service=SERVICE,
        ),
        0o644,
    )
    return Installed(target, config_file, unit)
