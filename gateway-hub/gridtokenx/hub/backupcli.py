"""`gridtokenx hub backup create|restore`: the hub's database and key (hub/backup.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gridtokenx.hub import backup
from gridtokenx.hub.cli_common import DatabaseOption
from gridtokenx.hub.store import DEFAULT_URL


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


app = typer.Typer(help="Back up and restore the hub's database and key.", no_args_is_help=True)
KeyFileOption = Annotated[Path, typer.Option(envvar="HUB_KEY_FILE")]


@app.command("create")
def backup_create(
    out: Annotated[Path, typer.Argument(help="A new directory for the backup.")],
    database: DatabaseOption = DEFAULT_URL,
    key_file: KeyFileOption = Path("var/hub.key"),
) -> None:
    """Back up the hub's database (a snapshot, also while it runs) and its key."""
    try:
        manifest = backup.create(out, database, key_file)
    except backup.BackupError as exc:
        fail(str(exc))
        return
    typer.echo(f"backed up {', '.join(manifest['files'])} to {out}")


@app.command("restore")
def backup_restore(
    source: Annotated[Path, typer.Argument(help="A directory made by `hub backup create`.")],
    database: DatabaseOption = DEFAULT_URL,
    key_file: KeyFileOption = Path("var/hub.key"),
) -> None:
    """Restore a hub backup into a fresh database and key file."""
    try:
        manifest = backup.restore(source, database, key_file)
    except backup.BackupError as exc:
        fail(str(exc))
        return
    typer.echo(f"restored the hub backup of {manifest['created']}")
