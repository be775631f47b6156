"""A scenario file (TOML) and its defaults.

Default tariffs are Thai residential values: retail 4.18 THB/kWh, the average residential
rate with the Ft charge of the Provincial and Metropolitan Electricity Authorities in
2024-2025 (ERC tariff schedule); feed-in 2.20 THB/kWh, the buy-back rate of the
residential rooftop solar ("People's Solar") programme (ERC, 2019). Override them per
scenario.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

MECHANISMS = ("uniform", "cda", "pay-as-bid")


class ScenarioError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Tariffs:
    retail_uthb_per_kwh: int = 4_180_000
    feed_in_uthb_per_kwh: int = 2_200_000
    fee_bps: int = 100


@dataclass(frozen=True)
class Agents:
    """Sellers ask feed-in + a share of the spread, buyers bid retail - a share; each
    household draws its share once (seeded) from [low, high]."""

    spread_low: float = 0.1
    spread_high: float = 0.4
    thb_budget: int = 1_000_000  # THB each household starts with


@dataclass(frozen=True)
class Scenario:
    name: str = "community"
    grid: str = "1-LV-semiurb5--0-sw"
    feeders: int = 1  # the grid repeated side by side (sim/grid.py `feeders`), for more homes
    households: int = 100
    days: int = 1
    start_day: int = 160  # 9 June: a sunny day of the SimBench year
    mechanism: str = "uniform"
    seed: int = 1
    pv_share: float = 0.4
    battery_share: float = 0.3
    grid_check: bool = True
    tariffs: Tariffs = field(default_factory=Tariffs)
    agents: Agents = field(default_factory=Agents)

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise ScenarioError("bad_mechanism", f"mechanism is one of {', '.join(MECHANISMS)}")
        if not 1 <= self.feeders <= 50:
            raise ScenarioError("bad_feeders", "feeders is 1..50")
        if not 1 <= self.households <= 2_000:
            raise ScenarioError("bad_households", "households is 1..2000")
        if not 1 <= self.days <= 366:
            raise ScenarioError("bad_days", "days is 1..366")
        if not 0 <= self.pv_share <= 1 or not 0 <= self.battery_share <= 1:
            raise ScenarioError("bad_share", "shares are within 0..1")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _section(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ScenarioError("unknown_key", f"{where}: {', '.join(sorted(unknown))}")
    return cls(**data)


def load(path: Path, **overrides: Any) -> Scenario:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ScenarioError("unreadable", f"{path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError("bad_toml", f"{path}: {err}") from None
    return from_dict(data, **overrides)


def from_dict(data: dict[str, Any], **overrides: Any) -> Scenario:
    data = dict(data)
    try:
        tariffs = _section(Tariffs, data.pop("tariffs", {}), "[tariffs]")
        agents = _section(Agents, data.pop("agents", {}), "[agents]")
        scenario = _section(Scenario, {**data, "tariffs": tariffs, "agents": agents}, "scenario")
    except TypeError as err:
        raise ScenarioError("bad_value", str(err)) from None
    result: Scenario = replace(scenario, **{k: v for k, v in overrides.items() if v is not None})
    return result
