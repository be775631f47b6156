"""The scenario report's plots: every figure is written and its axes are labelled, for a
one-day run and for a year (where per-epoch plots give way to per-day ones)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gridtokenx.scenarios import report
from gridtokenx.scenarios.config import Scenario
from gridtokenx.scenarios.run import Result


def synthetic(days: int, start_day: int = 0) -> Result:
    """A result with a plausible shape (sunny noons trade, nights do not), made up: the
    report only reads the series and the households."""
    n = days * 96
    steps = np.arange(start_day * 96, start_day * 96 + n)
    quarter = steps % 96
    sun = np.clip(np.sin((quarter - 24) / 48 * np.pi), 0, None)
    export = (sun * 40_000).astype(int)
    imp = (20_000 - sun * 15_000).astype(int)
    p2p = np.minimum(export, imp) // 2
    price = [3_000_000 + int(q) * 1_000 if v else None for q, v in zip(quarter, p2p, strict=True)]
    series = {
        "epoch": list(range(1, n + 1)),
        "step": steps.tolist(),
        "import_wh": imp.tolist(),
        "export_wh": export.tolist(),
        "p2p_wh": p2p.tolist(),
        "price_uthb_per_kwh": price,
        "curtailed_wh": [0] * n,
        "v_min_pu": (0.97 - sun * 0.01).tolist(),
        "v_max_pu": (1.0 + sun * 0.03).tolist(),
        "violation_before": [False] * n,
        "violation_after": [False] * n,
    }
    households = [
        {"meter_id": f"hh-{k}", "savings_vs_feed_in_only_uthb": k * 1000} for k in range(9)
    ]
    community = {"self_sufficiency": 0.25, "p2p_volume_wh": int(p2p.sum())}
    sc = Scenario(name="synthetic", households=9, days=days, start_day=start_day)
    return Result(sc, n, 1.0, series, households, community, {"escrow_empty": True}, "0" * 64)


@pytest.mark.parametrize(("days", "start_day"), [(1, 160), (366, 0)])
def test_every_plot_is_written_with_labelled_axes(
    tmp_path: Path, days: int, start_day: int
) -> None:
    result = synthetic(days, start_day)
    figures = report.figures(result)
    expected = {
        "price_heatmap.png",
        "duration_curves.png",
        "daily_balance.png",
        "typical_days.png",
        "voltage_envelope.png",
        "savings.png",
    }
    assert set(figures) == expected | ({"price_volume.png"} if days == 1 else set())
    for name, fig in figures.items():
        for ax in fig.axes:
            if ax.get_label() == "<colorbar>":
                assert ax.get_ylabel() == "P2P price (THB/kWh)"
                continue
            # labelled, or sharing the axis with one that is (a twin, a shared y)
            xs = ax.get_shared_x_axes().get_siblings(ax)
            ys = ax.get_shared_y_axes().get_siblings(ax)
            assert any(a.get_xlabel() for a in xs), name
            assert any(a.get_ylabel() for a in ys), name
        assert fig.axes[0].get_title() or fig.get_suptitle(), name
    heat = figures["price_heatmap.png"].axes[0]
    assert (heat.get_xlabel(), heat.get_ylabel()) == ("time of day (hours)", "day of the year")
    seasons = [ax.get_title() for ax in figures["typical_days.png"].axes]
    if days == 366:
        assert seasons == [
            "Dec-Feb (91 days)",
            "Mar-May (92 days)",
            "Jun-Aug (92 days)",
            "Sep-Nov (91 days)",
        ]
    else:
        assert seasons[2] == "Jun-Aug (1 days)"  # day 160 of 2016 is 9 June
    page = report.write(result, tmp_path)
    for name in figures:
        assert (tmp_path / name).stat().st_size > 5_000, name
    text = page.read_text()
    assert text.index("<table>") < text.index("<img")  # the report opens with the KPIs
    assert text.index("self-sufficiency") < text.index("Checks")
