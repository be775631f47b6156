"""`gridtokenx firmware ...`: build, flash, install, harden and sign meter firmware."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gridtokenx.cli.common import REPO, fail

app = typer.Typer(help="Build, flash and register meter firmware.", no_args_is_help=True)


@app.command("build")
def firmware_build(
    config: Annotated[Path, typer.Option(help="The meter's config.json.")],
    out: Annotated[Path, typer.Option(help="Image directory to write.")] = Path("build/firmware"),
) -> None:
    """Compile the firmware with mpy-cross into an image with the meter's config."""
    from gridtokenx.provision import ProvisionError, build

    try:
        image = build(config, out)
    except ProvisionError as exc:
        fail(str(exc))
    typer.echo(f"built {image}")


@app.command("flash")
def firmware_flash(
    port: Annotated[str, typer.Option(help="Serial port of the board, e.g. /dev/ttyUSB0.")],
    image: Annotated[Path, typer.Option(help="A built image.")] = Path("build/firmware"),
) -> None:
    """Copy a built image onto a board with mpremote and reset it."""
    from gridtokenx.provision import ProvisionError, flash

    try:
        flash(image, port)
    except ProvisionError as exc:
        fail(str(exc))
    typer.echo(f"flashed {image} to {port}")


@app.command("install-linux")
def firmware_install_linux(
    config: Annotated[Path, typer.Option(help="The meter's config.json (uart.device).")],
    root: Annotated[Path, typer.Option(help="/ on the Pi, or a mounted SD card.")] = Path("/"),
    prefix: Annotated[str, typer.Option(help="Where the firmware goes.")] = "/opt/gridtokenx-meter",
    python: Annotated[str, typer.Option(help="The Pi's CPython (3.10+ with pyserial).")] = (
        "/usr/bin/python3"
    ),
    data_dir: Annotated[str, typer.Option(help="The meter's key, state and ring.")] = (
        "/var/lib/gridtokenx-meter"
    ),
) -> None:
    """Install the firmware on a Linux computer as the systemd service gridtokenx-meter
    (hardware/raspberry-pi.md)."""
    from gridtokenx.provision import ProvisionError
    from gridtokenx.provision_linux import SERVICE, install_linux

    try:
        done = install_linux(config, root, prefix, python, data_dir)
    except ProvisionError as exc:
        fail(str(exc))
    typer.echo(f"installed {done.prefix}, {done.config} (0600) and {done.unit}")
    typer.echo(f"start it: systemctl daemon-reload && systemctl enable --now {SERVICE}")


@app.command("harden")
def firmware_harden(
    port: Annotated[str | None, typer.Option(help="Serial port of the board.")] = None,
    image: Annotated[
        Path | None, typer.Option(help="A secure-boot build to sign, encrypt and write first.")
    ] = None,
    keys_dir: Annotated[Path, typer.Option(help="Release keys (made once, 0600).")] = Path(
        "var/release-keys"
    ),
    disable_uart_download: Annotated[bool, typer.Option(help="Updates over the air only.")] = False,
    virtual_efuses: Annotated[
        Path | None, typer.Option(help="espefuse --virt on this file instead of a board.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Burn the eFuses (irreversible).")] = False,
) -> None:
    """Secure boot v2 + flash encryption (hardware/hardening.md). Prints the plan; burns
    only with --yes."""
    from gridtokenx.harden import HardenError, make_keys, plan, run

    try:
        steps = plan(make_keys(keys_dir), port, image, virtual_efuses, disable_uart_download)
        for step in steps:
            typer.echo(
                f"{'!' if step.irreversible else ' '} {step.what}\n    {' '.join(step.argv)}"
            )
        if not yes:
            typer.echo("nothing burned: run again with --yes (irreversible)")
            return
        run(steps, port, virtual_efuses)
    except HardenError as exc:
        fail(f"{exc.code}: {exc.message}")
    typer.echo(f"hardened: {len(steps)} steps done")


OtaKeyOption = Annotated[
    Path,
    typer.Option("--key", help="The release key for updates (made once, 0600; never on the hub)."),
]


def _release_key(path: Path, create: bool) -> Any:
    import os

    from nacl.signing import SigningKey

    if path.exists():
        try:
            return SigningKey(bytes.fromhex(path.read_text().strip()))
        except ValueError:
            fail(f"{path} is not a release key (64 hex characters)")
    if not create:
        fail(f"no release key at {path}: make one with `gridtokenx firmware release-key`")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(bytes(key).hex() + "\n")
    return key


@app.command("release-key")
def firmware_release_key(key: OtaKeyOption = Path("var/release-keys/ota.key")) -> None:
    """Make the release key once (or read it) and print its public key: put that in each
    meter's config as `release_key` and give it to the hub (`HUB_RELEASE_KEY`)."""
    typer.echo(bytes(_release_key(key, True).verify_key).hex())


@app.command("sign")
def firmware_sign(
    version: Annotated[int, typer.Option(help="Above every version the meters run.")],
    out: Annotated[Path, typer.Option(help="The update file to write.")],
    source: Annotated[
        Path, typer.Option(help="Firmware tree: its gtx/ and lib/ are the image.")
    ] = REPO / "firmware",
    key: OtaKeyOption = Path("var/release-keys/ota.key"),
) -> None:
    """Sign the firmware's gtx/ and lib/ as an update (docs/wire-format.md section 7),
    for `gridtokenx hub firmware publish`."""
    from gridtokenx.hub import updates

    try:
        raw = updates.build(
            updates.pack(updates.firmware_files(source)), version, _release_key(key, False)
        )
    except updates.UpdateError as exc:
        fail(f"{exc.code}: cannot build an update of {source} as version {version}")
    out.write_bytes(raw)
    typer.echo(
        f"signed version {version}: {out} ({len(raw)} bytes, image sha256 {raw[12:44].hex()})"
    )


@app.command("pubkey")
def firmware_pubkey(
    port: Annotated[str, typer.Option(help="Serial port of the board.")],
) -> None:
    """Print the meter's public key, for registering it at the hub."""
    from gridtokenx.provision import ProvisionError, pubkey

    try:
        typer.echo(pubkey(port))
    except ProvisionError as exc:
        fail(str(exc))
