"""A scenario's outputs: summary.json, series.csv, households.csv, PNG plots (matplotlib)
and report.html embedding them; `compare` puts several results side by side."""

from __future__ import annotations

import csv
import html
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gridtokenx.scenarios.run import Result

KPI_ROWS = (
    ("self_sufficiency", "self-sufficiency", "{:.1%}"),
    ("self_consumption", "self-consumption", "{:.1%}"),
    ("p2p_volume_wh", "P2P volume (kWh)", "kwh"),
    ("p2p_share", "P2P share of imports", "{:.1%}"),
    ("average_price_uthb_per_kwh", "average price (THB/kWh)", "thb"),
    ("bill_grid_only_uthb", "bills, grid only (THB)", "thb"),
    ("bill_feed_in_only_uthb", "bills, feed-in only (THB)", "thb"),
    ("bill_p2p_uthb", "bills with P2P (THB)", "thb"),
    ("savings_vs_feed_in_only_uthb", "savings vs feed-in only (THB)", "thb"),
    ("gini_savings", "Gini of savings", "{:.3f}"),
    ("curtailed_wh", "curtailed (kWh)", "kwh"),
    ("epochs_with_violations_before", "epochs with violations, before curtailment", "{}"),
    ("epochs_with_violations_after", "epochs with violations, after", "{}"),
)


def fmt(value: Any, how: str) -> str:
    if value is None:
        return "-"
    if how == "kwh":
        return f"{value / 1000:,.1f}"
    if how == "thb":
        return f"{value / 1_000_000:,.2f}"
    return how.format(value)


def summary(result: Result) -> dict[str, Any]:
    return {
        "scenario": result.scenario.as_dict(),
        "epochs": result.epochs,
        "seconds": round(result.seconds, 3),
        "community": result.community,
        "checks": result.checks,
        "trades_sha256": result.trades_digest,
        "versions": result.versions,
    }


SEASONS = (  # by month of the profiles' year
    ("Dec-Feb", (12, 1, 2)),
    ("Mar-May", (3, 4, 5)),
    ("Jun-Aug", (6, 7, 8)),
    ("Sep-Nov", (9, 10, 11)),
)
LONG_RUN_DAYS = 7  # beyond this, per-epoch plots are unreadable: per day and per hour instead


