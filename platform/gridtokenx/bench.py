"""Benchmarks (`gridtokenx bench ...`): measured figures as JSON, never timed tests."""

from __future__ import annotations

import gc
import re
import resource
import time
from typing import Any

import numpy as np

from gridtokenx.market.auction import OrderTable, Pricing, clear
from gridtokenx.market.config import MarketConfig, Mechanism
from gridtokenx.market.engine import Market
from gridtokenx.market.orders import Order, Side


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def random_table(n: int, seed: int = 1) -> OrderTable:
    """n orders, half buys, prices 2.00-8.00 THB/kWh in satang steps, 0.1-10 kWh."""
    rng = np.random.default_rng(seed)
    is_buy = rng.random(n) < 0.5
    price = rng.integers(200, 801, n, dtype=np.int64) * 10_000
    qty = rng.integers(100, 10_001, n, dtype=np.int64)
    return OrderTable(
        is_buy=is_buy,
        qty=qty,
        price=price,
        zone=np.zeros(n, np.int64),
        seq=np.arange(n, dtype=np.int64),
        fok=np.zeros(n, bool),
        zones=("default",),
    )


def clearing(orders: int, seed: int = 1) -> dict[str, Any]:
    """Uniform-price clearing of one epoch, including the per-order allocation."""
    table = random_table(orders, seed)
    wheeling = np.zeros((1, 1), np.int64)
    gc.collect()
    start = time.perf_counter()
    result = clear(table, wheeling, Pricing.UNIFORM)
    seconds = time.perf_counter() - start
    return {
        "benchmark": "clearing",
        "orders": orders,
        "trades": len(result.trade_qty),
        "volume_wh": result.volume_wh,
        "seconds": round(seconds, 4),
        "orders_per_s": round(orders / seconds),
        "peak_rss_mb": peak_rss_mb(),
    }


def cda(orders: int, seed: int = 1) -> dict[str, Any]:
    """Continuous double auction: place `orders` one by one through full validation."""
    rng = np.random.default_rng(seed)
    sides = (rng.random(orders) < 0.5).tolist()
    # A tight band around 5 THB so that about half the orders trade on arrival.
    prices = (rng.integers(480, 521, orders) * 10_000).tolist()
    qty = rng.integers(100, 10_001, orders).tolist()
    batch = [
        Order(
            id=str(k),
            owner=f"u{k}",
            side=Side.BUY if sides[k] else Side.SELL,
            quantity_wh=qty[k],
            price=prices[k],
        )
        for k in range(orders)
    ]
    market = Market(
        MarketConfig(mechanism=Mechanism.CDA, breaker_bps=10_000, max_open_orders_per_user=10**9)
    )
    gc.collect()
    gc.disable()
    trades = 0
    start = time.perf_counter()
    place = market.place
    for order in batch:
        trades += len(place(order, 0))
    seconds = time.perf_counter() - start
    gc.enable()
    return {
        "benchmark": "cda",
        "orders": orders,
        "trades": trades,
        "seconds": round(seconds, 4),
        "orders_per_s": round(orders / seconds),
        "peak_rss_mb": peak_rss_mb(),
    }


# -- firmware on the MicroPython unix port ---------------------------------------------

# Timings of the loaded firmware (gtx.app directly: its names count here, not in the
# real start's heap, which runs as its own process).
FIRMWARE_TIMING = """
import gc, sys, time, json
from gtx import app
cfg = app.load_config(sys.argv[1])  # a path: the unix port dies on an argv over ~256 bytes
meter = app.Meter(cfg)
gc.collect()
baseline = gc.mem_alloc()
from gtx import ed25519, reading
n = 20
t = time.ticks_us()
for i in range(n):
    ed25519.sign(meter.seed, b"x" * 80 + bytes([i]), meter.public)
sign_us = time.ticks_diff(time.ticks_us(), t) / n
t = time.ticks_us()
for i in range(1000):
    reading.encode_reading("mtr-0001", i, 1767225600 + i, 1234567 + i, 89012, 60,
                           2301, 5120, 985, 5000, 0)
encode_us = time.ticks_diff(time.ticks_us(), t) / 1000
print(json.dumps({"sign_us": sign_us, "encode_us": encode_us, "baseline": baseline}))
"""

# The real start's interned names (qstrs): main.py run by import, as `micropython main.py`
# runs it, then the pool counts. The import adds `main` and main.py's path to the count.
REAL_START_QSTRS = (
    "import sys; sys.argv[1:] = ['config.json', '3']; import main, micropython; "
    "micropython.qstr_info()"
)
QSTR_INFO = re.compile(r"n_pool=(\d+), n_qstr=(\d+)")


