"""The feeder reference meter's physics: what the transformer delivers into the LV grid.

The grid operator's meter sits on the LV side of the transformer, so it counts the
households' net energy plus the line losses the power flow computes at that load. A
neighbourhood of the first `n` households is the same grid with the others' loads and PV
switched off (the cables stay; nobody else draws from them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from nacl.signing import SigningKey

from gridtokenx.sim.grid import F64, STEP_S, Grid
from gridtokenx.sim.meters import GridMeters
from gridtokenx.sim.powerflow import BatchSolver
from gridtokenx.sim.registers import ChipValues
from gridtokenx.wire.envelope import seal
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic


def neighbourhood(grid: Grid, n: int) -> Grid:
    """A copy of `grid` where only its first `n` households draw or feed in."""
    if not 0 < n <= len(grid.households):
        raise ValueError(f"a neighbourhood of 1..{len(grid.households)} households, not {n}")
    load_p, load_q, sgen_p = grid.load_p_w.copy(), grid.load_q_var.copy(), grid.sgen_p_w.copy()
    net_w = grid.net_w.copy()
    loads = {int(i): k for k, i in enumerate(grid.net.load.index)}
    sgens = {int(i): k for k, i in enumerate(grid.net.sgen.index)}
    for k, h in enumerate(grid.households[n:], start=n):
        net_w[:, k] = 0.0
        if h.load is not None:
            load_p[:, loads[h.load]] = 0.0
            load_q[:, loads[h.load]] = 0.0
        if h.sgen is not None:
            sgen_p[:, sgens[h.sgen]] = 0.0
    return replace(
        grid,
        households=list(grid.households[:n]),
        load_p_w=load_p,
        load_q_var=load_q,
        sgen_p_w=sgen_p,
        net_w=net_w[:, :n],
    )


def transformer_w(grid: Grid, start: int, steps: int, solver: BatchSolver | None = None) -> F64:
    """Per step, the active power (W) the transformer delivers into the LV grid: the sum of
    the households' net power plus the line losses (negative when PV feeds back)."""
    solver = solver or BatchSolver(grid)
    flow = solver.solve(*grid.injections(start, steps), threads=1)
    return np.asarray(flow.trafo_p_w[:, 0], dtype=np.float64)


@dataclass(frozen=True)
class LossFit:
    """Line losses as a share of the feeder's flow: losses_w = ppm_per_kw * P_kw * P_w / 1e6
    (I^2 R at a roughly constant voltage), fitted by least squares over the steps."""

    ppm_per_kw: int
    worst_residual_w: float  # the largest |power-flow loss - fitted loss| over the steps
    mean_loss_w: float


def fit_losses(grid: Grid, start: int = 0, steps: int | None = None) -> LossFit:
    """Fit the hub's loss model to the power flow of `steps` quarter hours from `start`."""
    count = grid.steps - start if steps is None else steps
    p = transformer_w(grid, start, count)
    loss = p - grid.net_w[start : start + count].sum(axis=1)
    c = float((loss * p**2).sum() / max((p**4).sum(), 1e-9))  # losses_w = c * P^2
    residual = loss - c * p**2
    return LossFit(round(c * 1e9), float(np.abs(residual).max()), float(loss.mean()))


# 2016-01-01 00:00 in Bangkok (UTC+7), SimBench step 0; aligned to the hub's epochs
YEAR_START_UNIX = 1_451_581_200


@dataclass
class SignedNeighbourhood:
    """The households' meters and the feeder meter of a GridMeters, read every
    `interval_s` on a simulated clock (each meter at its own seeded phase, as free-running
    boards do) and signed in the wire format, each with its own key. What a hub receives
    from a neighbourhood, quicker than the clock: one epoch of messages per call."""

    meters: GridMeters
    feeder_w: F64  # the transformer's power per step from meters.start_step
    interval_s: int = 300
    seed: int = 7
    keys: dict[str, SigningKey] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    phase: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        for meter_id in self.meter_ids:
            self.keys.setdefault(meter_id, SigningKey(rng.bytes(32)))
            self.seq.setdefault(meter_id, 0)
            self.phase.setdefault(meter_id, int(rng.integers(0, self.interval_s)))

    @classmethod
    def create(
        cls, grid: Grid, start_step: int, steps: int, interval_s: int = 300, seed: int = 7
    ) -> SignedNeighbourhood:
        """Every household of `grid` and a feeder meter, for `steps` quarter hours."""
        meters = GridMeters.create(grid, len(grid.households), speed=1.0, start_step=start_step)
        meters.add_feeder()
        return cls(meters, transformer_w(grid, start_step, steps), interval_s, seed)

    @property
    def meter_ids(self) -> list[str]:
        ids = [m.home.meter_id for m in self.meters.homes]
        return ids + ([self.meters.feeder.meter_id] if self.meters.feeder else [])

    @property
    def now(self) -> int:
        return YEAR_START_UNIX + self.meters.start_step * STEP_S + int(self.meters.sim_seconds)

    def _values(self, meter_id: str) -> ChipValues:
        feeder = self.meters.feeder
        if feeder is not None and meter_id == feeder.meter_id:
            return feeder.chip.values
        return next(m.chip.values for m in self.meters.homes if m.home.meter_id == meter_id)

    def epoch(self) -> tuple[int, list[tuple[str, bytes]]]:
        """Advance one quarter hour; (the epoch number, its messages in time order)."""
        begin = self.now
        events = sorted(
            (t, meter_id)
            for meter_id in self.meter_ids
            for t in range(
                begin + (self.phase[meter_id] - (begin - YEAR_START_UNIX)) % self.interval_s,
                begin + STEP_S,
                self.interval_s,
            )
        )
        step = int(self.meters.sim_seconds // STEP_S)
        power = float(self.feeder_w[step])
        messages = []
        for t, meter_id in events:
            if t > self.now:
                self.meters.advance(t - self.now, feeder_w=power)
            v = self._values(meter_id)
            self.seq[meter_id] += 1
            raw = encode(
                Reading(
                    meter_id,
                    self.seq[meter_id],
                    t,
                    v.import_wh,
                    v.export_wh,
                    self.interval_s,
                    v.voltage_dv,
                    v.current_ma,
                    v.pf_milli,
                    v.freq_chz,
                )
            )
            messages.append(
                (reading_topic(meter_id), seal(raw, READING_DOMAIN, self.keys[meter_id]))
            )
        self.meters.advance(begin + STEP_S - self.now, feeder_w=power)
        return begin // STEP_S, messages
