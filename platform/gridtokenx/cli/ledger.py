"""`gridtokenx ledger ...`: what the chain says, read without any secret."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The ledger: authorities and holders, read from the chain.")


@app.callback(no_args_is_help=True)
def _group() -> None:
    """The ledger: authorities and holders, read from the chain."""


@app.command("authorities")
def authorities_command(
    data: Annotated[Path, typer.Option(help="The platform's data directory.")] = Path(
        "var/up/platform"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
) -> None:
    """Each authority of GRX and THB on the chain: its threshold, signers and holders."""
    from gridtokenx.ledger import authorities
    from gridtokenx.ledger.backend import ChainView
    from gridtokenx.ledger.embedded import ChainReader

    if not (data / "deployment.json").exists():
        typer.echo(f"error: no ledger deployment in {data} (deployment.json is missing)", err=True)
        raise typer.Exit(2)
    chain: ChainView
    url = os.environ.get("SOLANA_RPC_URL")
    if url:  # accounts only: a throwaway payer, never used to sign
        from solders.keypair import Keypair

        from gridtokenx.ledger.rpc import RpcLedger

        chain = RpcLedger(url, Keypair())
    else:
        chain = ChainReader(data / "chain")
    doc = authorities.of_site(data, chain)
    if as_json:
        typer.echo(json.dumps(doc))
        return
    for a in doc["authorities"]:
        typer.echo(f"{a['name']}: {a['threshold']} of {len(a['signers'])}")
        for s in a["signers"]:
            typer.echo(f"  {s['pubkey']}  {s['holder']}")
