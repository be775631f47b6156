"""A scenario's outputs: summary.json, series.csv, households.csv, PNG plots (matplotlib)
and report.html embedding them; `compare` puts several results side by side."""

from __future__ import annotations

import csv
import html
import json
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


def plots(result: Result, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.series
    hours = np.arange(len(s["epoch"])) / 4
    names = []
    fig, ax = plt.subplots(figsize=(8, 3.2))
    price = [np.nan if p is None else p / 1e6 for p in s["price_uthb_per_kwh"]]
    ax.bar(
        hours, np.array(s["p2p_wh"]) / 1000, width=0.25, color="#9bd3ae", label="P2P volume (kWh)"
    )
    ax2 = ax.twinx()
    ax2.plot(hours, price, color="#2c6fbb", label="price (THB/kWh)")
    ax.set_xlabel("hours")
    ax.set_ylabel("kWh per epoch")
    ax2.set_ylabel("THB/kWh")
    ax.set_title("Price and volume per epoch")
    fig.tight_layout()
    fig.savefig(out / "price_volume.png", dpi=90)
    plt.close(fig)
    names.append("price_volume.png")

    days = max(1, len(s["epoch"]) // 96)

    def per_day(key: str) -> Any:
        return np.array(s[key][: days * 96]).reshape(days, 96).sum(axis=1) / 1000

    fig, ax = plt.subplots(figsize=(8, 3.2))
    x = np.arange(days)
    ax.bar(x - 0.2, per_day("import_wh"), 0.4, label="imported", color="#e59866")
    ax.bar(x + 0.2, per_day("export_wh"), 0.4, label="exported", color="#f7dc6f")
    ax.plot(x, per_day("p2p_wh"), "o-", color="#27ae60", label="traded P2P")
    ax.set_xlabel("day")
    ax.set_ylabel("kWh")
    ax.legend()
    ax.set_title("Daily energy balance of the community")
    fig.tight_layout()
    fig.savefig(out / "daily_balance.png", dpi=90)
    plt.close(fig)
    names.append("daily_balance.png")

    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.fill_between(hours, s["v_min_pu"], s["v_max_pu"], color="#aed6f1", label="bus voltages")
    ax.axhline(0.9, color="#c0392b", lw=0.8)
    ax.axhline(1.1, color="#c0392b", lw=0.8)
    ax.set_xlabel("hours")
    ax.set_ylabel("p.u.")
    ax.set_title("Voltage envelope after curtailment (limits 0.90-1.10 p.u.)")
    fig.tight_layout()
    fig.savefig(out / "voltage_envelope.png", dpi=90)
    plt.close(fig)
    names.append("voltage_envelope.png")

    fig, ax = plt.subplots(figsize=(8, 3.2))
    savings = sorted(h["savings_vs_feed_in_only_uthb"] / 1e6 for h in result.households)
    ax.bar(np.arange(len(savings)), savings, color="#5dade2")
    ax.set_xlabel("household (sorted)")
    ax.set_ylabel("THB")
    ax.set_title("Savings by household versus feed-in only")
    fig.tight_layout()
    fig.savefig(out / "savings.png", dpi=90)
    plt.close(fig)
    names.append("savings.png")
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
<p>{sc.households} households of {html.escape(sc.grid)}, {sc.days} day(s) from day {sc.start_day},
{html.escape(sc.mechanism)}, seed {sc.seed}; {result.epochs} epochs in {result.seconds:.1f} s.</p>
<h2>Community KPIs</h2><table>{rows}</table>
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
