"""`gridtokenx backup create|restore`: the platform's keystore, books and chain (backup.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gridtokenx import backup


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


app = typer.Typer(
    help="Back up and restore the platform's keystore, books and chain.", no_args_is_help=True
)
DataOption = Annotated[Path, typer.Option(envvar="GTX_DATA", help="Keystore, chain, books.")]
BooksOption = Annotated[str | None, typer.Option(envvar="DATABASE_URL", help="Books database.")]


@app.command("create")
def backup_create(
    out: Annotated[Path, typer.Argument(help="A new directory for the backup.")],
    data: DataOption = Path("var/platform"),
    database: BooksOption = None,
) -> None:
    """Back up the platform (also while it runs); kept only if its copy audits clean."""
    try:
        manifest = backup.create(data, out, database)
    except backup.BackupError as err:
        fail(str(err))
        return
    typer.echo(json.dumps({k: manifest[k] for k in ("created", "files", "attempts", "checked")}))


@app.command("restore")
def backup_restore(
    source: Annotated[Path, typer.Argument(help="A directory made by `backup create`.")],
    data: DataOption = Path("var/platform"),
    database: BooksOption = None,
) -> None:
    """Restore a platform backup into a fresh data directory; then run `gridtokenx audit`."""
    try:
        manifest = backup.restore(source, data, database)
    except backup.BackupError as err:
        fail(str(err))
        return
    typer.echo(f"restored the backup of {manifest['created']} into {data}")
