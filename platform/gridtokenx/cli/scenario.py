"""`gridtokenx scenario ...`: research scenarios and their reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gridtokenx.cli.common import fail

app = typer.Typer(help="Research scenarios: a community over days or a year.", no_args_is_help=True)


def _scenario(path: Path | None, **overrides: Any) -> Any:
    from gridtokenx.scenarios.config import Scenario, ScenarioError, from_dict, load

    try:
        if path is None:
            return from_dict({}, **overrides) if overrides else Scenario()
        return load(path, **overrides)
    except ScenarioError as err:
        fail(str(err))


@app.command("run")
def scenario_run(
    scenario: Annotated[Path | None, typer.Argument(help="SCENARIO.toml (optional).")] = None,
    grid: Annotated[str | None, typer.Option(help="SimBench grid code.")] = None,
    households: Annotated[int | None, typer.Option(min=1)] = None,
    days: Annotated[int | None, typer.Option(min=1, max=366)] = None,
    mechanism: Annotated[str | None, typer.Option(help="uniform, cda or pay-as-bid.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    out: Annotated[Path, typer.Option(help="Where the report goes.")] = Path("var/scenarios/run"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run a scenario and write its report (summary.json, CSVs, PNGs, report.html)."""
    from gridtokenx.scenarios import report
    from gridtokenx.scenarios.run import run

    sc = _scenario(
        scenario, grid=grid, households=households, days=days, mechanism=mechanism, seed=seed
    )
    from gridtokenx.scenarios.config import ScenarioError
    from gridtokenx.scenarios.progress import bar

    try:
        with bar(sc.name) as progress:
            result = run(sc, progress=progress)
    except ScenarioError as err:
        fail(str(err))
    text = scenario.read_text() if scenario is not None else None
    page = report.write(result, out, text)
    if as_json:
        typer.echo(json.dumps(report.summary(result)))
    else:
        typer.echo(f"{result.epochs} epochs in {result.seconds:.1f} s; report: {page}")


@app.command("compare")
def scenario_compare(
    scenarios: Annotated[list[Path], typer.Argument(help="Two or more SCENARIO.toml files.")],
    out: Annotated[Path, typer.Option(help="Where the comparison goes.")] = Path(
        "var/scenarios/compare"
    ),
) -> None:
    """Run several scenarios and put their KPIs side by side (one table, one plot)."""
    from gridtokenx.scenarios import report
    from gridtokenx.scenarios.progress import bar
    from gridtokenx.scenarios.run import run

    results = []
    for k, path in enumerate(scenarios):
        sc = _scenario(path)
        with bar(f"{k + 1}/{len(scenarios)} {sc.name}") as progress:
            result = run(sc, progress=progress)
        report.write(result, out / f"{k}-{path.stem}", path.read_text())
        results.append(result)
        typer.echo(f"{path}: {result.epochs} epochs in {result.seconds:.1f} s")
    typer.echo(f"comparison: {report.compare(results, out)}")
