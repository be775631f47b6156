"""`gridtokenx governance ...`: proposals signed by independent parties, executed on-chain.

propose and execute write to the site's chain: on the embedded ledger, run them while the
platform process is stopped (one writer per chain), or propose and execute through the
running platform (the admin API's /api/v1/admin/governance, the operator page), which share
DATA/governance.json. sign only reads the chain and the signer's own keystore."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from gridtokenx.errors import CodedError

app = typer.Typer(help="Governance proposals: pause, resume, rotate keys, change the fee.")

Data = Annotated[Path, typer.Option(help="The platform's data directory.")]


@app.callback(no_args_is_help=True)
def _group() -> None:
    """Governance proposals: pause, resume, rotate keys, change the fee."""


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _site(data: Path) -> Any:
    from gridtokenx.ledger import site
    from gridtokenx.ledger.deployment import Deployment
    from gridtokenx.ledger.keystore import KeystoreError

    if not (data / "deployment.json").exists():
        _fail(f"no ledger deployment in {data} (deployment.json is missing)")
    try:
        keys = site.open_keystore(data)
    except KeystoreError as err:
        _fail(str(err))
    return Deployment.load(site.open_ledger(data, keys), keys, data / "deployment.json")


def _store(data: Path) -> Any:
    from gridtokenx.governance import Proposals

    return Proposals(data / "governance.json")


@app.command("propose")
def propose_command(
    kind: Annotated[
        str, typer.Argument(help="pause, resume, rotate-oracle, rotate-governance, fee")
    ],
    data: Data = Path("var/up/platform"),
    arg: Annotated[
        list[str] | None, typer.Option(help="key=value: party=P key=PUBKEY, or bps=N.")
    ] = None,
    signers: Annotated[
        str, typer.Option(help="The parties whose keys the message names, comma separated.")
    ] = "platform,grid-operator",
) -> None:
    """Propose; prints the proposal (JSON) with the keys that must sign."""
    from gridtokenx import governance

    args = dict(a.split("=", 1) for a in arg or [] if "=" in a)
    try:
        proposal = governance.propose(
            _site(data), _store(data), kind, args, [s for s in signers.split(",") if s]
        )
    except CodedError as err:
        _fail(str(err))
    typer.echo(json.dumps(proposal.as_dict()))


@app.command("sign")
def sign_command(
    proposal_id: Annotated[int, typer.Argument()],
    role: Annotated[str, typer.Option(help="The signing party: platform, grid-operator, auditor.")],
    keystore: Annotated[
        Path, typer.Option(help="That party's own keystore (GTX_KEYSTORE_PASSPHRASE or _KEY).")
    ],
    data: Data = Path("var/up/platform"),
) -> None:
    """Check the proposal's message against what it says, then sign it with one key."""
    from gridtokenx import governance
    from gridtokenx.ledger.backend import Ledger
    from gridtokenx.ledger.deployment import Deployment, governance_key, oracle_key
    from gridtokenx.ledger.embedded import ChainReader
    from gridtokenx.ledger.keystore import Keystore, KeystoreError, secret_from_env

    store = _store(data)
    try:
        keys = Keystore(keystore, secret_from_env())
        proposal = store.get(proposal_id)
        name = (oracle_key if proposal.authority == "oracle" else governance_key)(role)
        # addresses only: the chain is read, never written, by a signer
        chain = cast(Ledger, ChainReader(data / "chain"))
        dep = Deployment.load(chain, keys, data / "deployment.json")
        done = governance.sign(dep, store, proposal_id, keys.get(name))
    except (CodedError, KeystoreError) as err:
        _fail(str(err))
    typer.echo(json.dumps(done.as_dict()))


@app.command("execute")
def execute_command(
    proposal_id: Annotated[int, typer.Argument()],
    data: Data = Path("var/up/platform"),
    database: Annotated[
        str | None, typer.Option(help="The books (audit log) URL (default: DATA/books.db).")
    ] = None,
) -> None:
    """Send it with the signatures it has: the chain refuses one short of its threshold."""
    from gridtokenx import governance
    from gridtokenx.adapters import books

    dep = _site(data)
    engine = books.connect(database or f"sqlite:///{data / 'books.db'}")
    try:
        done = governance.execute(dep, _store(data), proposal_id, engine, data / "deployment.json")
    except CodedError as err:
        _fail(str(err), 1)
    typer.echo(json.dumps(done.as_dict()))


@app.command("list")
def list_command(
    data: Data = Path("var/up/platform"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every proposal: kind, arguments, status, the signatures it still lacks."""
    proposals = [p.as_dict() for p in _store(data).all()]
    if as_json:
        typer.echo(json.dumps({"proposals": proposals}))
        return
    for p in proposals:
        typer.echo(f"{p['id']} {p['kind']} {p['args']} {p['status']} missing={len(p['missing'])}")
