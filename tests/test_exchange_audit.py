"""Production minted from signed readings, traded with escrow, settled on the embedded
ledger, and `gridtokenx audit` proving books and chain agree, and catching a tampered row."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from ledger_fixtures import Chain, evidence, make_chain, reading, signed
from nacl.signing import SigningKey
from services import gridtokenx
from sqlalchemy import update

from gridtokenx import audit
from gridtokenx.adapters import books
from gridtokenx.keynames import user_key
from gridtokenx.ledger.oracle import Marks, mint_batch, reviewing_signer
from gridtokenx.market.config import MarketConfig
from gridtokenx.market.engine import Market
from gridtokenx.market.errors import OrderRejected
from gridtokenx.market.orders import Order, Side
from gridtokenx.services.exchange import Exchange
from gridtokenx.wire import batch as wire_batch

SECRET = os.urandom(32)


@pytest.fixture
def market(tmp_path: Path) -> tuple[Chain, Exchange, Any]:
    chain = make_chain(tmp_path, SECRET)
    dep = chain.dep
    engine = books.connect(f"sqlite:///{tmp_path / 'books.db'}")
    wallets = {name: chain.keys.ensure(user_key(name)) for name in ("sun", "moon", "star")}
    for key in wallets.values():
        dep.open_wallet(key.pubkey())
        dep.top_up(key.pubkey(), 50_000_000, f"deposit-{key.pubkey()}")
    # the prosumer's meter exports 3 kWh, signed, batched by the hub, minted by 3 oracles
    meter_key = SigningKey.generate()
    readings = [signed(meter_key, reading("m-sun", s, 10, 1_000 * s)) for s in (1, 2, 3, 4)]
    ev = evidence(chain, 1, readings)
    owners = {"m-sun": wallets["sun"].pubkey()}
    books.add_rows(
        engine,
        books.meters,
        [
            {
                "meter_id": "m-sun",
                "public_key": bytes(meter_key.verify_key),
                "owner": str(owners["m-sun"]),
            }
        ],
    )
    books.add_rows(
        engine,
        books.batches,
        [
            {
                "hub_id": "hub-1",
                "epoch": 1,
                "root": ev.header.root,
                "header": wire_batch.encode_header(ev.header),
                "hub_signature": ev.hub_signature,
                "hub_key": bytes(chain.hub_signing.verify_key),
            }
        ],
    )
    books.add_rows(
        engine,
        books.batch_readings,
        [
            {"hub_id": "hub-1", "epoch": 1, "idx": k, "raw": raw, "signature": sig}
            for k, (raw, sig) in enumerate(ev.readings)
        ],
    )
    signers = [chain.hub, dep.oracle("oracle/platform"), dep.oracle("oracle/grid-operator")]
    mint_batch(
        dep.ledger,
        dep.grx,
        dep.oracle_multisig,
        ev,
        owners,
        Marks("gtx1 mint"),
        {k.pubkey(): reviewing_signer(k, lambda: None) for k in signers},
    )
    assert dep.grx.balance(wallets["sun"].pubkey()) == 3_000
    exchange = Exchange(dep, engine, Market(MarketConfig()), wallets)
    return chain, exchange, engine


def test_trade_settles_conserving_money_and_energy_and_audit_reconciles(
    market: tuple[Chain, Exchange, Any], tmp_path: Path
) -> None:
    chain, exchange, engine = market
    dep = chain.dep
    sun, moon, star = (exchange.wallets[n].pubkey() for n in ("sun", "moon", "star"))
    thb_before = sum(dep.thb.balance(k) for k in (sun, moon, star))
    exchange.place(Order("s1", "sun", Side.SELL, 2_000, 3_000_000))
    exchange.place(Order("b1", "moon", Side.BUY, 1_500, 4_000_000))
    exchange.place(Order("b2", "star", Side.BUY, 1_000, 3_500_000))
    with pytest.raises(OrderRejected) as err:  # more GRX than sun has left to escrow
        exchange.place(Order("s2", "sun", Side.SELL, 1_500, 3_000_000))
    assert err.value.code == "insufficient_funds"
    assert dep.grx.balance(dep.escrow.pubkey()) == 2_000
    exchange.place(Order("b3", "star", Side.BUY, 100, 3_000_000))
    exchange.cancel("b3", "star")  # refunded at once
    outcome, signatures = exchange.clear()
    assert outcome.volume_wh == 2_000 and signatures
    assert dep.grx.balance(moon) + dep.grx.balance(star) == 2_000
    assert dep.grx.balance(sun) == 1_000 and dep.grx.supply() == 3_000
    # money: what buyers paid went to the seller, the treasury and the grid operator
    fees = dep.thb.balance(dep.treasury.pubkey()) + dep.thb.balance(dep.grid_operator.pubkey())
    assert sum(dep.thb.balance(k) for k in (sun, moon, star)) + fees == thb_before
    assert dep.grx.balance(dep.escrow.pubkey()) == 0 == dep.thb.balance(dep.escrow.pubkey())
    # a retry of the whole settlement pays nothing more
    report = audit.run(dep, engine)
    assert report.ok, report.failures
    assert report.checked["mints"] == 1 and report.checked["settlements"] == 1
    # the CLI agrees (exit 0), from the files on disk: a restart's view
    env = {"GTX_KEYSTORE_KEY": SECRET.hex()}
    done = gridtokenx("audit", "--data", str(tmp_path), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["ok"] is True
    # someone edits a trade in the database: the audit names it and exits 1
    with engine.begin() as c:
        c.execute(
            update(books.trades)
            .values(wh=books.trades.c.wh + 1)
            .where(books.trades.c.buy_id == "b1")
        )
    report = audit.run(dep, engine)
    assert not report.ok and any("epoch 0" in f for f in report.failures)
    done = gridtokenx("audit", "--data", str(tmp_path), env=env)
    assert done.returncode == 1 and "epoch 0" in done.stdout
    # and a reading's register in a stored batch
    with engine.begin() as c:
        c.execute(
            update(books.batch_readings)
            .values(signature=b"\0" * 64)
            .where(books.batch_readings.c.idx == 0)
        )
    assert any("batch hub-1/1" in f for f in audit.run(dep, engine).failures)


def test_audit_catches_an_escrow_row_that_lies(market: tuple[Chain, Exchange, Any]) -> None:
    chain, exchange, engine = market
    exchange.place(Order("s1", "sun", Side.SELL, 1_000, 3_000_000))
    assert audit.run(chain.dep, engine).ok
    with engine.begin() as c:
        c.execute(update(books.orders).values(escrowed=900))
    failures = audit.run(chain.dep, engine).failures
    assert any("escrow grx" in f for f in failures)


def test_audit_cli_without_a_keystore_secret_is_a_clear_error(tmp_path: Path) -> None:
    done = gridtokenx(
        "audit",
        "--data",
        str(tmp_path),
        env={"GTX_KEYSTORE_KEY": "", "GTX_KEYSTORE_PASSPHRASE": ""},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_bench_settle_prints_its_figures() -> None:
    done = gridtokenx(
        "bench", "settle", "--trades", "300", "--participants", "30", "--meters", "40", "--json"
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["trades"] == 300 and figures["transactions"] >= 2
    assert figures["mint_meters"] == 40 and figures["trades_per_s"] > 0
