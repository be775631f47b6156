"""A low-voltage grid with a year of 15-minute profiles: SimBench, offline.

Every load and PV element becomes a household meter at a bus with coordinates. Profiles
are kept in watts (float arrays, physics) with 35,136 quarter-hour steps for a SimBench
year; meters turn them into integer Wh registers.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

DEFAULT_GRID = "1-LV-semiurb4--0-sw"
STEP_S = 900

F64 = NDArray[np.float64]


class GridError(ValueError):
    """A grid code or file that cannot be loaded (with a user-facing message)."""


@dataclass(frozen=True)
class Household:
    meter_id: str
    bus: int  # pandapower bus index
    load: int | None  # pandapower load index, if it consumes
    sgen: int | None  # pandapower sgen (PV) index, if it generates
    zone: str
    x: float
    y: float


@dataclass
class Grid:
    code: str
    net: Any  # pandapowerNet
    households: list[Household]
    load_p_w: F64  # [steps, loads]
    load_q_var: F64
    sgen_p_w: F64  # [steps, sgens]

    @property
    def steps(self) -> int:
        return int(self.load_p_w.shape[0])


def _coordinates(net: Any, bus: int) -> tuple[float, float]:
    if "geo" in net.bus and isinstance(net.bus.at[bus, "geo"], str):
        x, y = json.loads(net.bus.at[bus, "geo"])["coordinates"][:2]
        return float(x), float(y)
    return 0.0, 0.0


def load_simbench(code: str = DEFAULT_GRID) -> Grid:
    """Load a SimBench grid and its year of profiles (from the simbench package's data)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import simbench

        try:
            net = simbench.get_simbench_net(code)
        except Exception as exc:  # simbench raises plain ValueError/KeyError for a bad code
            raise GridError(f"{code!r} is not a SimBench grid code: {exc}") from None
        profiles = simbench.get_absolute_values(net, profiles_instead_of_study_cases=True)
    load_p = profiles[("load", "p_mw")].to_numpy(dtype=np.float64) * 1e6
    load_q = profiles[("load", "q_mvar")].to_numpy(dtype=np.float64) * 1e6
    sgen_p = profiles[("sgen", "p_mw")].to_numpy(dtype=np.float64) * 1e6
    net.trafo["vector_group"] = net.trafo["vector_group"].fillna("Dyn5")
    households = []
    pv_at = {int(net.sgen.at[i, "bus"]): int(i) for i in net.sgen.index}
    for n, i in enumerate(net.load.index):
        bus = int(net.load.at[i, "bus"])
        x, y = _coordinates(net, bus)
        households.append(
            Household(f"hh-{n + 1:03d}", bus, int(i), pv_at.pop(bus, None), "feeder", x, y)
        )
    for i in pv_at.values():  # PV without a load at its bus: a generating-only meter
        bus = int(net.sgen.at[i, "bus"])
        x, y = _coordinates(net, bus)
        households.append(Household(f"pv-{len(households) + 1:03d}", bus, None, i, "feeder", x, y))
    return Grid(code, net, households, load_p, load_q, sgen_p)
