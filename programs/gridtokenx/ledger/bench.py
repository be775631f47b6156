"""`gridtokenx bench settle`: an epoch of N trades among P participants settled on the
embedded ledger (signature verification on), and minting for M meters from one batch."""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

from nacl.signing import SigningKey
from solders.keypair import Keypair

from gridtokenx.ledger import settlement as st
from gridtokenx.ledger.deployment import Deployment
from gridtokenx.ledger.embedded import EmbeddedLedger
from gridtokenx.ledger.keystore import Keystore
from gridtokenx.ledger.oracle import Evidence, Marks, mint_batch, reviewing_signer
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire.reading import Reading, encode


def run(trades: int, participants: int, meters: int, seed: int = 1) -> dict[str, object]:
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        keys = Keystore(data / "keys.json", os.urandom(32))
        ledger = EmbeddedLedger(data / "chain", keys.ensure("payer"))
        hub_signing = SigningKey.generate()
        hub = Keypair.from_seed(bytes(hub_signing))
        dep = Deployment.create(ledger, keys)
        users = [Keypair() for _ in range(max(participants, meters))]
        for u in users:
            dep.open_wallet(u.pubkey())
        # minting: one batch with two readings per meter, three oracles
        # (the oracles' review is benchmarked apart: here they sign what the plan says)
        readings = [
            encode(
                Reading(
                    f"m-{k:05d}", seq, 1_790_000_000 + seq, 0, 1_000 * seq, 900, 2300, 0, 1000, 5000
                )
            )
            for k in range(meters)
            for seq in (1, 2)
        ]
        header = wire_batch.build("hub-bench", 1, readings)
        evidence = Evidence(header, b"", tuple((r, b"") for r in readings))
        owners = {f"m-{k:05d}": users[k].pubkey() for k in range(meters)}
        oracles = [hub, dep.oracle("oracle/platform"), dep.oracle("oracle/grid-operator")]
        signers = {k.pubkey(): reviewing_signer(k, lambda: None) for k in oracles}
        start = time.perf_counter()
        mint_sigs = mint_batch(
            ledger, dep.grx, dep.oracle_multisig, evidence, owners, Marks("gtx1 mint"), signers
        )
        mint_seconds = time.perf_counter() - start
        assert dep.grx.supply() == 1_000 * meters
        # settlement: escrow holds what the orders locked (GRX from a meter of its own)
        float_readings = [
            encode(
                Reading(
                    "m-float", seq, 1_790_000_000 + seq, 0, 10**9 * seq, 900, 2300, 0, 1000, 5000
                )
            )
            for seq in (1, 2)
        ]
        float_header = wire_batch.build("hub-bench", 2, float_readings)
        mint_batch(
            ledger,
            dep.grx,
            dep.oracle_multisig,
            Evidence(float_header, b"", tuple((r, b"") for r in float_readings)),
            {"m-float": dep.escrow.pubkey()},
            Marks("gtx1 mint"),
            signers,
        )
        dep.top_up(dep.escrow.pubkey(), 10**15, "bench-escrow")
        trade_list = []
        for k in range(trades):
            b, s = rnd.sample(users[:participants], 2)
            value = rnd.randint(1_000, 4_000_000)
            fee, wheeling = value // 100, rnd.randint(0, 50_000)
            wh = rnd.randint(1, 5_000)
            trade_list.append(
                st.Trade(
                    str(k), b.pubkey(), s.pubkey(), wh, value + wheeling, value - fee, fee, wheeling
                )
            )
        start = time.perf_counter()
        signatures = st.settle_epoch(dep, 1, trade_list)
        seconds = time.perf_counter() - start
        ledger.close()
    return {
        "trades": trades,
        "participants": participants,
        "transactions": len(signatures),
        "seconds": round(seconds, 3),
        "trades_per_s": round(trades / seconds),
        "mint_meters": meters,
        "mint_transactions": len(mint_sigs),
        "mint_seconds": round(mint_seconds, 3),
    }
