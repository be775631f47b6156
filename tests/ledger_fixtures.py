"""Shared set-up for the ledger tests: a deployment on the embedded ledger with one hub."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey
from solders.keypair import Keypair

from gridtokenx.ledger.deployment import Deployment
from gridtokenx.ledger.embedded import EmbeddedLedger
from gridtokenx.ledger.keystore import Keystore
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire import cbor
from gridtokenx.wire.envelope import seal
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode


@dataclass
class Chain:
    path: Path
    keys: Keystore
    ledger: EmbeddedLedger
    dep: Deployment
    hub: Keypair
    hub_signing: SigningKey


def make_chain(path: Path, secret: bytes | None = None) -> Chain:
    keys = Keystore(path / "keys.json", secret or os.urandom(32))
    ledger = EmbeddedLedger(path / "chain", keys.ensure("payer"))
    hub_signing = SigningKey.generate()
    hub = Keypair.from_seed(bytes(hub_signing))
    dep = Deployment.create(ledger, keys)
    dep.save(path / "deployment.json")
    return Chain(path, keys, ledger, dep, hub, hub_signing)


def reading(meter: str, seq: int, imp: int, exp: int, ts: int = 1_790_000_000) -> Reading:
    return Reading(
        meter_id=meter,
        seq=seq,
        ts=ts + seq * 900,
        import_wh=imp,
        export_wh=exp,
        interval_s=900,
        voltage_dv=2300,
        current_ma=1000,
        pf_milli=1000,
        freq_chz=5000,
        flags=0,
    )


def signed(key: SigningKey, r: Reading) -> tuple[bytes, bytes]:
    raw = encode(r)
    envelope = cbor.loads(seal(raw, READING_DOMAIN, key))
    return raw, bytes(envelope[1])


def evidence(chain: Chain, epoch: int, readings: list[tuple[bytes, bytes]]):  # type: ignore[no-untyped-def]
    from gridtokenx.ledger.oracle import Evidence

    header = wire_batch.build("hub-1", epoch, [raw for raw, _ in readings])
    encoded = wire_batch.encode_header(header)
    sig = chain.hub_signing.sign(wire_batch.BATCH_DOMAIN + encoded).signature
    ordered = {raw: s for raw, s in readings}
    leaves = wire_batch.order_leaves([raw for raw, _ in readings])
    return Evidence(header, bytes(sig), tuple((raw, ordered[raw]) for _, raw in leaves))
