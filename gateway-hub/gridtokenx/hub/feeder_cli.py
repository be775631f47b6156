"""`gridtokenx hub feeder ...`: the grid operator's side of the feeder balance."""

from __future__ import annotations

from typing import Annotated

import typer

from gridtokenx.hub import balances
from gridtokenx.hub.balances import FeederError
from gridtokenx.hub.cli_common import DatabaseOption, fail_coded
from gridtokenx.hub.cli_common import open_store as _store
from gridtokenx.hub.feeder import LossModel
from gridtokenx.hub.store import DEFAULT_URL

feeder_app = typer.Typer(
    help="The feeder reference meter, its balance, and held batches.", no_args_is_help=True
)
DEFAULTS = LossModel()


def _fail(err: FeederError) -> None:
    fail_coded(err.code, err.message)


@feeder_app.command("set")
def feeder_set(
    meter_id: Annotated[str, typer.Argument(help="The reference meter at the transformer.")],
    ppm_per_kw: Annotated[
        int, typer.Option(help="Line losses: ppm of the flow per kW of flow.")
    ] = DEFAULTS.ppm_per_kw,
    fixed_w: Annotated[int, typer.Option(help="Losses independent of the flow, W.")] = 0,
    tolerance_wh: Annotated[int, typer.Option(help="Tolerance per window, Wh.")] = (
        DEFAULTS.tolerance_wh
    ),
    tolerance_ppm: Annotated[
        int, typer.Option(help="Tolerance, ppm of the households' gross energy.")
    ] = DEFAULTS.tolerance_ppm,
    database: DatabaseOption = DEFAULT_URL,
) -> None:
    """Make a registered meter the feeder reference meter (role `feeder`)."""
    model = LossModel(ppm_per_kw, fixed_w, tolerance_wh, tolerance_ppm)
    try:
        balances.set_feeder(_store(database), meter_id, model)
    except FeederError as err:
        _fail(err)
    typer.echo(f"feeder meter {meter_id}: {model}")


@feeder_app.command("show")
def feeder_show(
    limit: Annotated[int, typer.Option(help="How many balances.")] = 20,
    database: DatabaseOption = DEFAULT_URL,
) -> None:
    """The newest balances: window, verdict, gap, tolerance, named meters, batch state."""
    for b in balances.recent(_store(database), limit):
        named = ",".join(b["named"]) or "-"
        typer.echo(
            f"{b['epoch']}\t{b['verdict']}\tgap {b['gap_wh']} Wh\t"
            f"tolerance {b['tolerance_wh']} Wh\t{named}\t{b['batch_state'] or '-'}"
        )


def _review(epoch: int, release: bool, database: str) -> None:
    try:
        state = balances.review(_store(database), epoch, release)
    except FeederError as err:
        _fail(err)
        return
    typer.echo(f"batch of epoch {epoch}: {state}")


@feeder_app.command("release")
def feeder_release(epoch: int, database: DatabaseOption = DEFAULT_URL) -> None:
    """Release a held batch to the outbox (the imbalance had an innocent cause)."""
    _review(epoch, True, database)


@feeder_app.command("reject")
def feeder_reject(epoch: int, database: DatabaseOption = DEFAULT_URL) -> None:
    """Reject a held batch: it is never submitted. Suspend the lying meter as well, or its
    cumulative registers carry the lie into its next batch."""
    _review(epoch, False, database)