def real_start(micropython: str, image: Any, heap_kb: int) -> bool:
    """A meter's real start in `heap_kb` of heap: `micropython main.py config.json 3` in its
    image (main.py -> bootslot -> gtx.app.run), three readings read, encoded, signed,
    stored and published, the status published, the connection closed."""
    import subprocess

    done = subprocess.run(
        [micropython, "-X", f"heapsize={heap_kb}k", "main.py", "config.json", "3"],
        capture_output=True,
        env={"MICROPYPATH": f"{image}:{image / 'lib'}:.frozen", "PATH": "/usr/bin:/bin"},
        cwd=image,
        timeout=120,
    )
    return done.returncode == 0


def smallest_heap(works: Any, high: int) -> int:
    """The smallest heap in KB that `works(kb)` holds, searching 8..high."""
    low = 8
    if not works(high):
        raise RuntimeError(f"a meter's real start failed even with {high} KB of heap")
    while high - low > 1:
        mid = (low + high) // 2
        if works(mid):
            high = mid
        else:
            low = mid
    return high


# Its own run: names in a script are interned on the meter and count for its heap.
UPDATE_VERIFY = """
import time, json
from gtx import ed25519, ota
seed = bytes(range(32))
public = ed25519.public_key(seed)
signature = ed25519.sign(seed, b"x" * 44, public)
t = time.ticks_us()
for i in range(5):
    assert ota.verify(public, b"x" * 44, signature)
print(json.dumps({"verify_us": time.ticks_diff(time.ticks_us(), t) / 5}))
"""


