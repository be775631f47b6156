"""The KPIs, as pure functions of per-household totals (integer Wh and micro-THB).

Definitions (what a meter sees: behind-the-meter self-consumption is not counted):
- self-sufficiency = P2P energy bought / energy imported (household); community: the same
  over all households;
- self-consumption = P2P energy sold / energy exported;
- P2P share = P2P volume / energy imported by the community;
- bills, for the same metered import and export:
  grid-only     = import x retail                          (export earns nothing)
  feed-in-only  = import x retail - export x feed-in
  with P2P      = (import - bought) x retail + paid for P2P
                  - (export - sold) x feed-in - received from P2P
  savings are the grid-only or feed-in-only bill minus the P2P bill;
- the Gini coefficient of the households' savings versus feed-in-only (0 = all save the
  same, 1 = one household takes it all); negative savings are kept as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Totals:
    """One household over a whole scenario."""

    import_wh: int
    export_wh: int
    bought_wh: int
    sold_wh: int
    paid_uthb: int  # for P2P energy, fees and wheeling included
    received_uthb: int  # for P2P energy sold, net of fees


def bill_grid_only(t: Totals, retail: int) -> int:
    return t.import_wh * retail // 1000


def bill_feed_in_only(t: Totals, retail: int, feed_in: int) -> int:
    return t.import_wh * retail // 1000 - t.export_wh * feed_in // 1000


def bill_p2p(t: Totals, retail: int, feed_in: int) -> int:
    from_grid = (t.import_wh - t.bought_wh) * retail // 1000
    to_grid = (t.export_wh - t.sold_wh) * feed_in // 1000
    return from_grid + t.paid_uthb - to_grid - t.received_uthb


def ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def gini(values: Sequence[float]) -> float:
    """The Gini coefficient (mean absolute difference / (2 x mean of absolute values))."""
    n = len(values)
    if n == 0:
        return 0.0
    scale = sum(abs(v) for v in values) / n
    if scale == 0:
        return 0.0
    diff = sum(abs(a - b) for a in values for b in values) / (n * n)
    return diff / (2 * scale)


def household(t: Totals, retail: int, feed_in: int) -> dict[str, float | int | None]:
    p2p = bill_p2p(t, retail, feed_in)
    return {
        "import_wh": t.import_wh,
        "export_wh": t.export_wh,
        "bought_wh": t.bought_wh,
        "sold_wh": t.sold_wh,
        "self_sufficiency": ratio(t.bought_wh, t.import_wh),
        "self_consumption": ratio(t.sold_wh, t.export_wh),
        "bill_grid_only_uthb": bill_grid_only(t, retail),
        "bill_feed_in_only_uthb": bill_feed_in_only(t, retail, feed_in),
        "bill_p2p_uthb": p2p,
        "savings_vs_grid_only_uthb": bill_grid_only(t, retail) - p2p,
        "savings_vs_feed_in_only_uthb": bill_feed_in_only(t, retail, feed_in) - p2p,
    }


def community(totals: Sequence[Totals], retail: int, feed_in: int) -> dict[str, float | int | None]:
    imp = sum(t.import_wh for t in totals)
    exp = sum(t.export_wh for t in totals)
    bought = sum(t.bought_wh for t in totals)
    sold = sum(t.sold_wh for t in totals)
    savings = [bill_feed_in_only(t, retail, feed_in) - bill_p2p(t, retail, feed_in) for t in totals]
    return {
        "import_wh": imp,
        "export_wh": exp,
        "p2p_volume_wh": bought,
        "self_sufficiency": ratio(bought, imp),
        "self_consumption": ratio(sold, exp),
        "p2p_share": ratio(bought, imp),
        "bill_grid_only_uthb": sum(bill_grid_only(t, retail) for t in totals),
        "bill_feed_in_only_uthb": sum(bill_feed_in_only(t, retail, feed_in) for t in totals),
        "bill_p2p_uthb": sum(bill_p2p(t, retail, feed_in) for t in totals),
        "savings_vs_feed_in_only_uthb": sum(savings),
        "gini_savings": gini([float(s) for s in savings]),
    }
