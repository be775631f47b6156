"""`gridtokenx statement` (the platform operator's side) and `gridtokenx verify` (the
household's: offline, the ledger only when asked)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from gridtokenx.statement.verify import EXIT_CODES, Failure, exit_code, verify

MAX_STATEMENT_BYTES = 64 * 1024 * 1024  # read no larger file than this (a quarter's is far less)


def _chain(data: Path | None, rpc: str | None) -> Any:
    """A read-only view of the ledger: the embedded chain's log, or an RPC node."""
    if rpc:
        from solders.keypair import Keypair

        from gridtokenx.ledger.rpc import RpcLedger

        return RpcLedger(rpc, Keypair())  # reads only: its payer never signs
    from gridtokenx.ledger.embedded import ChainReader

    assert data is not None
    return ChainReader(data / "chain")


def statement_command(
    user: Annotated[str, typer.Option(help="The household's user id.")],
    from_: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD (UTC).")],
    to: Annotated[str, typer.Option(help="Last day, YYYY-MM-DD (UTC).")],
    out: Annotated[Path, typer.Option(help="The statement file to write (JSON, 0600).")],
    data: Annotated[Path, typer.Option(help="The platform's data directory.")] = Path("var/up"),
    database: Annotated[
        str | None, typer.Option(help="The books' database URL (default: DATA/books.db).")
    ] = None,
    epoch_s: Annotated[float, typer.Option(help="The market's epoch length.")] = 900.0,
) -> None:
    """Write a household's statement: readings, batches, mints, burns, trades, proofs."""
    from gridtokenx.adapters import books
    from gridtokenx.errors import CodedError
    from gridtokenx.statement.build import build

    if not (data / "deployment.json").exists():
        typer.echo(f"error: no ledger deployment in {data}", err=True)
        raise typer.Exit(2)
    deployment = json.loads((data / "deployment.json").read_text())
    engine = books.connect(database or f"sqlite:///{data / 'books.db'}")
    try:
        doc = build(
            engine,
            _chain(data, os.environ.get("SOLANA_RPC_URL")),
            (deployment["grx"], deployment["thb"]),
            user,
            from_,
            to,
            epoch_s,
        )
    except CodedError as err:
        typer.echo(f"error: {err.code}: {err.message}", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # personal data
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    typer.echo(f"wrote {out}: {len(doc['epochs'])} epochs")


def verify_command(
    file: Annotated[Path, typer.Argument(help="A statement file (docs/statement.md).")],
    key: Annotated[
        list[str] | None,
        typer.Option(help="NAME=HEX: a meter's or hub's public key you know (repeatable)."),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Also check the ledger: an embedded chain's data dir.")
    ] = None,
    rpc: Annotated[str | None, typer.Option(help="Also check the ledger at this RPC URL.")] = None,
) -> None:
    """Check a statement offline (signatures, proofs, every amount); exit 0 if it holds,
    else the code of the first failure (docs/statement.md)."""
    failures: list[Failure] = []
    doc: Any = None
    try:
        if file.stat().st_size > MAX_STATEMENT_BYTES:
            raise ValueError(f"larger than {MAX_STATEMENT_BYTES} bytes")
        doc = json.loads(file.read_bytes())
    except (OSError, ValueError) as err:
        failures.append(Failure("malformed_statement", str(file), str(err)))
    pinned: dict[str, bytes] = {}
    for entry in key or []:
        name, _, value = entry.partition("=")
        try:
            pinned[name] = bytes.fromhex(value)
        except ValueError:
            typer.echo(f"error: --key {entry!r} is not NAME=HEX", err=True)
            raise typer.Exit(2) from None
    if not failures:
        failures = verify(doc, pinned)
    if not failures and (data is not None or rpc):
        from gridtokenx.statement.chain import check, from_chain, from_rpc

        failures = check(doc, from_rpc(rpc) if rpc else from_chain(_chain(data, None)))
    for failure in failures:
        typer.echo(f"FAIL {failure}", err=True)
    if failures:
        raise typer.Exit(exit_code(failures))
    epochs = doc["epochs"]
    typer.echo(
        json.dumps(
            {
                "ok": True,
                "user_id": doc.get("user_id"),
                "epochs": len(epochs),
                "ledger_checked": data is not None or bool(rpc),
                **{
                    name: sum(e[name] for e in epochs)
                    for name in (
                        "export_wh",
                        "import_wh",
                        "minted_wh",
                        "burned_wh",
                        "bought_wh",
                        "sold_wh",
                        "paid_uthb",
                        "received_uthb",
                    )
                },
            }
        )
    )


__all__ = ["EXIT_CODES", "statement_command", "verify_command"]
