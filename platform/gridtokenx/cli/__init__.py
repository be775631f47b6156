"""The `gridtokenx` command: one module per command group, assembled here.

Thin: each command parses, calls a service, formats; errors are messages (`common.fail`)."""

from __future__ import annotations

import typer

from gridtokenx.cli import (
    audit,
    backup,
    bench,
    cosigner,
    firmware,
    governance,
    ledger,
    market,
    platform_run,
    scenario,
    sim,
    site,
    statement,
    wallet,
    wire,
)
from gridtokenx.hub.cli import app as hub_app

app = typer.Typer(
    help="GridTokenX: a peer-to-peer energy market from the meter to Solana.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# single commands, then the groups, in the order `gridtokenx --help` lists them
app.command("statement")(statement.statement_command)
app.command("verify")(statement.verify_command)
app.command("clear")(market.clear_command)
app.command("certs")(site.certs)
app.command("up")(site.up)
app.command("audit")(audit.audit_command)
app.command("retention")(audit.retention_command)
app.add_typer(bench.app, name="bench")
app.add_typer(wire.app, name="wire")
app.add_typer(hub_app, name="hub")
app.add_typer(sim.app, name="sim")
app.add_typer(firmware.app, name="firmware")
app.add_typer(ledger.app, name="ledger")
app.add_typer(cosigner.app, name="cosigner")
app.add_typer(governance.app, name="governance")
app.add_typer(wallet.app, name="wallet")
app.add_typer(platform_run.app, name="platform")
app.add_typer(backup.app, name="backup")
app.add_typer(scenario.app, name="scenario")


def main() -> None:
    app()
