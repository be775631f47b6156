"""`gridtokenx audit` (replay the chain and the books) and `gridtokenx retention`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from gridtokenx.cli.common import fail


def _site(data: Path, database: str | None) -> tuple[Any, Any]:
    """A site's ledger deployment and books, read by the commands below (exit 2 with a
    message when there is no deployment or the keystore does not open)."""
    from gridtokenx.adapters import books
    from gridtokenx.ledger.deployment import Deployment
    from gridtokenx.ledger.keystore import KeystoreError
    from gridtokenx.ledger.site import open_keystore, open_ledger

    if not (data / "deployment.json").exists():
        fail(f"no ledger deployment in {data} (deployment.json is missing)")
    try:
        keys = open_keystore(data)
    except KeystoreError as err:
        fail(str(err))
    dep = Deployment.load(open_ledger(data, keys), keys, data / "deployment.json")
    return dep, books.connect(database or f"sqlite:///{data / 'books.db'}")


def audit_command(
    data: Annotated[Path, typer.Option(help="The platform's data directory.")] = Path("var/up"),
    database: Annotated[
        str | None, typer.Option(help="The books' database URL (default: DATA/books.db).")
    ] = None,
    archive_dir: Annotated[
        Path | None,
        typer.Option(help="Readings pruned by `gridtokenx retention` (default: DATA/archive)."),
    ] = None,
) -> None:
    """Replay the chain and the books; exit 0 only when everything reconciles."""
    from gridtokenx import audit

    dep, engine = _site(data, database)
    report = audit.run(dep, engine, archive_dir or data / "archive")
    typer.echo(json.dumps(report.as_dict(), indent=1))
    raise typer.Exit(0 if report.ok else 1)


def retention_command(
    days: Annotated[
        int, typer.Option(min=1, envvar="GTX_RETENTION_DAYS", help="Keep readings this long.")
    ],
    data: Annotated[Path, typer.Option(help="The platform's data directory.")] = Path("var/up"),
    database: Annotated[
        str | None, typer.Option(help="The books' database URL (default: DATA/books.db).")
    ] = None,
    archive_dir: Annotated[
        Path | None, typer.Option(help="Where pruned readings go (default: DATA/archive).")
    ] = None,
) -> None:
    """Archive (with Merkle proofs) and prune the books' readings of minted batches older
    than DAYS days; `gridtokenx audit` still traces their mints from the archive."""
    from gridtokenx import retention

    dep, engine = _site(data, database)
    directory = archive_dir or data / "archive"
    os.umask(0o077)
    pruned = retention.prune(engine, dep.ledger.history(), directory, days)
    summary = {
        "batches": len(pruned),
        "readings": sum(p.readings for p in pruned),
        "files": [p.file for p in pruned],
        "archive": str(directory),
    }
    typer.echo(json.dumps(summary))
