"""Hardening a real ESP32 meter: secure boot v2 and flash encryption, with esptool's
espsecure and espefuse (PyPI), so the meter's key cannot be read out of its flash and
firmware not signed with the release key cannot run. What it protects and what it does
not: hardware/hardening.md.

Every eFuse step is irreversible. `plan` says exactly which commands will run; `run`
runs them, after checking the chip (an ESP32 of revision v3.0 or later, not hardened
yet). Against a board, `port` is its serial port; `efuse_file` instead runs espefuse on a
virtual chip kept in that file (espefuse's own `--virt` mode), which is how this is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SIGNING_KEY = "secure_boot_signing_key.pem"  # RSA-3072, signs bootloader and app images
FLASH_KEY = "flash_encryption_key.bin"  # AES-256, burned into BLOCK1 read-protected
# where the ESP32 images go (ESP-IDF defaults, as MicroPython's esp32 port uses them)
IMAGE = (("bootloader.bin", 0x1000), ("partition-table.bin", 0x8000), ("micropython.bin", 0x10000))
SIGNED = ("bootloader.bin", "micropython.bin")  # what the ROM and the bootloader verify


class HardenError(Exception):
    """A refusal before anything was burned (with a stable code), or a failed step."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Keys:
    signing: Path
    flash: Path


@dataclass(frozen=True)
class Step:
    what: str
    argv: tuple[str, ...]
    irreversible: bool = False


