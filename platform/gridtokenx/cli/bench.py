"""`gridtokenx bench ...`: benchmarks that print measured figures as JSON."""

from __future__ import annotations

from typing import Annotated

import typer

from gridtokenx.cli.common import emit, fail

app = typer.Typer(help="Benchmarks that print measured figures as JSON.", no_args_is_help=True)


@app.command("clearing")
def bench_clearing(
    orders: Annotated[int, typer.Option(min=2, help="Orders in the epoch.")] = 1_000_000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Uniform-price clearing of one epoch of random orders."""
    from gridtokenx import bench

    emit(bench.clearing(orders), as_json)


@app.command("cda")
def bench_cda(
    orders: Annotated[int, typer.Option(min=2, help="Orders placed one by one.")] = 1_000_000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Continuous double auction throughput, in process."""
    from gridtokenx import bench

    emit(bench.cda(orders), as_json)


@app.command("firmware")
def bench_firmware(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Sign and encode timings and the heap a meter cycle needs, on the MicroPython port."""
    from gridtokenx import bench

    try:
        emit(bench.firmware(), as_json)
    except RuntimeError as exc:
        fail(str(exc))


@app.command("hub")
def bench_hub(
    readings: Annotated[int, typer.Option(min=1, help="Signed readings to publish.")] = 10_000,
    meters: Annotated[int, typer.Option(min=1, help="Distinct meters.")] = 1_000,
    database: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default: a temporary SQLite file).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """End-to-end hub ingest: Mosquitto -> verify -> rules -> database."""
    from gridtokenx.hub import bench as hub_bench

    try:
        emit(hub_bench.run(readings, meters, database), as_json)
    except RuntimeError as exc:
        fail(str(exc))


@app.command("enrol")
def bench_enrol(
    meters: Annotated[int, typer.Option(min=1, max=1_000, help="Meters to register.")] = 12,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Hub registrations as `up` makes them: one process per meter against one batch."""
    from gridtokenx.hub import enrolbench

    emit(enrolbench.run(meters), as_json)


@app.command("powerflow")
def bench_powerflow(
    grid: Annotated[str, typer.Option(help="SimBench grid code.")] = "1-LV-semiurb4--0-sw",
    steps: Annotated[int, typer.Option(min=1, help="Quarter hours (35,136 = a year).")] = 35_136,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """AC power flow over many steps with the batch solver."""
    from gridtokenx import bench
    from gridtokenx.sim.grid import GridError

    try:
        emit(bench.powerflow(grid, steps), as_json)
    except GridError as exc:
        fail(str(exc))


@app.command("settle")
def bench_settle(
    trades: Annotated[int, typer.Option(min=1)] = 10_000,
    participants: Annotated[int, typer.Option(min=2)] = 1_000,
    meters: Annotated[int, typer.Option(min=1)] = 1_000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Settle an epoch of N trades and mint for M meters on the embedded ledger."""
    from gridtokenx.ledger import bench as ledger_bench

    emit(ledger_bench.run(trades, participants, meters), as_json)


@app.command("api")
def bench_api(
    orders: Annotated[int, typer.Option(min=1, max=1_000_000)] = 2_000,
    concurrency: Annotated[int, typer.Option(min=1, max=256)] = 16,
    instances: Annotated[
        int, typer.Option(min=1, max=16, help="Platform processes on one --database.")
    ] = 1,
    database: Annotated[
        str | None, typer.Option(help="The books' PostgreSQL URL (needed for --instances).")
    ] = None,
    fronts: Annotated[
        int,
        typer.Option(
            min=0,
            max=16,
            help="Each instance's front processes (--fronts; 1, as docker-compose.yml runs it).",
        ),
    ] = 1,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Place N orders over HTTP against a platform on 127.0.0.1 (or N instances of it)."""
    from gridtokenx import apibench

    if instances > 1 and not (database or "").startswith("postgresql"):
        fail("--instances needs --database postgresql+psycopg://... (one database for all)")
    emit(apibench.run(orders, concurrency, instances, database, fronts), as_json)


@app.command("growth")
def bench_growth(
    epochs: Annotated[int, typer.Option(min=1, help="Epochs of history (a year: 35040).")] = 35_040,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Orders/s, epoch close-to-settled and the account page, empty vs a year of history."""
    from gridtokenx import growthbench

    emit(growthbench.run(epochs), as_json)


@app.command("scenario")
def bench_scenario(
    households: Annotated[int, typer.Option(min=1, max=2_000)] = 100,
    days: Annotated[int, typer.Option(min=1, max=366)] = 1,
    grid: Annotated[str | None, typer.Option(help="SimBench grid code.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Time a scenario: physics, readings, market, curtailment and settlement per day."""
    from gridtokenx import bench
    from gridtokenx.scenarios.config import ScenarioError

    try:
        emit(bench.scenario(households, days, grid), as_json)
    except ScenarioError as err:
        fail(str(err))
