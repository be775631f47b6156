"""Provisioning a meter: build the firmware image, flash it, read back its public key.

`build` compiles firmware/ with mpy-cross into an image directory with the meter's
config; `flash` copies an image onto a board with mpremote; `pubkey` reads the public key
the meter made on first boot (its secret key never leaves it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
METER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
CHIPS = ("pzem004t", "sdm120", "sdm630")


class ProvisionError(Exception):
    """A user-facing provisioning failure (bad config, missing tool, no board)."""


def _tool(name: str) -> str:
    """A console script of this environment (mpy-cross, mpremote, micropython)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise ProvisionError(f"{name} is not installed (make install provides it)")
    return found


def check_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text())
    except OSError as exc:
        raise ProvisionError(f"cannot read config {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ProvisionError(f"config {path} is not JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise ProvisionError("config must be a JSON object")
    for key in ("meter_id", "uart", "broker"):
        if key not in cfg:
            raise ProvisionError(f"config lacks {key!r} (see firmware/config.example.json)")
    if not isinstance(cfg["meter_id"], str) or not METER_ID.fullmatch(cfg["meter_id"]):
        raise ProvisionError("meter_id must be 1-64 of A-Z a-z 0-9 . _ -")
    if cfg.get("chip", "pzem004t") not in CHIPS:
        raise ProvisionError(f"chip must be one of {', '.join(CHIPS)}")
    if not isinstance(cfg["broker"], dict) or "host" not in cfg["broker"]:
        raise ProvisionError("broker needs a host")
    port, tls = cfg["broker"].get("port"), "ca" in cfg["broker"]
    if tls and port == 1883:
        raise ProvisionError("broker.ca (TLS) with port 1883, the plain listener: use 8883")
    if port == 8883 and not tls:
        raise ProvisionError(
            "port 8883 is MQTT over TLS: add broker.ca, the site CA (ca.der of gridtokenx certs)"
        )
    return cfg


def sources() -> list[Path]:
    gtx, lib = sorted((FIRMWARE / "gtx").glob("*.py")), sorted((FIRMWARE / "lib").rglob("*.py"))
    return [FIRMWARE / "bootslot.py", *gtx, *lib]  # bootslot: the stage that picks the image


def module_name(rel: Path) -> str:
    """The name tracebacks give a compiled file: its module's (gtx/app.py: gtx.app), which
    the meter interns anyway. A path of its own would be one more interned name per module
    (a qstr in the heap on the unix port; the heap cliff in firmware/README.md)."""
    parts = rel.with_suffix("").parts
    if parts[0] == "lib":
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def build(config: Path, out: Path) -> Path:
    """Compile the firmware into `out` (gtx/*.mpy, lib/, main.py, config.json, and the
    site CA as ca.der when the config names one in broker.ca)."""
    cfg = check_config(config)
    ca_der = site_ca(cfg, config)
    mpy_cross = _tool("mpy-cross")
    if out.exists():
        shutil.rmtree(out)
    for src in sources():
        rel = src.relative_to(FIRMWARE)
        target = (out / rel).with_suffix(".mpy")
        target.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [mpy_cross, "-o", str(target), "-s", module_name(rel), str(src)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise ProvisionError(f"mpy-cross failed on {rel}: {done.stderr.strip()}")
    shutil.copy(FIRMWARE / "main.py", out / "main.py")
    shutil.copy(FIRMWARE / "lib" / "umqtt" / "LICENSE", out / "lib" / "umqtt" / "LICENSE")
    if ca_der is None:
        shutil.copy(config, out / "config.json")
    else:  # the board's working directory is its root: the CA goes beside the config
        (out / "ca.der").write_bytes(ca_der)
        cfg["broker"]["ca"] = "ca.der"
        (out / "config.json").write_text(json.dumps(cfg))
    return out


def site_ca(cfg: dict[str, Any], config: Path) -> bytes | None:
    """The DER site CA a config pins (broker.ca, relative to the config's directory)."""
    if "ca" not in cfg["broker"]:
        return None
    ca = Path(str(cfg["broker"]["ca"]))
    if not ca.is_absolute():
        ca = config.parent / ca
    try:
        der = ca.read_bytes()
    except OSError as exc:
        raise ProvisionError(f"cannot read the site CA {ca}: {exc.strerror}") from None
    if not der.startswith(b"\x30"):
        raise ProvisionError(f"{ca} is not a DER certificate (use ca.der of gridtokenx certs)")
    return der


def _mpremote(port: str, *args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [_tool("mpremote"), "connect", port, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ProvisionError(f"mpremote on {port} failed: {detail[-1] if detail else 'no output'}")
    return done.stdout


def flash(image: Path, port: str) -> None:
    """Copy a built image onto the board at `port` and reset it."""
    if not (image / "main.py").exists() or not (image / "config.json").exists():
        raise ProvisionError(f"{image} is not a built image (run gridtokenx firmware build)")
    files = ["gtx", "lib", "main.py", "config.json"]
    if (image / "ca.der").exists():
        files.append("ca.der")
    _mpremote(port, "cp", "-r", *files, ":", "+", "reset", cwd=image)


def pubkey(port: str, data_dir: str = "data") -> str:
    """The meter's public key (hex), made by the meter on its first boot."""
    try:
        text = _mpremote(port, "cat", f":{data_dir}/meter.pub").strip()
    except ProvisionError as exc:
        raise ProvisionError(
            f"{exc}; has the meter booted once since flashing (it makes its key then)?"
        ) from None
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ProvisionError(f"the meter answered {text[:80]!r}, not a public key")
    return text