def _grid_of_days(result: Result, values: Sequence[float | None]) -> tuple[Any, Any]:
    """`values` per epoch laid out as [day, quarter hour] (NaN where missing), and the
    days of the profiles' year those rows are."""
    steps = np.asarray(result.series["step"], dtype=np.int64)
    first, last = int(steps.min()) // 96, int(steps.max()) // 96
    table = np.full((last - first + 1, 96), np.nan)
    data = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    table[steps // 96 - first, steps % 96] = data
    return table, np.arange(first, last + 1)


def figures(result: Result) -> dict[str, Any]:
    """Every plot of the report as a matplotlib Figure, by file name (axes labelled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.series
    hours = np.arange(len(s["epoch"])) / 4
    days = max(1, len(s["epoch"]) // 96)
    long_run = days > LONG_RUN_DAYS
    price = [None if p is None else p / 1e6 for p in s["price_uthb_per_kwh"]]
    out: dict[str, Any] = {}

    if not long_run:
        fig, ax = plt.subplots(figsize=(8, 3.2))
        ax.bar(
            hours,
            np.array(s["p2p_wh"]) / 1000,
            width=0.25,
            color="#9bd3ae",
            label="P2P volume (kWh)",
        )
        ax2 = ax.twinx()
        ax2.plot(hours, [np.nan if p is None else p for p in price], color="#2c6fbb")
        ax.set_xlabel("hours from the start")
        ax.set_ylabel("kWh per epoch")
        ax2.set_ylabel("THB/kWh")
        ax.set_title("Price and volume per epoch")
        out["price_volume.png"] = fig

    fig, ax = plt.subplots(figsize=(8, 4.2))
    table, rows = _grid_of_days(result, price)
    image = ax.imshow(
        table,
        aspect="auto",
        origin="lower",
        cmap="viridis",
        extent=(0, 24, rows[0], rows[-1] + 1),
        interpolation="nearest",
    )
    fig.colorbar(image, ax=ax, label="P2P price (THB/kWh)")
    ax.set_xlabel("time of day (hours)")
    ax.set_ylabel("day of the year")
    ax.set_title("P2P price by day and time of day (blank: no trade)")
    out["price_heatmap.png"] = fig

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    traded = sorted((p for p in price if p is not None), reverse=True)
    left.plot(np.linspace(0, 100, len(traded)), traded, color="#2c6fbb")
    left.set_xlabel("share of epochs with trades (%)")
    left.set_ylabel("THB/kWh")
    left.set_title("Price duration curve")
    volume = np.sort(np.array(s["p2p_wh"], dtype=np.float64))[::-1] / 1000
    right.plot(np.linspace(0, 100, len(volume)), volume, color="#27ae60")
    right.set_xlabel("share of epochs (%)")
    right.set_ylabel("kWh per epoch")
    right.set_title("Volume duration curve")
    out["duration_curves.png"] = fig

    fig, ax = plt.subplots(figsize=(8, 3.2))
    x = np.arange(days)

    def per_day(key: str) -> Any:
        return np.array(s[key][: days * 96]).reshape(days, 96).sum(axis=1) / 1000

    if long_run:  # lines: a year of bars is a solid block
        ax.plot(x, per_day("import_wh"), lw=0.8, color="#e59866", label="imported")
        ax.plot(x, per_day("export_wh"), lw=0.8, color="#d4ac0d", label="exported")
        ax.plot(x, per_day("p2p_wh"), lw=0.8, color="#27ae60", label="traded P2P")
    else:
        ax.bar(x - 0.27, per_day("import_wh"), 0.27, label="imported", color="#e59866")
        ax.bar(x, per_day("export_wh"), 0.27, label="exported", color="#f7dc6f")
        ax.bar(x + 0.27, per_day("p2p_wh"), 0.27, label="traded P2P", color="#27ae60")
    ax.set_xlabel("day of the scenario")
    ax.set_ylabel("kWh per day")
    ax.legend()
    ax.set_title("Daily energy balance of the community (metered)")
    out["daily_balance.png"] = fig

    fig, axes = plt.subplots(1, len(SEASONS), figsize=(11, 3.2), sharey=True)
    steps = np.asarray(s["step"], dtype=np.int64)
    month = (np.datetime64("2016-01-01") + (steps // 96).astype("timedelta64[D]")).astype(
        "datetime64[M]"
    ).astype(int) % 12 + 1  # the SimBench year is 2016
    grid_import = np.array(s["import_wh"]) - np.array(s["p2p_wh"])
    quarter = steps % 96
    drawn = None
    for ax, (name, months) in zip(axes, SEASONS, strict=True):
        chosen = np.isin(month, months)
        ax.set_title(f"{name} ({int(chosen.sum()) // 96} days)", fontsize=10)
        ax.set_xlabel("time of day (hours)")
        ax.set_xlim(0, 24)
        if not chosen.any():
            continue
        drawn = ax
        for key, values, colour in (
            ("imported", np.array(s["import_wh"]), "#e59866"),
            ("exported", np.array(s["export_wh"]), "#d4ac0d"),
            ("traded P2P", np.array(s["p2p_wh"]), "#27ae60"),
            ("from the grid", grid_import, "#7f8c8d"),
        ):
            mean = np.bincount(quarter[chosen], values[chosen], 96) / np.maximum(
                np.bincount(quarter[chosen], minlength=96), 1
            )
            ax.plot(np.arange(96) / 4, mean * 4 / 1000, color=colour, label=key)
    axes[0].set_ylabel("community average kW")
    if drawn is not None:
        drawn.legend(fontsize=8)
    fig.suptitle("Typical day per season (metered import and export, P2P, grid import)")
    out["typical_days.png"] = fig

    fig, ax = plt.subplots(figsize=(8, 3.2))
    if long_run:
        with warnings.catch_warnings():  # a day without a grid check is all NaN: a gap
            warnings.simplefilter("ignore", RuntimeWarning)
            low = np.nanmin(np.array(s["v_min_pu"][: days * 96], float).reshape(days, 96), 1)
            high = np.nanmax(np.array(s["v_max_pu"][: days * 96], float).reshape(days, 96), 1)
        ax.fill_between(x, low, high, color="#aed6f1", label="bus voltages")
        ax.set_xlabel("day of the scenario")
    else:
        ax.fill_between(hours, s["v_min_pu"], s["v_max_pu"], color="#aed6f1")
        ax.set_xlabel("hours from the start")
    ax.axhline(0.9, color="#c0392b", lw=0.8)
    ax.axhline(1.1, color="#c0392b", lw=0.8)
    ax.set_ylabel("bus voltage (p.u.)")
    ax.set_title("Voltage envelope after curtailment (limits 0.90-1.10 p.u.)")
    out["voltage_envelope.png"] = fig

    fig, ax = plt.subplots(figsize=(8, 3.2))
    savings = sorted(h["savings_vs_feed_in_only_uthb"] / 1e6 for h in result.households)
    ax.bar(np.arange(len(savings)), savings, color="#5dade2")
    ax.set_xlabel("household (sorted by savings)")
    ax.set_ylabel("THB")
    ax.set_title("Savings by household versus feed-in only")
    out["savings.png"] = fig
    return out


def plots(result: Result, out: Path) -> list[str]:
    """Write every figure as a PNG into `out`; returns the file names, in report order."""
    import matplotlib.pyplot as plt

    names = []
    for name, fig in figures(result).items():
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        names.append(name)
    return names


def write(result: Result, out: Path, scenario_text: str | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    doc = summary(result)
    if scenario_text is not None:
        doc["scenario_file"] = scenario_text
    (out / "summary.json").write_text(json.dumps(doc, indent=1))
    with (out / "series.csv").open("w", newline="") as f:
        w = csv.writer(f)
        keys = list(result.series)
        w.writerow(keys)
        w.writerows(zip(*(result.series[k] for k in keys), strict=True))
    with (out / "households.csv").open("w", newline="") as f:
        hw = csv.DictWriter(f, fieldnames=list(result.households[0]))
        hw.writeheader()
        hw.writerows(result.households)
    images = plots(result, out)
    sc = result.scenario
    rows = "".join(
        f"<tr><td>{label}</td><td>{fmt(result.community.get(key), how)}</td></tr>"
        for key, label, how in KPI_ROWS
    )
    checks = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in result.checks.items()
    )
    figures = "".join(
        f'<p><img src="{name}" alt="{name}" style="max-width:100%"></p>' for name in images
    )
    (out / "report.html").write_text(
        f"""<!doctype html><html lang="en"><meta charset="utf-8">
<title>{html.escape(sc.name)}</title>
<body style="font-family:system-ui,sans-serif;max-width:900px;margin:auto">
<h1>{html.escape(sc.name)}</h1>
<table><caption style="text-align:left;font-weight:bold">Community KPIs</caption>{rows}</table>
<p>{sc.households} households of {html.escape(sc.grid)} ({sc.feeders} feeder(s)), {sc.days}
day(s) from day {sc.start_day}, {html.escape(sc.mechanism)}, seed {sc.seed};
{result.epochs} epochs in {result.seconds:.1f} s.</p>
<h2>Checks</h2><table>{checks}</table>
{figures}
<p style="color:#777">Versions: {html.escape(json.dumps(result.versions))}</p>
</body></html>"""
    )
    return out / "report.html"


def compare(results: Sequence[Result], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    labels = [f"{r.scenario.name} ({r.scenario.mechanism})" for r in results]
    table = [
        {
            "kpi": label,
            **{lab: fmt(r.community.get(key), how) for lab, r in zip(labels, results, strict=True)},
        }
        for key, label, how in KPI_ROWS
    ]
    (out / "comparison.json").write_text(
        json.dumps({"scenarios": [summary(r) for r in results], "table": table}, indent=1)
    )
    with (out / "comparison.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["kpi", *labels])
        w.writeheader()
        w.writerows(table)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, (key, title, scale) in zip(
        axes,
        (
            ("p2p_share", "P2P share of imports", 1),
            ("average_price_uthb_per_kwh", "average price (THB/kWh)", 1e-6),
            ("savings_vs_feed_in_only_uthb", "savings vs feed-in only (THB)", 1e-6),
        ),
        strict=True,
    ):
        ax.bar(
            range(len(results)),
            [(r.community.get(key) or 0) * scale for r in results],
            color="#5dade2",
        )
        ax.set_xticks(range(len(results)), [r.scenario.mechanism for r in results])
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "comparison.png", dpi=90)
    plt.close(fig)
    head = "".join(f"<th>{html.escape(lab)}</th>" for lab in labels)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>"
        for row in table
    )
    (out / "comparison.html").write_text(
        f"""<!doctype html><html lang="en"><meta charset="utf-8"><title>comparison</title>
<body style="font-family:system-ui,sans-serif;max-width:1000px;margin:auto"><h1>Comparison</h1>
<table><tr><th>KPI</th>{head}</tr>{body}</table>
<p><img src="comparison.png" alt="comparison" style="max-width:100%"></p></body></html>"""
    )
    return out / "comparison.html"