def firmware() -> dict[str, Any]:
    """Sign and encode timings, and the smallest heap a meter's real start runs in.

    The firmware runs as the .mpy image `gridtokenx firmware build` makes. `peak_heap_kb`
    is the smallest `micropython -X heapsize=N` in which a real start works: main.py,
    bootslot (which image to run), then gtx.app.run for three full cycles (chip read over
    Modbus from an emulated PZEM-004T, CBOR, Ed25519, ring write, QoS 1 publish to a
    private Mosquitto) and the signed status. On the unix port the firmware's bytecode and
    its interned names live in that heap too (`baseline_heap_kb`: gtx.app loaded;
    `qstrs`/`qstr_pools`: the real start's names, firmware/README.md on the cliff).
    `peak_heap_kb_tls` is the same start over MQTT over TLS (the site CA pinned): the unix
    port's mbedtls allocates its record buffers in that heap as well."""
    import json
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from gridtokenx.provision import _tool, build
    from gridtokenx.sim.devices import ChipServer, EmulatedChip, free_port

    micropython = _tool("micropython")
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory() as tmp, ChipServer([EmulatedChip()]) as chips:
        port = free_port()
        broker = subprocess.Popen(
            [mosquitto, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            time.sleep(0.5)
            flash = Path(tmp) / "flash"
            cfg = {
                "meter_id": "bench",
                "uart": {"tcp": chips.address, "timeout_ms": 100},
                "broker": {"host": "127.0.0.1", "port": port},
                "data_dir": str(flash),
                "interval_s": 0,  # the three readings one after the other
                "heartbeat_s": 300,
                "ring_capacity": 16,
                "ack": False,  # no hub: the broker's PUBACK frees a reading
                "watchdog_ms": 30000,
            }
            config = Path(tmp) / "config.json"
            config.write_text(json.dumps(cfg))
            image = build(config, Path(tmp) / "image")  # .mpy, as flashed onto a meter
            env = {"MICROPYPATH": f"{image}:{image / 'lib'}", "PATH": "/usr/bin:/bin"}

            def script(code: str, *args: str) -> str:
                done = subprocess.run(
                    [micropython, "-c", code, *args],
                    capture_output=True,
                    text=True,
                    env=env,
                    cwd=image,
                    timeout=120,
                )
                if done.returncode != 0:
                    raise RuntimeError("the firmware benchmark failed to run on micropython")
                return done.stdout.strip().splitlines()[-1]

            timing = json.loads(script(FIRMWARE_TIMING, str(config)))
            verify_us = json.loads(script(UPDATE_VERIFY))["verify_us"]
            pools = QSTR_INFO.search(script(REAL_START_QSTRS))
            assert pools is not None, "micropython.qstr_info() printed no pool counts"

            def works(heap_kb: int) -> bool:
                shutil.rmtree(flash, ignore_errors=True)  # a first start, every time
                return real_start(micropython, image, heap_kb)

            peak_kb = smallest_heap(works, 512)
            tls_kb = _firmware_tls_heap(micropython, mosquitto, cfg, Path(tmp) / "tls")
        finally:
            broker.terminate()
            broker.wait()
    return {
        "benchmark": "firmware",
        "micropython": "unix port",
        "python": sys.version.split()[0],
        "sign_ms": round(timing["sign_us"] / 1000, 2),
        "encode_us": round(timing["encode_us"], 1),
        "update_verify_ms": round(verify_us / 1000, 2),  # once per update taken
        "peak_heap_kb": peak_kb,
        "baseline_heap_kb": round(timing["baseline"] / 1024, 1),
        "peak_heap_kb_tls": tls_kb,
        "qstrs": int(pools.group(2)),
        "qstr_pools": int(pools.group(1)),
    }


def _firmware_tls_heap(micropython: str, mosquitto: str, cfg: dict[str, Any], tmp: Any) -> int:
    """The real start's smallest heap with the uplink on MQTT over TLS: a private
    Mosquitto with a TLS listener on a site's certificates, the .mpy image with ca.der."""
    import getpass
    import json
    import shutil
    import subprocess

    from gridtokenx.hub.certs import make_site
    from gridtokenx.provision import build
    from gridtokenx.sim.devices import free_port

    site = make_site(tmp / "site", "bench", ["127.0.0.1"], []).directory
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\ncafile {site}/ca.pem\ncertfile {site}/broker.pem\n"
        f"keyfile {site}/broker.key\nuser {getpass.getuser()}\nallow_anonymous true\n"
    )
    broker = subprocess.Popen(
        [mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(0.5)
        config = tmp / "config.json"
        flash = tmp / "flash"
        config.write_text(
            json.dumps(
                {
                    **cfg,
                    "broker": {"host": "127.0.0.1", "port": port, "ca": str(site / "ca.der")},
                    "data_dir": str(flash),
                }
            )
        )
        image = build(config, tmp / "image")  # config.json with "ca": "ca.der" beside it

        def works(heap_kb: int) -> bool:
            shutil.rmtree(flash, ignore_errors=True)
            return real_start(micropython, image, heap_kb)

        return smallest_heap(works, 1024)
    finally:
        broker.terminate()
        broker.wait()


def powerflow(grid: str, steps: int) -> dict[str, Any]:
    """AC power flow of `steps` quarter hours of a SimBench grid as one batch."""
    from gridtokenx.sim.grid import load_simbench
    from gridtokenx.sim.powerflow import BatchSolver

    g = load_simbench(grid)
    steps = min(steps, g.steps)
    solver = BatchSolver(g)
    start = time.perf_counter()
    result = solver.solve_profile(0, steps)
    seconds = time.perf_counter() - start
    return {
        "benchmark": "powerflow",
        "grid": grid,
        "solver": "power-grid-model newton-raphson, batch",
        "buses": int(result.v_pu.shape[1]),
        "steps": steps,
        "seconds": round(seconds, 3),
        "ms_per_step": round(seconds * 1000 / steps, 4),
        "v_min_pu": round(float(result.v_pu.min()), 4),
        "v_max_pu": round(float(result.v_pu.max()), 4),
        "max_line_loading_pct": round(float(result.line_loading.max()), 2),
        "peak_rss_mb": peak_rss_mb(),
    }


def start_day(preferred: int, days: int, year_days: int) -> int:
    """The scenario's default start day, or as much earlier as `days` need to end within
    the profiles' year (a year of 365 days starts on day 0)."""
    return max(0, min(preferred, year_days - days))


def scenario(households: int, days: int, grid: str | None = None) -> dict[str, Any]:
    """A scenario of `households` over `days` with the defaults of `Scenario` (grid check,
    readings, market, settlement): the whole run, its set-up (grid, equipment, chain and
    the first marks; the grid read from the set-up cache when it is warm) and the cost
    per day and per household-day. More households than the grid has are placed on as
    many copies of it as it takes (`Scenario.feeders`). It starts on the scenario's
    default day, or earlier when `days` would run past the end of the profiles' year."""
    from dataclasses import replace

    from gridtokenx.scenarios.config import Scenario
    from gridtokenx.scenarios.run import _base_grid, run

    sc = Scenario(households=households, days=days)
    if grid is not None:
        sc = replace(sc, grid=grid)
    base = _base_grid(sc.grid)
    per_feeder = len(base.households)
    sc = replace(sc, feeders=-(-households // per_feeder))  # as many copies as it takes
    sc = replace(sc, start_day=start_day(sc.start_day, days, base.steps // 96))
    result = run(sc)
    loop = result.seconds - result.setup_seconds
    return {
        "benchmark": "scenario",
        "grid": sc.grid,
        "feeders": sc.feeders,
        "households": households,
        "days": days,
        "start_day": sc.start_day,
        "epochs": result.epochs,
        "seconds": round(result.seconds, 3),
        "setup_s": round(result.setup_seconds, 3),
        "seconds_per_day": round(loop / days, 3),
        "ms_per_household_day": round(loop * 1000 / (households * days), 2),
        "trades_digest": result.trades_digest,
        "peak_rss_mb": peak_rss_mb(),
    }
