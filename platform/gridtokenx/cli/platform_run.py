"""`gridtokenx platform run`: serve the platform API and run the market's epochs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gridtokenx.cli.common import fail, serve
from gridtokenx.market.config import Mechanism

SWITCH_S = 0.0005  # the interpreter lock's hand-off (`sys.setswitchinterval`; default 5 ms)

app = typer.Typer(help="The platform service: API, co-signer, ledger.", no_args_is_help=True)


@app.command("run")
def platform_run(
    data: Annotated[Path, typer.Option(envvar="GTX_DATA", help="Keystore, chain, books.")] = Path(
        "var/platform"
    ),
    host: Annotated[str, typer.Option(envvar="GTX_HTTP_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="GTX_HTTP_PORT")] = 8090,
    database: Annotated[str | None, typer.Option(envvar="DATABASE_URL")] = None,
    epoch_s: Annotated[float, typer.Option(help="Epoch length in seconds.")] = 900.0,
    mechanism: Annotated[str, typer.Option(help="uniform, pay-as-bid or cda.")] = "uniform",
    agents: Annotated[bool, typer.Option(help="Run the demo trading agents.")] = False,
    grid: Annotated[
        str | None, typer.Option(help="SimBench grid of the feeder: trades are checked on it.")
    ] = None,
    demo_grant_thb: Annotated[int, typer.Option(help="THB for each sign-up (demo).")] = 0,
    auto_approve: Annotated[
        bool,
        typer.Option(
            help="Approve each sign-up at once (demo); otherwise an operator approves it "
            "on /admin or POST /api/v1/admin/users/{id}/approve before it can trade."
        ),
    ] = False,
    kyc_url: Annotated[
        str | None,
        typer.Option(
            help="A KYC service: each sign-up is POSTed to it and approved if it passes "
            "(audited); otherwise it waits for an operator."
        ),
    ] = None,
    scheduler: Annotated[
        bool, typer.Option(help="Run the market (on PostgreSQL: campaign to be its sequencer).")
    ] = True,
    fronts: Annotated[
        int,
        typer.Option(
            min=0,
            max=16,
            help="Front processes that take the HTTP connections on --port (the HTTP work on "
            "other cores; this process places the orders and serves the rest to them).",
        ),
    ] = 0,
) -> None:
    """Serve the platform API, run the market's epochs, until SIGTERM/SIGINT.

    The admin token (bootstrap) comes from GTX_ADMIN_TOKEN; Redis (REDIS_URL) shares rate
    limits and events between instances."""
    import os
    import threading

    from gridtokenx import heap
    from gridtokenx.bootstrap import Settings, build
    from gridtokenx.errors import Unavailable
    from gridtokenx.ledger.keystore import KeystoreError
    from gridtokenx.market.config import MarketConfig
    from gridtokenx.sim.grid import GridError

    # the group-commit thread gives the interpreter lock up at every database call and
    # waits for it again: with the default 5 ms hand-off it waited more than it worked
    # (`platform run --fronts 1`: 1,060 -> 1,700-1,800 orders/s at 0.5 ms)
    sys.setswitchinterval(SWITCH_S)
    os.umask(0o077)  # books, keystore, chain log: personal data and keys, owner only
    settings = Settings.from_env(
        data=data,
        database=database,
        market=MarketConfig(mechanism=Mechanism(mechanism)),
        epoch_s=epoch_s,
        grid=grid,
        elect=True,  # on PostgreSQL any number of instances: one sequencer
        campaign=scheduler,
        demo_grant=demo_grant_thb * 1_000_000,
        auto_approve=auto_approve,
        kyc_url=kyc_url,
    )
    try:
        instance = build(settings)
    except (KeystoreError, GridError) as err:
        fail(str(err))
    except Unavailable as err:  # a co-signer (GTX_COSIGNERS) that never answered, say
        fail(f"{err}; is it running?")
    platform, trading, election = instance.platform, instance.trading, instance.election
    typer.echo(f"platform: GRX mint {platform.dep.grx.address}, data in {data}")
    if instance.fee is not None:  # the governance threshold's
        typer.echo(f"platform: market fee {instance.fee} bps, from the chain's governance decision")
    typer.echo(
        "platform: sign-ups are "
        + (
            "approved at once (--auto-approve: a demo setting)"
            if auto_approve
            else f"approved when the KYC check at {kyc_url} passes, else by an operator"
            if kyc_url
            else "pending until an operator approves them"
        )
    )
    app_ = instance.app()
    from gridtokenx.hub import logs

    logs.configure(os.environ.get("GTX_LOG_FORMAT", "json"))  # JSON lines, request ids
    logs.install(app_, access_lines=not fronts)  # with fronts, each front writes the line
    stop = threading.Event()
    if agents:
        from gridtokenx.agents import Agents

        traders = Agents(trading, stop=stop)
        threading.Thread(target=traders.run, name="agents", daemon=True).start()

    def epochs() -> None:
        while not stop.wait(0.25):
            try:
                if election is not None and not election.holds():
                    if trading.leading:
                        trading.step_down()
                        typer.echo("platform: no longer the market sequencer")
                    trading.follow()
                    continue
                if not trading.leading:
                    trading.lead()
                    typer.echo("platform: this instance is the market sequencer")
                for epoch in trading.tick():
                    typer.echo(f"platform: epoch {epoch} cleared and settled")
            except Exception as exc:  # the ledger or database away: retried next tick
                typer.echo(f"platform: epoch pipeline failed ({exc.__class__.__name__}: {exc})")

    clock = threading.Thread(target=epochs, name="epochs", daemon=True)
    running_clock = scheduler or election is not None  # an instance follows the sequencer
    if running_clock:
        clock.start()
    # the client's address is the API's to decide (GTX_TRUSTED_PROXIES, `api.limits`), not
    # uvicorn's default rewriting from 127.0.0.1's X-Forwarded-For (a second, looser rule)
    heap.settle()  # the instance's long-lived objects out of every later collection
    if fronts:
        from gridtokenx.cli.fronts import serve_with_fronts

        secret = instance.accounts.secret
        serve_with_fronts(app_, data, host, port, fronts, secret)
    else:
        ready = f"platform: ready, API at http://{host}:{port}/api/v1 (docs at /docs)"
        serve(app_, host, port, ready, proxy_headers=False)
    stop.set()
    if running_clock:
        clock.join(timeout=30)
    pipeline_ran_on = clock.is_alive()  # still settling an epoch after 30 s
    if pipeline_ran_on:
        typer.echo("platform: the epoch pipeline is still running: the ledger is left open")
    instance.close(ledger=not pipeline_ran_on)  # the placements taken answered, the lock freed
    typer.echo("platform stopped cleanly")
