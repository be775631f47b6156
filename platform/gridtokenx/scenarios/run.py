"""Run a scenario epoch by epoch, as fast as the real parts allow.

Per 15-minute epoch:
1. physics: each household's net power for the quarter hour (SimBench profiles, pvlib PV,
   batteries) gives its import and export registers;
2. readings: each household's meter signs its reading (the real encoder and Ed25519) and the
   hub's rules check it; the hub batches them and the oracles mint the epoch's export as GRX
   (the real review, co-signing and high-water marks);
3. market: PV owners offer this epoch's export, households bid for this epoch's import
   (documented agent prices), cleared by the chosen mechanism;
4. grid: the trades are checked against the feeder's power flow and curtailed if they break
   a voltage or loading limit;
5. settlement: the sold GRX and the buyers' payments move into escrow and are paid out,
   netted, on the embedded ledger.
Unsold export goes to the grid at the feed-in tariff; import not bought in the market comes
from the grid at the retail tariff (see kpis.py). GRX is not burned on consumption here.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from nacl.signing import SigningKey
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from gridtokenx.hub import rules
from gridtokenx.ledger import oracle
from gridtokenx.ledger import settlement as st
from gridtokenx.ledger.backend import fits, memo
from gridtokenx.ledger.deployment import Deployment
from gridtokenx.ledger.embedded import EmbeddedLedger
from gridtokenx.ledger.keystore import Keystore
from gridtokenx.market.config import NO_BREAKER, MarketConfig, Mechanism
from gridtokenx.market.engine import Market
from gridtokenx.market.orders import Order, Side
from gridtokenx.scenarios import kpis
from gridtokenx.scenarios.config import Scenario, ScenarioError
from gridtokenx.units import receipt
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire.envelope import seal
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode

EPOCH_S = 900
T0 = 1_780_000_000  # the scenario's clock: readings carry these times, not the wall clock
# Threads for the readings' signing and checking (see `batch`). 1: in this thread, no pool.
# Measured (2 days of 100 households, 2 cores, load ~2): 4 threads took the same wall time
# and 5-12 % more CPU (the GIL's hand-offs outweigh the overlapped libsodium work).
READING_THREADS = 1


def _key(seed: int, name: str) -> bytes:
    return hashlib.sha256(f"gridtokenx-scenario/{seed}/{name}".encode()).digest()


@dataclass
class Result:
    scenario: Scenario
    epochs: int
    seconds: float
    series: dict[str, list[Any]]
    households: list[dict[str, Any]]
    community: dict[str, Any]
    checks: dict[str, Any]
    trades_digest: str
    versions: dict[str, str] = field(default_factory=dict)
    setup_seconds: float = 0.0  # of `seconds`: grid, equipment, chain, first marks


def versions() -> dict[str, str]:
    out = {}
    for name in (
        "gridtokenx",
        "numpy",
        "pandapower",
        "simbench",
        "power-grid-model",
        "pvlib",
        "solders",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


@lru_cache(maxsize=2)
def _base_grid(code: str, feeders: int = 1) -> Any:
    """A SimBench grid and its year of profiles (`feeders` copies side by side): from the
    set-up cache on disk (see gridtokenx/sim/cache.py), and once per process (equip
    copies it)."""
    from gridtokenx.sim import cache
    from gridtokenx.sim.grid import feeders as side_by_side

    return side_by_side(cache.simbench_grid(code), feeders)


def run(sc: Scenario, progress: Callable[[int, int], None] | None = None) -> Result:
    """Run `sc`; `progress(epochs done, epochs in all)` is called after every epoch."""
    from gridtokenx.sim.gridcheck import GridChecker, TradeFlow
    from gridtokenx.sim.households import BatteryConfig, PVConfig, equip

    started = time.perf_counter()
    base = _base_grid(sc.grid, sc.feeders)
    if sc.households > len(base.households):
        raise ScenarioError(
            "bad_households",
            f"{sc.grid} x{sc.feeders} feeder(s) has {len(base.households)} households "
            "(set feeders for more)",
        )
    n, total = sc.households, sc.days * 96
    start = sc.start_day * 96
    if start + total > base.steps:
        raise ScenarioError("bad_days", "the scenario runs past the end of the profiles' year")
    grid, _equipment = equip(
        base,
        PVConfig(share=sc.pv_share),
        BatteryConfig(share=sc.battery_share),
        seed=sc.seed,
        until=start + total,
    )
    homes = grid.households[:n]
    net = grid.net_w[start : start + total, :n]
    imp = np.rint(np.clip(net, 0, None) * EPOCH_S / 3600).astype(np.int64)
    exp = np.rint(np.clip(-net, 0, None) * EPOCH_S / 3600).astype(np.int64)
    tariffs, rng = sc.tariffs, np.random.default_rng(sc.seed)
    spread = tariffs.retail_uthb_per_kwh - tariffs.feed_in_uthb_per_kwh
    shares = rng.uniform(sc.agents.spread_low, sc.agents.spread_high, n)
    ask = (tariffs.feed_in_uthb_per_kwh + shares * spread).astype(np.int64)
    bid = (tariffs.retail_uthb_per_kwh - shares * spread).astype(np.int64)

    # the chain, its authorities, the hub and the households' wallets and meters
    tmp = tempfile.TemporaryDirectory(prefix="gtx-scenario-")
    keys = Keystore(Path(tmp.name) / "keys.json", os.urandom(32))
    # every transaction is signed here, with keys made here, so the chain need not check
    # the signatures again (the hub and co-signers still verify every reading and batch)
    ledger = EmbeddedLedger(None, keys.ensure("payer"), verify_signatures=False)
    hub = SigningKey(_key(sc.seed, "hub"))
    hub_kp = Keypair.from_seed(bytes(hub))
    dep = Deployment.create(ledger, keys)
    wallets = [Keypair.from_seed(_key(sc.seed, f"wallet/{k}")) for k in range(n)]
    wallet_keys = [w.pubkey() for w in wallets]  # derived once: pubkey() is not free
    meters = [SigningKey(_key(sc.seed, f"meter/{k}")) for k in range(n)]
    meter_ids = [h.meter_id for h in homes]
    owners = {meter_ids[k]: wallet_keys[k] for k in range(n)}
    meter_keys = {meter_ids[k]: bytes(meters[k].verify_key) for k in range(n)}
    registry = {
        meter_ids[k]: rules.Meter(
            meter_ids[k], meter_keys[meter_ids[k]], rules.MeterStatus.APPROVED, 100_000
        )
        for k in range(n)
    }
    budget = sc.agents.thb_budget * 1_000_000
    for k, key in enumerate(wallet_keys):
        dep.open_wallet(key)
        dep.top_up(key, budget, f"scenario-{k}")
    oracles = [hub_kp, dep.oracle("oracle/platform"), dep.oracle("oracle/grid-operator")]
    signers = {k.pubkey(): oracle.reviewing_signer(k, lambda: None) for k in oracles}
    marks = oracle.Marks(oracle.MINT)
    checker = GridChecker(grid) if sc.grid_check else None
    config = MarketConfig(
        mechanism=Mechanism(sc.mechanism),
        fee_bps=tariffs.fee_bps,
        breaker_bps=NO_BREAKER,
        max_quantity_wh=10**9,
        min_price=1,
        max_price=10**12,
        max_open_orders_per_user=10**6,
    )
    market = Market(config, epoch=0)

    registers = np.zeros((n, 2), dtype=np.int64)
    previous: dict[str, rules.Previous] = {}
    rejected = 0
    bought = np.zeros(n, np.int64)
    sold = np.zeros(n, np.int64)
    paid = np.zeros(n, np.int64)
    received = np.zeros(n, np.int64)
    series: dict[str, list[Any]] = {
        k: []
        for k in (
            "epoch",
            "step",
            "import_wh",
            "export_wh",
            "p2p_wh",
            "price_uthb_per_kwh",
            "curtailed_wh",
            "v_min_pu",
            "v_max_pu",
            "violation_before",
            "violation_after",
        )
    }
    digest = hashlib.sha256()
    index_of = {m: k for k, m in enumerate(meter_ids)}
    key_of = dict(zip(wallet_keys, wallets, strict=True))

    def reading(epoch: int, k: int) -> tuple[Reading, bytes, rules.Decision]:
        """Meter k's reading of this epoch, sealed by the meter, checked by the hub's rules."""
        r = Reading(
            meter_ids[k],
            epoch + 1,
            T0 + epoch * EPOCH_S,
            int(registers[k, 0]),
            int(registers[k, 1]),
            EPOCH_S,
            2300,
            0,
            1000,
            5000,
        )
        raw = encode(r)
        envelope = seal(raw, READING_DOMAIN, meters[k])
        decision = rules.check(
            meter_ids[k],
            envelope,
            registry[meter_ids[k]],
            previous.get(meter_ids[k]),
            T0 + epoch * EPOCH_S,
            rules.RuleConfig(),
        )
        return r, raw, decision

    # Meters sign and the hub verifies, with READING_THREADS > 1 in threads (libsodium runs
    # without the GIL, so one part of the fleet's Ed25519 work can overlap another's, given
    # a free core). Each part reads only its own meters' previous readings; they are
    # recorded after, in meter order.
    workers = max(1, min(READING_THREADS, os.cpu_count() or 1))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="gtx-readings") if workers > 1 else None
    parts = [range(n * w // workers, n * (w + 1) // workers) for w in range(workers)]

    def part_readings(epoch: int) -> Any:
        """This epoch's readings, part by part (one part without a pool)."""
        if pool is None:
            return [[reading(epoch, k) for k in range(n)]]
        return pool.map(lambda part: [reading(epoch, k) for k in part], parts)

    def batch(epoch: int) -> None:
        """Every meter's reading of this epoch, checked by the hub's rules, batched, minted."""
        nonlocal rejected
        signed = []
        made = part_readings(epoch)
        for r, raw, decision in (item for part in made for item in part):
            if not decision.accepted:
                rejected += 1
                continue
            previous[r.meter_id] = rules.Previous(r.seq, r.ts, r.import_wh, r.export_wh, raw)
            signed.append((r.meter_id, r.seq, raw, decision.signature))
        header = wire_batch.build("scenario-hub", epoch, [raw for _, _, raw, _ in signed])
        encoded = wire_batch.encode_header(header)
        hub_sig = hub.sign(wire_batch.BATCH_DOMAIN + encoded).signature
        # the leaves in batch order, (meter_id, seq), as wire_batch.order_leaves sorts them,
        # from the readings made here rather than decoded again
        signed.sort(key=lambda leaf: (leaf[0], leaf[1]))
        leaves = tuple((raw, sig) for _, _, raw, sig in signed)
        evidence = oracle.Evidence(header, bytes(hub_sig), leaves)
        current = marks.update(ledger)
        proposed = oracle.plan(header, owners, current)
        oracle.review(
            evidence, meter_keys, bytes(hub.verify_key), owners, current, proposed
        )  # the co-signer
        oracle.mint_batch(ledger, dep.grx, dep.oracle_multisig, evidence, owners, marks, signers)

    batch(0)  # the registers at the start: every meter's first mark
    setup_seconds = time.perf_counter() - started
    for e in range(1, total + 1):
        step = start + e - 1
        registers[:, 0] += imp[e - 1]
        registers[:, 1] += exp[e - 1]
        batch(e)
        # the market: this epoch's export offered, this epoch's import wanted
        market.epoch = e
        placing = []
        for k in range(n):
            if exp[e - 1, k] > 0:
                placing.append(
                    Order(f"s{e}-{k}", meter_ids[k], Side.SELL, int(exp[e - 1, k]), int(ask[k]))
                )
            elif imp[e - 1, k] > 0:
                placing.append(
                    Order(f"b{e}-{k}", meter_ids[k], Side.BUY, int(imp[e - 1, k]), int(bid[k]))
                )
        if sc.mechanism == "cda":  # arrival order matters: a seeded shuffle
            placing = [placing[i] for i in rng.permutation(len(placing))]
        for seq, o in enumerate(placing, 1):
            o.seq = seq
            market.place(o)
        outcome = market.clear_epoch()
        trades = outcome.trades
        # the grid: curtail what the feeder cannot carry
        quantities = [t.quantity_wh for t in trades]
        v_min = v_max = float("nan")
        before = after = False
        if checker is not None:
            flows = [
                TradeFlow(str(i), t.seller, t.buyer, t.quantity_wh) for i, t in enumerate(trades)
            ]
            check = checker.check(step, flows)
            before = bool(check.before.violations(checker.limits, checker.loading)[0])
            after = bool(check.after.violations(checker.limits, checker.loading)[0])
            v_min, v_max = float(check.after.v_pu.min()), float(check.after.v_pu.max())
            for c in check.curtailments:
                quantities[int(c.trade_id)] = c.remaining_wh
        curtailed = sum(t.quantity_wh for t in trades) - sum(quantities)
        # settlement: into escrow, then paid out netted
        ledger_trades = []
        volume = value_sum = 0
        for i, (t, q) in enumerate(zip(trades, quantities, strict=True)):
            if q <= 0:
                continue
            r = receipt(q, t.price, t.wheeling_rate, t.fee_bps)
            b, s = index_of[t.buyer], index_of[t.seller]
            ledger_trades.append(
                st.Trade(
                    f"{e}-{i}",
                    wallet_keys[b],
                    wallet_keys[s],
                    q,
                    r.buyer_paid,
                    r.net_to_seller,
                    r.fee,
                    r.wheeling,
                )
            )
            bought[b] += q
            sold[s] += q
            paid[b] += r.buyer_paid
            received[s] += r.net_to_seller
            volume += q
            value_sum += q * t.price
            digest.update(f"{e}|{t.buyer}|{t.seller}|{q}|{t.price}\n".encode())
        if ledger_trades:
            _lock(dep, e, ledger_trades, key_of)
            st.settle_epoch(dep, e, ledger_trades)
        series["epoch"].append(e)
        series["step"].append(step)
        series["import_wh"].append(int(imp[e - 1].sum()))
        series["export_wh"].append(int(exp[e - 1].sum()))
        series["p2p_wh"].append(volume)
        series["price_uthb_per_kwh"].append(value_sum // volume if volume else None)
        series["curtailed_wh"].append(curtailed)
        series["v_min_pu"].append(v_min)
        series["v_max_pu"].append(v_max)
        series["violation_before"].append(before)
        series["violation_after"].append(after)
        if progress is not None:
            progress(e, total)

    totals = [
        kpis.Totals(
            int(imp[:, k].sum()),
            int(exp[:, k].sum()),
            int(bought[k]),
            int(sold[k]),
            int(paid[k]),
            int(received[k]),
        )
        for k in range(n)
    ]
    retail, feed_in = tariffs.retail_uthb_per_kwh, tariffs.feed_in_uthb_per_kwh
    households = [
        {"meter_id": meter_ids[k], **kpis.household(t, retail, feed_in)}
        for k, t in enumerate(totals)
    ]
    community = kpis.community(totals, retail, feed_in)
    volume_total = sum(series["p2p_wh"])
    community["average_price_uthb_per_kwh"] = (
        sum(p * v for p, v in zip(series["price_uthb_per_kwh"], series["p2p_wh"], strict=True) if p)
        // volume_total
        if volume_total
        else None
    )
    community["curtailed_wh"] = sum(series["curtailed_wh"])
    community["epochs_with_violations_before"] = sum(series["violation_before"])
    community["epochs_with_violations_after"] = sum(series["violation_after"])
    thb_total = sum(dep.thb.balance(key) for key in wallet_keys)
    thb_total += dep.thb.balance(dep.treasury.pubkey()) + dep.thb.balance(
        dep.grid_operator.pubkey()
    )
    checks = {
        "grx_minted_wh": dep.grx.supply(),
        "energy_exported_wh": int(exp.sum()),
        "grx_minted_equals_exported": dep.grx.supply() == int(exp.sum()),
        "thb_conserved": thb_total + dep.thb.balance(dep.escrow.pubkey()) == budget * n,
        "escrow_empty": dep.grx.balance(dep.escrow.pubkey())
        == 0
        == dep.thb.balance(dep.escrow.pubkey()),
        "readings_rejected": rejected,
        "ledger_transactions": len(ledger.history()),
    }
    if pool is not None:
        pool.shutdown()
    tmp.cleanup()
    return Result(
        sc,
        total,
        time.perf_counter() - started,
        series,
        households,
        community,
        checks,
        digest.hexdigest(),
        versions(),
        setup_seconds,
    )


def _lock(
    dep: Deployment,
    epoch: int,
    trades: list[st.Trade],
    key_of: dict[Pubkey, Keypair],
) -> None:
    """The epoch's sold GRX and the buyers' payments into escrow, packed, each owner signing."""
    owed: dict[tuple[str, Pubkey], int] = {}
    for t in trades:
        owed["grx", t.seller] = owed.get(("grx", t.seller), 0) + t.wh
        owed["thb", t.buyer] = owed.get(("thb", t.buyer), 0) + t.buyer_paid
    escrow = dep.escrow.pubkey()
    items = sorted(owed.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))
    widest = memo(f"{st.ESCROW} epoch-{epoch} part-999")
    ixs = [
        (dep.grx if asset == "grx" else dep.thb).transfer_ix(owner, escrow, amount)
        for (asset, owner), amount in items
    ]
    start, part = 0, 0
    while start < len(items):
        end = _fitting(ixs, start, widest, dep.ledger.payer)
        part += 1
        dep.ledger.send(
            [*ixs[start:end], memo(f"{st.ESCROW} epoch-{epoch} part-{part}")],
            [key_of[owner] for (_, owner), _ in items[start:end]],
        )
        start = end


def _fitting(ixs: list[Any], start: int, widest: Any, payer: Keypair) -> int:
    """The end of the longest run of `ixs` from `start` that fits one transaction with
    the memo (at least one instruction). A transaction only grows with instructions, so
    galloping then bisecting finds the same run as adding them one by one."""

    def ok(end: int) -> bool:
        return end == start + 1 or fits([*ixs[start:end], widest], payer)

    good, step = start + 1, 1
    while good + step <= len(ixs) and ok(good + step):
        good += step
        step *= 2
    bad = min(good + step, len(ixs) + 1)  # the first end known (or assumed) not to fit
    while bad - good > 1:
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good
