"""What sits behind each meter besides the load: rooftop PV (pvlib clear sky at the site,
dimmed by a seeded cloudiness process) and a home battery run for self-consumption.
Seeded: the same configuration and seed give the same year."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from gridtokenx.sim.grid import F64, STEP_S, Grid


@dataclass(frozen=True)
class Site:
    """Default: Bangkok (13.75 N, 100.50 E)."""

    latitude: float = 13.75
    longitude: float = 100.50
    altitude_m: float = 2.0
    timezone: str = "Asia/Bangkok"
    year: int = 2016  # SimBench's year (a leap year: 35,136 quarter hours)


@dataclass(frozen=True)
class PVConfig:
    share: float = 0.3  # of households with rooftop PV
    kwp_min: float = 3.0
    kwp_max: float = 6.0
    tilt_deg: float = 15.0
    performance_ratio: float = 0.8
    cloudiness: float = 0.25  # mean fraction of clear-sky irradiance lost to clouds


@dataclass(frozen=True)
class BatteryConfig:
    share: float = 0.1  # of households with PV that also have a battery
    capacity_wh: float = 5_000.0
    power_w: float = 2_500.0
    efficiency: float = 0.9  # round trip; losses taken on charging


def clear_sky_w_per_kwp(site: Site, steps: int, tilt_deg: float, pr: float) -> F64:
    """AC watts per installed kWp, per quarter hour, facing the equator, clear sky;
    computed once per site and settings (cache.py)."""
    from gridtokenx.sim import cache

    inputs = {**site.__dict__, "steps": steps, "tilt_deg": tilt_deg, "pr": pr}
    return cache.clear_sky(inputs, lambda: _clear_sky(site, steps, tilt_deg, pr))


def _clear_sky(site: Site, steps: int, tilt_deg: float, pr: float) -> F64:
    import pandas as pd
    from pvlib import irradiance
    from pvlib.location import Location

    times = pd.date_range(f"{site.year}-01-01", periods=steps, freq="15min", tz=site.timezone)
    location = Location(site.latitude, site.longitude, site.timezone, site.altitude_m)
    sky = location.get_clearsky(times + pd.Timedelta(minutes=7.5))  # mid-interval
    sun = location.get_solarposition(times + pd.Timedelta(minutes=7.5))
    azimuth = 180.0 if site.latitude >= 0 else 0.0
    poa = irradiance.get_total_irradiance(
        tilt_deg,
        azimuth,
        sun["apparent_zenith"],
        sun["azimuth"],
        sky["dni"],
        sky["ghi"],
        sky["dhi"],
    )["poa_global"].fillna(0.0)
    return np.asarray(np.clip(poa.to_numpy() * pr, 0.0, None), dtype=np.float64)


def cloudiness(steps: int, mean_loss: float, rng: np.random.Generator) -> F64:
    """Clear-sky index per step in [0, 1]: an AR(1) process with the given mean loss."""
    index = np.empty(steps)
    x = 0.0
    noise = rng.normal(0.0, 0.35, steps)
    for k in range(steps):
        x = 0.97 * x + noise[k] * np.sqrt(1 - 0.97**2)
        index[k] = x
    return np.asarray(np.clip(1.0 - mean_loss + 0.5 * mean_loss * index, 0.0, 1.0))


def self_consumption(net_w: F64, cfg: BatteryConfig) -> tuple[F64, F64]:
    """Run a battery for self-consumption: charge from surplus, discharge to cover need.
    Returns (net power after the battery, state of charge in Wh), per step."""
    out = net_w.copy()
    soc = np.empty_like(net_w)
    level = 0.0
    hours = STEP_S / 3600
    for k, p in enumerate(net_w):
        if p < 0:  # surplus: charge
            charge = min(-p, cfg.power_w, (cfg.capacity_wh - level) / (hours * cfg.efficiency))
            level += charge * hours * cfg.efficiency
            out[k] = p + charge
        elif p > 0:  # need: discharge
            give = min(p, cfg.power_w, level / hours)
            level -= give * hours
            out[k] = p - give
        soc[k] = level
    return out, soc


@dataclass(frozen=True)
class Equipment:
    pv_kwp: tuple[float, ...]  # per household, 0 without PV
    battery: tuple[bool, ...]


def equip(
    grid: Grid,
    pv: PVConfig | None = PVConfig(),
    battery: BatteryConfig | None = BatteryConfig(),
    site: Site = Site(),
    seed: int = 1,
    until: int | None = None,
) -> tuple[Grid, Equipment]:
    """A copy of `grid` whose households' net power includes pvlib PV and batteries.

    With `until`, the copy covers only the first `until` steps (a scenario's end): the
    same values there as for the whole year, since the batteries run from the year's
    start either way and the random draws do not depend on it."""
    rng = np.random.default_rng(seed)
    n = len(grid.households)
    end = grid.steps if until is None else min(until, grid.steps)
    kwp = np.zeros(n)
    extra = np.zeros((end, n))
    if pv is not None and pv.share > 0:
        with_pv = rng.random(n) < pv.share
        kwp[with_pv] = np.round(rng.uniform(pv.kwp_min, pv.kwp_max, with_pv.sum()), 1)
        shape = clear_sky_w_per_kwp(site, grid.steps, pv.tilt_deg, pv.performance_ratio)
        sky = cloudiness(grid.steps, pv.cloudiness, rng)
        extra = np.outer((shape * sky)[:end], kwp)
    net = grid.household_net(extra, end)
    has_battery = np.zeros(n, bool)
    if battery is not None and battery.share > 0:
        has_battery = (kwp > 0) & (rng.random(n) < battery.share)
        for k in np.flatnonzero(has_battery):
            net[:, k], _ = self_consumption(net[:, k], battery)
    equipment = Equipment(tuple(kwp.tolist()), tuple(has_battery.tolist()))
    if end == grid.steps:
        return replace(grid, net_w=net), equipment
    window = replace(
        grid,
        load_p_w=grid.load_p_w[:end],
        load_q_var=grid.load_q_var[:end],
        sgen_p_w=grid.sgen_p_w[:end],
        net_w=net,
    )
    return window, equipment
