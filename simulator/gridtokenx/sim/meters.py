"""Emulated meters driven by the grid: each household's chip counts the energy of its
profile (consumption minus PV) on a simulated clock and shows the voltage the power flow
computes at its bus.

Time runs `speed` times faster than the wall clock from a start step of the SimBench year.
Energy is integrated exactly (float Wh) and the chip registers show whole Wh, so every
household's registers follow its physics to the watt-hour (tests/test_sim.py).

With a feeder meter (`GridMeters.feeder`), one more chip counts what the transformer
delivers into the LV grid, losses included (sim/feeder.py). A household with
`over_report` plays a tampered meter: its export register shows (1 + over_report) times
the energy it really exported, while the physics (and the feeder) see the truth; its
readings are still signed with its own key, as a reflashed board would sign them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from gridtokenx.sim.devices import EmulatedChip
from gridtokenx.sim.grid import STEP_S, Grid, Household
from gridtokenx.sim.powerflow import BatchSolver


@dataclass
class MeteredHousehold:
    home: Household
    chip: EmulatedChip
    imported_wh: float = 0.0  # exact integrals since the start
    exported_wh: float = 0.0
    base_import: int = 0
    base_export: int = 0
    over_report: float = 0.0  # a tampered firmware's factor on the export it reports


@dataclass
class MeteredFeeder:
    """The grid operator's reference meter at the transformer's LV side."""

    meter_id: str
    chip: EmulatedChip
    imported_wh: float = 0.0
    exported_wh: float = 0.0
    base_import: int = 1_000_000


@dataclass
class GridMeters:
    grid: Grid
    homes: list[MeteredHousehold]
    speed: float = 60.0
    start_step: int = 0
    tick_s: float = 0.1
    sim_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    record: bool = False
    # with `record`: (sim seconds before, dt, [(import_wh, export_wh) registers per home])
    log: list[tuple[float, float, list[tuple[int, int]]]] = field(default_factory=list)
    feeder: MeteredFeeder | None = None

    @classmethod
    def create(
        cls,
        grid: Grid,
        households: int,
        speed: float,
        start_step: int,
        exporters_first: bool = False,
    ) -> GridMeters:
        """Meters for the first `households` of the grid (with `exporters_first`, those
        exporting at the start step come first, so that a small demo has sellers)."""
        chosen = list(grid.households)
        if exporters_first:
            net = grid.net_w[start_step % grid.steps]
            chosen.sort(key=lambda h: net[grid.households.index(h)] >= 0)
        homes = []
        for k, home in enumerate(chosen[:households]):
            chip = EmulatedChip("sdm120" if home.sgen is not None else "pzem004t", unit=k + 1)
            base = 1_000 * (k + 1)
            chip.update(import_wh=base, voltage_dv=2300, pf_milli=990, freq_chz=5000)
            homes.append(MeteredHousehold(home, chip, base_import=base))
        return cls(grid, homes, speed, start_step)

    def power_w(self, home: Household, step: int) -> float:
        """Net power of a household at a step: positive imports, negative exports."""
        return float(self.grid.net_w[step % self.grid.steps, self._index[home.meter_id]])

    @cached_property
    def _index(self) -> dict[str, int]:
        return {h.meter_id: k for k, h in enumerate(self.grid.households)}

    def _flow(self, solver: BatchSolver, step: int) -> tuple[np.ndarray, float]:
        """Bus voltages and the transformer's LV-side power at a step."""
        s = step % self.grid.steps
        flow = solver.solve(*self.grid.injections(s, 1), threads=1)
        return np.asarray(flow.v_pu[0]), float(flow.trafo_p_w[0, 0])

    def add_feeder(self, meter_id: str = "feeder-001") -> MeteredFeeder:
        """Add the feeder reference meter (an SDM120-class chip, unit after the homes)."""
        chip = EmulatedChip("sdm120", unit=len(self.homes) + 1)
        self.feeder = MeteredFeeder(meter_id, chip)
        chip.update(import_wh=self.feeder.base_import, voltage_dv=2300, pf_milli=990)
        chip.update(freq_chz=5000)
        return self.feeder

    def _count_feeder(self, p: float, sim_dt: float) -> None:
        f = self.feeder
        assert f is not None
        if p >= 0:
            f.imported_wh += p * sim_dt / 3600
        else:
            f.exported_wh += -p * sim_dt / 3600
        f.chip.update(
            import_wh=f.base_import + int(f.imported_wh),
            export_wh=int(f.exported_wh),
            current_ma=round(abs(p) / 230.0 * 1000),
            power_dw=round(abs(p) * 10),
        )

    def advance(
        self, sim_dt: float, v_pu: np.ndarray | None = None, feeder_w: float | None = None
    ) -> None:
        """Move the simulated clock by sim_dt seconds and update every chip (the feeder's
        with `feeder_w`, the transformer's power at this step)."""
        with self.lock:
            step = self.start_step + int(self.sim_seconds // STEP_S)
            if self.feeder is not None and feeder_w is not None:
                self._count_feeder(feeder_w, sim_dt)
            for m in self.homes:
                p = self.power_w(m.home, step)
                if p >= 0:
                    m.imported_wh += p * sim_dt / 3600
                else:
                    m.exported_wh += -p * sim_dt / 3600
                volts = 230.0 * (float(v_pu[m.home.bus]) if v_pu is not None else 1.0)
                m.chip.update(
                    import_wh=m.base_import + int(m.imported_wh),
                    export_wh=m.base_export + int(m.exported_wh * (1.0 + m.over_report)),
                    voltage_dv=round(volts * 10),
                    current_ma=round(abs(p) / volts * 1000),
                    power_dw=round(abs(p) * 10),
                )
            if self.record:
                registers = [(m.chip.values.import_wh, m.chip.values.export_wh) for m in self.homes]
                self.log.append((self.sim_seconds, sim_dt, registers))
            self.sim_seconds += sim_dt

    def run(self, stop: threading.Event) -> None:
        """Advance with the wall clock x speed until `stop`; power flow once per step."""
        solver = BatchSolver(self.grid)
        step_done = -1
        v_pu = None
        feeder_w = None
        last = time.monotonic()
        while not stop.wait(self.tick_s):
            now = time.monotonic()
            step = self.start_step + int(self.sim_seconds // STEP_S)
            if step != step_done:
                v_pu, feeder_w = self._flow(solver, step)
                step_done = step
            self.advance((now - last) * self.speed, v_pu, feeder_w)
            last = now