def _tool(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise HardenError("missing_tool", f"{name} is not installed (esptool from PyPI)")
    return found


def make_keys(directory: Path) -> Keys:
    """The release keys: made once (0600 in a 0700 directory), reused after. Keep them
    offline and backed up: without the signing key no update can ever be installed, and
    whoever has it can sign firmware every hardened meter will run."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    keys = Keys(directory / SIGNING_KEY, directory / FLASH_KEY)
    made = [
        (keys.signing, ["generate-signing-key", "--version", "2", "--scheme", "rsa3072"]),
        (keys.flash, ["generate-flash-encryption-key"]),
    ]
    for path, command in made:
        if not path.exists():
            subprocess.run(
                [_tool("espsecure"), *command, str(path)],
                check=True,
                capture_output=True,
                umask=0o077,  # never world-readable, not even for a moment
            )
        if path.stat().st_mode & 0o077:
            raise HardenError("key_readable", f"{path} must not be readable by others (chmod 600)")
    return keys


def _espefuse(port: str | None, efuse_file: Path | None) -> list[str]:
    if efuse_file is not None:
        target = ["--virt", "--path-efuse-file", str(efuse_file)]
    elif port:
        target = ["--port", port]
    else:
        raise HardenError("no_target", "give the board's serial port")
    return [_tool("espefuse"), "--chip", "esp32", *target]


def plan(
    keys: Keys,
    port: str | None = None,
    image: Path | None = None,
    efuse_file: Path | None = None,
    disable_uart_download: bool = False,
) -> list[Step]:
    """The steps, in order: sign and encrypt the image and write it while the chip still
    accepts it, then the eFuses, the counter that switches encryption on last."""
    steps: list[Step] = []
    espefuse = [*_espefuse(port, efuse_file), "--do-not-confirm"]
    if image is not None:
        espsecure = _tool("espsecure")
        written = []
        for name, address in IMAGE:
            source = image / name
            if name in SIGNED:
                signed = image / f"{source.stem}.signed.bin"
                steps.append(
                    Step(
                        f"sign {name} with the release key (secure boot v2, RSA-3072)",
                        (
                            espsecure,
                            "sign-data",
                            "--version",
                            "2",
                            "--keyfile",
                            str(keys.signing),
                            "--output",
                            str(signed),
                            str(source),
                        ),
                    )
                )
                source = signed
            encrypted = image / f"{Path(name).stem}.encrypted.bin"
            steps.append(
                Step(
                    f"encrypt {name} for 0x{address:x} with the flash encryption key",
                    (
                        espsecure,
                        "encrypt-flash-data",
                        "--keyfile",
                        str(keys.flash),
                        "--address",
                        str(address),
                        "--output",
                        str(encrypted),
                        str(source),
                    ),
                )
            )
            written += [f"0x{address:x}", str(encrypted)]
        if port is not None:
            steps.append(
                Step(
                    "write the encrypted, signed image",
                    (
                        _tool("esptool"),
                        "--chip",
                        "esp32",
                        "--port",
                        port,
                        "write-flash",
                        *tuple(written),
                    ),
                )
            )
    burn = [
        Step(
            "flash encryption key into BLOCK1, read- and write-protected",
            (*espefuse, "burn-key", "flash_encryption", str(keys.flash)),
            True,
        ),
        Step(
            "flash encryption tweak: all address bits",
            (*espefuse, "burn-efuse", "FLASH_CRYPT_CONFIG", "0xF"),
            True,
        ),
        Step(
            "secure boot v2: the SHA-256 of the release public key into BLOCK2",
            (*espefuse, "burn-key-digest", str(keys.signing)),
            True,
        ),
        Step(
            "secure boot v2 on; JTAG, the ROM BASIC console and the UART bootloader's"
            " encryption, decryption and cache off",
            (
                *espefuse,
                "burn-efuse",
                "ABS_DONE_1",
                "1",
                "JTAG_DISABLE",
                "1",
                "CONSOLE_DEBUG_DISABLE",
                "1",
                "DISABLE_DL_ENCRYPT",
                "1",
                "DISABLE_DL_DECRYPT",
                "1",
                "DISABLE_DL_CACHE",
                "1",
            ),
            True,
        ),
    ]
    if disable_uart_download:
        burn.append(
            Step(
                "UART download mode off: the board is updated over the air only",
                (*espefuse, "burn-efuse", "UART_DOWNLOAD_DIS", "1"),
                True,
            )
        )
    burn.append(
        Step(
            "flash encryption on for good (release mode: FLASH_CRYPT_CNT all set)",
            (*espefuse, "burn-efuse", "FLASH_CRYPT_CNT", "127"),
            True,
        )
    )
    return steps + burn


def efuses(port: str | None, efuse_file: Path | None) -> dict[str, object]:
    """The chip's eFuse values by name (espefuse summary)."""
    out = subprocess.run(
        [*_espefuse(port, efuse_file), "summary", "--format", "json"],
        check=False,
        capture_output=True,
        text=True,
    )
    start = out.stdout.find("{")
    if out.returncode != 0 or start < 0:
        raise HardenError("no_chip", f"cannot read the eFuses: {out.stderr.strip()[-300:]}")
    fields = json.loads(out.stdout[start:])
    return {name: field["value"] for name, field in fields.items()}


def check_chip(values: dict[str, object]) -> None:
    """Refuse a chip secure boot v2 does not support, or one already hardened."""
    revision = values.get("WAFER_VERSION_MAJOR")
    if not isinstance(revision, int) or revision < 3:
        raise HardenError(
            "chip_revision", f"secure boot v2 needs an ESP32 v3.0 or later, this is v{revision}"
        )
    if values.get("ABS_DONE_1") or values.get("ABS_DONE_0") or values.get("FLASH_CRYPT_CNT"):
        raise HardenError("already_hardened", "secure boot or flash encryption is already on")


def run(steps: list[Step], port: str | None, efuse_file: Path | None) -> list[Step]:
    """Check the chip, then run the steps in order; the steps done."""
    check_chip(efuses(port, efuse_file))
    done = []
    for step in steps:
        result = subprocess.run(step.argv, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip()[-300:]
            raise HardenError("step_failed", f"{step.what}: {tail}")
        done.append(step)
    return done


def key_digest(keys: Keys) -> str:
    """The SHA-256 of the release public key, as BLOCK2 holds it (hex)."""
    out = keys.signing.with_suffix(".digest")
    subprocess.run(
        [
            _tool("espsecure"),
            "digest-sbv2-public-key",
            "--keyfile",
            str(keys.signing),
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    digest = out.read_bytes().hex()
    os.unlink(out)
    return digest
