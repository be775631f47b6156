"""`gridtokenx clear`: clear a CSV file of orders as one epoch (the market engine alone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gridtokenx.cli.common import fail, read_text
from gridtokenx.market.config import NO_BREAKER, MarketConfig, Mechanism, Wheeling
from gridtokenx.market.errors import MarketError


def clear_command(
    orders: Annotated[
        Path, typer.Argument(help="CSV: id,owner,side,quantity_kwh,price_thb_per_kwh,zone")
    ],
    mechanism: Annotated[Mechanism, typer.Option(help="Clearing mechanism.")] = Mechanism.UNIFORM,
    fee_bps: Annotated[
        int, typer.Option(help="Platform fee in basis points.", min=0, max=10_000)
    ] = 100,
    wheeling: Annotated[
        Path | None, typer.Option(help="CSV: from_zone,to_zone,thb_per_kwh (seller -> buyer zone).")
    ] = None,
    no_breaker: Annotated[
        bool, typer.Option("--no-breaker", help="Switch off the price circuit breaker.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Clear the orders of a CSV file as one epoch and print the result."""
    from gridtokenx.market.orderfile import clear_file, report

    try:
        matrix = Wheeling.from_csv(read_text(wheeling, "wheeling file")) if wheeling else Wheeling()
        config = MarketConfig(
            mechanism=mechanism,
            fee_bps=fee_bps,
            wheeling=matrix,
            breaker_bps=NO_BREAKER if no_breaker else MarketConfig.breaker_bps,
        )
    except MarketError as exc:
        fail(str(exc))
    cleared = clear_file(read_text(orders, "order file"), config)
    if cleared.errors or cleared.outcome is None:
        for error in cleared.errors:
            typer.echo(f"{orders}:{error}", err=True)
        fail(f"{len(cleared.errors)} malformed row(s); nothing was cleared")
        return
    result = report(cleared.outcome, fee_bps, cleared.rejected)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    price = result["clearing_price_thb_per_kwh"]
    typer.echo(
        f"{len(result['trades'])} trades, {result['volume_kwh']} kWh, "
        f"clearing price {'-' if price is None else price} THB/kWh, "
        f"welfare {result['welfare_thb']} THB"
    )
    if result["halted"]:
        typer.echo(f"market halted: {result['halted']}")
    for t in result["trades"]:
        typer.echo(
            f"  {t['buy_id']} <- {t['sell_id']}: {t['quantity_kwh']} kWh at "
            f"{t['price_thb_per_kwh']} THB/kWh, fee {t['fee_thb']}, wheeling {t['wheeling_thb']}"
        )
    if cleared.rejected:
        typer.echo(f"{len(cleared.rejected)} order(s) refused by the market:")
    for r in cleared.rejected:
        typer.echo(f"  line {r.line} {r.id}: {r.code}: {r.message}")
