"""What the hub's command groups (`hub feeder`, `hub firmware`, `hub backup`) share: the
`--database` option, opening the store, and a coded error as a message."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from gridtokenx.hub.store import HubStore, connect

DatabaseOption = Annotated[str, typer.Option("--database", envvar="HUB_DATABASE_URL")]


def open_store(url: str) -> HubStore:
    """The hub's store at `url`, or exit 2 with a message (not a traceback)."""
    try:
        return HubStore(connect(url))
    except Exception as exc:  # unreachable server, bad URL: a message, not a traceback
        typer.echo(f"error: cannot open the hub database {url}: {exc}", err=True)
        raise typer.Exit(2) from None


def fail_coded(code: str, message: str) -> NoReturn:
    """`error: CODE: MESSAGE` on stderr, exit 2."""
    typer.echo(f"error: {code}: {message}", err=True)
    raise typer.Exit(2)
