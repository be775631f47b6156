"""The feeder balance: the households' meters must add up to the transformer's meter.

A signature proves which meter spoke, not that it told the truth. The grid operator's
reference meter on the LV side of the transformer (role `feeder`) counts everything the
neighbourhood draws, plus the line losses. Per balance window [t0, t1]:

    gap_wh = feeder_net_wh - (sum of households' net_wh + losses_wh)
    flagged `feeder_imbalance` when |gap_wh| > tolerance_wh + tolerance_ppm * gross_wh / 1e6

net = import - export, gross = import + export of the households (as they report them),
losses_wh = fixed_w * hours + ppm_per_kw * P_kw * P_w / 1e6 * hours at the feeder's mean
power P (I^2 R: losses grow with the square of the flow). A meter that over-reports its
export (or under-reports its import) makes the gap positive by exactly its lie.

Registers are cumulative, so a meter's registers at a moment between two of its readings
are interpolated linearly; every meter then covers the very same window. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    OK = "ok"
    FEEDER_IMBALANCE = "feeder_imbalance"
    INCOMPLETE = "incomplete"  # a meter has read nothing since the window's start


@dataclass(frozen=True, slots=True)
class LossModel:
    """The loss model and the tolerance, configured by the grid operator (integers).

    Defaults: losses fitted to the default SimBench grid's power flow over a year
    (`gridtokenx.sim.feeder.fit_losses`, 97 ppm per kW), no fixed part (an LV-side meter
    does not see the transformer's own losses), and 1 % of the households' gross energy +
    20 Wh of tolerance (a class 1 meter's accuracy; the fitted model's worst error over the
    year is 0.6 % of the flow)."""

    ppm_per_kw: int = 97
    fixed_w: int = 0
    tolerance_wh: int = 20
    tolerance_ppm: int = 10_000

    def losses_wh(self, feeder_net_wh: int, duration_s: int) -> int:
        """Losses in the window at the feeder's mean power, rounded to the Wh."""
        if duration_s <= 0:
            return 0
        # P_w = E * 3600 / d; losses_wh = (fixed_w + ppm * P_w^2 / 1e9) * d / 3600, over
        # the common denominator 3600e9 * d and rounded half up once
        numerator = (
            self.ppm_per_kw * feeder_net_wh * feeder_net_wh * 3600 * 3600
            + self.fixed_w * duration_s * duration_s * 1_000_000_000
        )
        denominator = 3_600_000_000_000 * duration_s
        return (numerator + denominator // 2) // denominator

    def tolerance(self, gross_wh: int) -> int:
        return self.tolerance_wh + (self.tolerance_ppm * gross_wh + 500_000) // 1_000_000


@dataclass(frozen=True, slots=True)
class Sample:
    """A reading's cumulative registers at its timestamp."""

    ts: int
    import_wh: int
    export_wh: int


@dataclass(frozen=True, slots=True)
class Energy:
    """A meter's energy in a window, Wh."""

    import_wh: int
    export_wh: int

    @property
    def net_wh(self) -> int:
        return self.import_wh - self.export_wh


def register_at(before: Sample, after: Sample | None, t: int) -> tuple[int, int]:
    """A meter's (import, export) registers at `t`, between two of its readings (floor of
    the linear interpolation; `before` itself when it is at `t` or nothing follows)."""
    if after is None or before.ts >= t or after.ts <= before.ts:
        return before.import_wh, before.export_wh
    span, part = after.ts - before.ts, min(t, after.ts) - before.ts
    return (
        before.import_wh + (after.import_wh - before.import_wh) * part // span,
        before.export_wh + (after.export_wh - before.export_wh) * part // span,
    )


def window_energy(at_t0: tuple[int, int], at_t1: tuple[int, int]) -> Energy:
    return Energy(at_t1[0] - at_t0[0], at_t1[1] - at_t0[1])


@dataclass(frozen=True, slots=True)
class Balance:
    t0: int
    t1: int
    households_wh: int  # sum of net (import - export)
    gross_wh: int  # sum of import + export
    feeder_wh: int  # the feeder meter's net
    losses_wh: int
    gap_wh: int  # feeder - households - losses: energy the meters do not account for
    tolerance_wh: int
    verdict: Verdict
    named: tuple[str, ...] = ()

    @property
    def flagged(self) -> bool:
        return self.verdict is Verdict.FEEDER_IMBALANCE


def balance(
    t0: int, t1: int, households: Mapping[str, Energy], feeder: Energy, model: LossModel
) -> Balance:
    """The balance rule over [t0, t1] (see the module docstring)."""
    net = sum(e.net_wh for e in households.values())
    gross = sum(e.import_wh + e.export_wh for e in households.values())
    losses = model.losses_wh(feeder.net_wh, t1 - t0)
    gap = feeder.net_wh - net - losses
    tolerance = model.tolerance(gross)
    verdict = Verdict.FEEDER_IMBALANCE if abs(gap) > tolerance else Verdict.OK
    return Balance(t0, t1, net, gross, feeder.net_wh, losses, gap, tolerance, verdict)


def incomplete(t0: int, t1: int) -> Balance:
    return Balance(t0, t1, 0, 0, 0, 0, 0, 0, Verdict.INCOMPLETE)


def _register(e: Energy | None, export: bool) -> int:
    if e is None:
        return 0
    return e.export_wh if export else e.import_wh


def suspects(
    history: Sequence[tuple[int, Mapping[str, Energy]]], share: float = 0.8
) -> tuple[str, ...]:
    """The meters whose own energy explains the gaps: for each meter, how closely the gap
    series of the recent windows follows its export (an over-reported export) or its
    import (an under-reported one): cos^2 of the angle between the two series, i.e. the
    share of the gaps a factor times that series explains. Named: the meters scoring at
    least `share` of the best score, best first. With one window every meter that moved
    energy explains it equally; the list narrows as windows accumulate."""
    gaps = [g for g, _ in history]
    gg = sum(g * g for g in gaps)
    if gg == 0:
        return ()
    meters = sorted({m for _, energies in history for m in energies})
    scores: dict[str, float] = {}
    for meter in meters:
        best = 0.0
        for export in (True, False):
            xs = [_register(e.get(meter), export) for _, e in history]
            xx = sum(x * x for x in xs)
            if xx:
                gx = sum(g * x for g, x in zip(gaps, xs, strict=True))
                best = max(best, gx * gx / (gg * xx))
        if best > 0:
            scores[meter] = best
    if not scores:
        return ()
    top = max(scores.values())
    return tuple(sorted((m for m in scores if scores[m] >= share * top), key=lambda m: -scores[m]))
