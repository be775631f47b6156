"""`gridtokenx firmware harden`: secure boot v2 + flash encryption with espsecure and
espefuse. The eFuses are burned on espefuse's own virtual ESP32 (`--virt`, kept in a
file): no board is attached to this machine. Writing the image to a board
(`esptool write-flash`) is not run here."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridtokenx.cli import app
from gridtokenx.harden import HardenError, Keys, efuses, key_digest, make_keys, plan

BIN = Path(sys.executable).parent


def virtual_esp32(path: Path, revision3: bool = True) -> Path:
    """A virtual ESP32; a v3.0 (ECO3) one has both revision bits, as the factory burns them."""
    command = [str(BIN / "espefuse"), "--chip", "esp32", "--virt", "--path-efuse-file", str(path)]
    if revision3:
        command += ["--do-not-confirm", "burn-efuse", "CHIP_VER_REV1", "1", "CHIP_VER_REV2", "1"]
    else:
        command += ["summary"]
    subprocess.run(command, check=True, capture_output=True)
    return path


def test_release_keys_are_made_once_and_private(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    for path in (keys.signing, keys.flash):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.signing.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert len(keys.flash.read_bytes()) == 32
    before = (keys.signing.read_bytes(), keys.flash.read_bytes())
    assert make_keys(tmp_path / "keys") == keys
    assert (keys.signing.read_bytes(), keys.flash.read_bytes()) == before
    keys.flash.chmod(0o644)
    with pytest.raises(HardenError) as err:
        make_keys(tmp_path / "keys")
    assert err.value.code == "key_readable"


def test_the_plan_burns_the_counter_last_and_needs_a_target(tmp_path: Path) -> None:
    keys = Keys(tmp_path / "sb.pem", tmp_path / "fe.bin")
    steps = plan(keys, port="/dev/ttyUSB0", disable_uart_download=True)
    espefuse = (str(BIN / "espefuse"), "--chip", "esp32", "--port", "/dev/ttyUSB0")
    assert [s.argv[len(espefuse) + 1 :] for s in steps] == [
        ("burn-key", "flash_encryption", str(keys.flash)),
        ("burn-efuse", "FLASH_CRYPT_CONFIG", "0xF"),
        ("burn-key-digest", str(keys.signing)),
        (
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
        ("burn-efuse", "UART_DOWNLOAD_DIS", "1"),
        ("burn-efuse", "FLASH_CRYPT_CNT", "127"),
    ]
    assert all(s.argv[: len(espefuse) + 1] == (*espefuse, "--do-not-confirm") for s in steps)
    assert all(s.irreversible for s in steps)
    with pytest.raises(HardenError) as err:
        plan(keys)
    assert err.value.code == "no_target"


def test_harden_a_virtual_esp32(tmp_path: Path) -> None:
    chip = virtual_esp32(tmp_path / "efuses.bin")
    keys_dir = tmp_path / "keys"
    runner = CliRunner()
    args = ["firmware", "harden", "--virtual-efuses", str(chip), "--keys-dir", str(keys_dir)]
    dry = runner.invoke(app, args)
    assert dry.exit_code == 0, dry.output
    assert dry.output.endswith("nothing burned: run again with --yes (irreversible)\n")
    assert efuses(None, chip)["ABS_DONE_1"] is False  # the plan burned nothing
    done = runner.invoke(app, [*args, "--yes"])
    assert done.exit_code == 0, done.output
    assert done.output.endswith("hardened: 5 steps done\n")
    values = efuses(None, chip)
    assert values["ABS_DONE_1"] is True and values["JTAG_DISABLE"] is True
    assert values["FLASH_CRYPT_CNT"] == 127 and values["FLASH_CRYPT_CONFIG"] == 15
    assert values["DISABLE_DL_DECRYPT"] is True and values["CONSOLE_DEBUG_DISABLE"] is True
    # the secure boot digest is the release key's; the flash key cannot be read back
    keys = make_keys(keys_dir)
    assert str(values["BLOCK2"]).replace(" ", "") == key_digest(keys)
    assert values["RD_DIS"] == 1  # BLOCK1: the flash encryption key
    assert keys.flash.read_bytes().hex() not in str(values["BLOCK1"]).replace(" ", "")
    again = runner.invoke(app, [*args, "--yes"])
    assert again.exit_code == 2 and "already_hardened" in again.output


def test_an_esp32_before_v3_is_refused_with_nothing_burned(tmp_path: Path) -> None:
    chip = virtual_esp32(tmp_path / "efuses.bin", revision3=False)
    before = chip.read_bytes()
    args = ["firmware", "harden", "--virtual-efuses", str(chip), "--keys-dir", str(tmp_path)]
    refused = CliRunner().invoke(app, [*args, "--yes"])
    assert refused.exit_code == 2 and "chip_revision" in refused.output
    assert chip.read_bytes() == before


def test_an_image_is_signed_then_encrypted_for_its_address(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    image = tmp_path / "image"
    image.mkdir()
    for name, size in (("bootloader.bin", 4096), ("partition-table.bin", 3072)):
        (image / name).write_bytes(bytes(range(256)) * (size // 256))
    (image / "micropython.bin").write_bytes(b"\xe9" + bytes(65_535))
    steps = plan(keys, efuse_file=tmp_path / "chip.bin", image=image)
    prepare = [s for s in steps if not s.irreversible]
    # sign + encrypt the bootloader, encrypt the partition table, sign + encrypt the app;
    # with no board nothing is written
    assert [s.what.split(" ")[0] for s in prepare] == [
        "sign",
        "encrypt",
        "encrypt",
        "sign",
        "encrypt",
    ]
    for step in prepare:
        subprocess.run(step.argv, check=True, capture_output=True)
    espsecure = str(BIN / "espsecure")
    for signed in ("bootloader.signed.bin", "micropython.signed.bin"):
        check = subprocess.run(
            [
                espsecure,
                "verify-signature",
                "--version",
                "2",
                "--keyfile",
                str(keys.signing),
                str(image / signed),
            ],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    plain = tmp_path / "back.bin"
    subprocess.run(
        [
            espsecure,
            "decrypt-flash-data",
            "--keyfile",
            str(keys.flash),
            "--address",
            "0x8000",
            "--output",
            str(plain),
            str(image / "partition-table.encrypted.bin"),
        ],
        check=True,
        capture_output=True,
    )
    assert plain.read_bytes() == (image / "partition-table.bin").read_bytes()
    assert (image / "partition-table.encrypted.bin").read_bytes() != plain.read_bytes()
