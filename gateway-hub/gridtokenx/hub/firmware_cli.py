"""`gridtokenx hub firmware ...`: publish signed update files and see what meters run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from nacl.signing import VerifyKey

from gridtokenx.hub import firmware, updates
from gridtokenx.hub.cli_common import DatabaseOption
from gridtokenx.hub.cli_common import fail_coded as _fail
from gridtokenx.hub.cli_common import open_store as _store
from gridtokenx.hub.firmware import FirmwareError
from gridtokenx.hub.store import DEFAULT_URL

firmware_app = typer.Typer(
    help="Firmware updates: publish signed images, list what the meters run.",
    no_args_is_help=True,
)


@firmware_app.command("publish")
def publish(
    update: Annotated[Path, typer.Argument(help="An update file (`gridtokenx firmware sign`).")],
    release_key: Annotated[
        str,
        typer.Option(
            envvar="HUB_RELEASE_KEY",
            help="The release public key (64 hex), the one pinned in the meters' config.",
        ),
    ],
    database: DatabaseOption = DEFAULT_URL,
) -> None:
    """Check an update against the release public key and publish it: the running hub
    serves it at /firmware/<sha256>.gtxu and offers it to every meter."""
    try:
        key = VerifyKey(bytes.fromhex(release_key))
    except ValueError:
        _fail("invalid_release_key", "the release key is 64 hex characters (32 bytes)")
        return
    try:
        if update.stat().st_size > updates.HEAD + updates.MAX_IMAGE:
            _fail("bad_size", "larger than a meter accepts (4 MiB image)")
        raw = update.read_bytes()
    except OSError as exc:
        _fail("unreadable_update", f"{update}: {exc.strerror}")
        return
    try:
        p = firmware.publish(_store(database), raw, key)
    except FirmwareError as err:
        _fail(err.code, err.message)
        return
    typer.echo(f"published version {p.version}: /firmware/{p.sha256}.gtxu ({p.size} bytes)")


@firmware_app.command("list")
def list_images(database: DatabaseOption = DEFAULT_URL) -> None:
    """Published images, then each meter's reported image (`unknown`: not published)."""
    store = _store(database)
    for p in firmware.published(store):
        typer.echo(f"published\tv{p.version}\t{p.sha256}\t{p.size} bytes")
    for meter_id, m in firmware.fleet(store).items():
        typer.echo(f"{meter_id}\tv{m['version']}\t{m['sha256'] or '-'}\t{m['image']}")
