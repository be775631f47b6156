"""Epoch batches: what the hub vouches for, and the proof that a reading is in one.

A batch takes every accepted reading not yet in a batch that the hub received before the
epoch's end, so each reading is in exactly one batch however late it arrived (a meter
coming back from an outage lands in the next batch). Building the batch, numbering its
readings, balancing the epoch against the feeder meter (hub/balances.py) and queueing it in
the outbox (`state = pending`, or `held` when the balance fails, for the grid operator's
review, or cannot be made yet, until a later window balances) is one transaction.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey
from sqlalchemy import insert, select, update

from gridtokenx.hub import balances, schema
from gridtokenx.hub.feeder import Balance, Verdict
from gridtokenx.hub.store import HubStore
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire import merkle
from gridtokenx.wire.reading import signed_bytes


def hub_key(path: Path) -> SigningKey:
    """The hub's Ed25519 key: made on first use, kept in a 0600 file, never logged."""
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise PermissionError(f"{path} must not be readable by others (chmod 600)")
        return SigningKey(path.read_bytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(bytes(key))
    return key


@dataclass(frozen=True)
class Built:
    batch_id: int
    header: wire_batch.BatchHeader
    signature: bytes
    balance: Balance | None = None


def build(store: HubStore, hub_id: str, epoch: int, cutoff: int, key: SigningKey) -> Built | None:
    """Batch the unbatched readings received before `cutoff` (Unix s) under `epoch`."""
    r = schema.readings
    with store.engine.begin() as c:
        if c.execute(select(schema.batches.c.id).where(schema.batches.c.epoch == epoch)).first():
            return None  # already built (a restart re-running the epoch): never twice
        rows = c.execute(
            select(r.c.meter_id, r.c.seq, r.c.raw)
            .where(r.c.batch_id.is_(None), r.c.received_at < cutoff)
            .order_by(r.c.meter_id, r.c.seq)
        ).all()
        if not rows:
            return None
        header = wire_batch.build(hub_id, epoch, [bytes(row.raw) for row in rows])
        encoded = wire_batch.encode_header(header)
        signature = key.sign(wire_batch.BATCH_DOMAIN + encoded).signature
        batch_id = c.execute(
            insert(schema.batches)
            .values(
                epoch=epoch,
                root=header.root,
                count=header.count,
                header=encoded,
                signature=signature,
                created_at=int(time.time()),
                state="pending",
                attempts=0,
            )
            .returning(schema.batches.c.id)
        ).scalar_one()
        for row in rows:
            c.execute(
                update(r)
                .where(r.c.meter_id == row.meter_id, r.c.seq == row.seq)
                .values(batch_id=batch_id)
            )
        balance = balances.check(c, epoch, cutoff, batch_id)
        if balance is not None and balance.verdict is not Verdict.OK:
            c.execute(
                update(schema.batches)
                .where(schema.batches.c.id == batch_id)
                .values(state="held", last_error=balance.verdict.value)
            )
    return Built(batch_id, header, bytes(signature), balance)


def proof(store: HubStore, meter_id: str, seq: int) -> dict[str, object] | None:
    """The inclusion proof of one reading in its batch (RFC 9162 audit path), or None if
    the reading is unknown or not batched yet."""
    r, b = schema.readings, schema.batches
    with store.engine.connect() as c:
        found = c.execute(
            select(r.c.batch_id).where(r.c.meter_id == meter_id, r.c.seq == seq)
        ).first()
        if found is None or found.batch_id is None:
            return None
        batch = c.execute(select(b).where(b.c.id == found.batch_id)).one()
        rows = c.execute(
            select(r.c.meter_id, r.c.seq, r.c.raw)
            .where(r.c.batch_id == found.batch_id)
            .order_by(r.c.meter_id, r.c.seq)
        ).all()
    leaves = [signed_bytes(bytes(row.raw)) for row in rows]
    index = next(k for k, row in enumerate(rows) if (row.meter_id, row.seq) == (meter_id, seq))
    return {
        "meter_id": meter_id,
        "seq": seq,
        "epoch": batch.epoch,
        "root": bytes(batch.root).hex(),
        "index": index,
        "size": len(leaves),
        "path": [h.hex() for h in merkle.proof(leaves, index)],
        "signed_bytes": leaves[index].hex(),
        "header": bytes(batch.header).hex(),
        "hub_signature": bytes(batch.signature).hex() if batch.signature else None,
        "state": batch.state,
    }


def pending(store: HubStore) -> int:
    """Outbox depth: batches built but not yet confirmed on the ledger."""
    with store.engine.connect() as c:
        return len(
            c.execute(select(schema.batches.c.id).where(schema.batches.c.state == "pending")).all()
        )


def on_chain(store: HubStore, meter_id: str, limit: int = 5) -> tuple[int, list[dict[str, object]]]:
    """GRX earned by a meter through this hub's submitted batches (Wh: the export from its
    first batched register to its last, as the chain mints it) and the newest batches'
    ledger transactions, for the household page."""
    import json

    b = schema.batches
    with store.engine.connect() as c:
        rows = c.execute(
            select(b.c.epoch, b.c.header, b.c.chain_txs)
            .where(b.c.state == "submitted")
            .order_by(b.c.epoch)
        ).all()
    first = last = None
    batches: list[dict[str, object]] = []
    for row in rows:
        header = wire_batch.decode_header(bytes(row.header))
        span = next((r for r in header.ranges if r.meter_id == meter_id), None)
        if span is None:
            continue
        first = span.export_first_wh if first is None else first
        last = span.export_last_wh
        batches.append({"epoch": row.epoch, "transactions": json.loads(row.chain_txs or "[]")})
    earned = 0 if first is None or last is None else last - first
    return earned, batches[-limit:][::-1]
