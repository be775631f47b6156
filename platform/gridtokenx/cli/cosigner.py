"""`gridtokenx cosigner ...`: an independent co-signer in its own process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gridtokenx.cli.common import serve
from gridtokenx.ledger.deployment import COSIGNERS
from gridtokenx.ledger.keystore import Keystore, KeystoreError, secret_from_env

app = typer.Typer(help="An independent co-signer of GRX mints (grid operator, auditor).")

Role = Annotated[str, typer.Option(help=f"The party: {', '.join(COSIGNERS)}.")]
KeystorePath = Annotated[
    Path,
    typer.Option(help="This co-signer's own keystore (GTX_KEYSTORE_PASSPHRASE or _KEY opens it)."),
]


@app.callback(no_args_is_help=True)
def _group() -> None:
    """An independent co-signer of GRX mints (grid operator, auditor)."""


def _open(role: str, keystore: Path) -> Keystore:
    if role not in COSIGNERS:
        typer.echo(f"error: the role is one of {', '.join(COSIGNERS)}", err=True)
        raise typer.Exit(2)
    try:
        return Keystore(keystore, secret_from_env())
    except KeystoreError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


@app.command("identity")
def identity_command(role: Role, keystore: KeystorePath) -> None:
    """Make this co-signer's keys on first use; print its public keys (JSON)."""
    from gridtokenx.ledger.deployment import Identity

    keys = _open(role, keystore)
    ident = Identity.of(keys, role)
    typer.echo(
        json.dumps(
            {
                "role": role,
                "oracle": str(ident.oracle),
                "governance": str(ident.governance),
                "bank": str(ident.bank),
                "registry": str(ident.registry),
            }
        )
    )


@app.command("run")
def run_command(
    role: Role,
    keystore: KeystorePath,
    data: Annotated[
        Path, typer.Option(help="The platform's data directory: its chain and deployment.")
    ] = Path("var/up/platform"),
    books: Annotated[
        str | None, typer.Option(help="The registry's database URL (default: DATA/books.db).")
    ] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8101,
) -> None:
    """Serve GET /identity, POST /sign/mint, /sign/topup and /sign/freeze until SIGTERM/SIGINT.

    It follows the platform's embedded chain read-only (DATA/chain) and reads the meter
    and hub registry from the books; it never opens the platform's keystore."""
    import os

    from solders.pubkey import Pubkey
    from sqlalchemy import create_engine

    from gridtokenx.cosigner import Cosigner, app, books_registry
    from gridtokenx.ledger.deployment import Identity
    from gridtokenx.ledger.embedded import ChainReader

    if os.environ.get("SOLANA_RPC_URL"):
        typer.echo(
            "error: a co-signer follows an embedded chain only (not yet a cluster)", err=True
        )
        raise typer.Exit(2)
    keys = _open(role, keystore)
    Identity.of(keys, role)
    deployment = data / "deployment.json"

    def grx() -> Pubkey:
        return Pubkey.from_string(json.loads(deployment.read_text())["grx"])

    def thb() -> Pubkey:
        return Pubkey.from_string(json.loads(deployment.read_text())["thb"])

    def approver() -> Pubkey | None:
        """The operator's approval key, whose records of approvals and suspensions this
        co-signer requires before it signs a thaw or a freeze."""
        doc = json.loads(deployment.read_text())
        return Pubkey.from_string(doc["approver"]) if "approver" in doc else None

    def site_accounts() -> list[Pubkey]:
        """The site's own wallets (escrow, treasury, grid operator): never frozen."""
        doc = json.loads(deployment.read_text())
        return [Pubkey.from_string(k) for k in doc.get("site_accounts", [])]

    # read only: the platform owns the schema and its migrations
    engine = create_engine(books or f"sqlite:///{data / 'books.db'}")
    cosigner = Cosigner(
        role,
        keys,
        ChainReader(data / "chain"),
        grx,
        books_registry(engine),
        thb=thb,
        approver=approver,
        site_accounts=site_accounts,
    )
    ready = f"cosigner {role}: oracle {cosigner.oracle_pubkey} on {host}:{port} ready"
    serve(app(cosigner), host, port, ready)
    typer.echo(f"cosigner {role} stopped")
