"""Readings retention: readings older than N days whose batch is on the chain are written to
an archive file (wire/archive.py: the batch with every reading's Merkle proof) and then
deleted, so the hub's database stops growing while every mint stays traceable.

Only `submitted` batches are pruned (the platform answered `done` with the ledger's
transactions); unbatched readings and pending, held or refused batches are never touched.
The file is written whole (temporary file, fsync, rename, fsync of the directory) and read
back and checked before the readings are deleted in one transaction that also names the
file in the batch, so a crash at any point leaves either the readings or a checked archive
(a rerun rewrites the same bytes). Each meter's newest reading stays in `heads`, so the
monotonicity and replay rules hold after pruning.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, exists, insert, select, update

from gridtokenx.hub import schema
from gridtokenx.hub.store import HubStore
from gridtokenx.wire import archive
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire.reading import signed_bytes

DAY_S = 86_400


@dataclass(frozen=True)
class Pruned:
    epoch: int
    readings: int
    file: str


def prune(store: HubStore, directory: Path, days: int, now: int | None = None) -> list[Pruned]:
    """Archive and delete the readings of every on-chain batch made over `days` days ago."""
    if days < 1:
        raise ValueError("retention must be at least 1 day")
    cutoff = (int(time.time()) if now is None else now) - days * DAY_S
    b, r = schema.batches, schema.readings
    with store.engine.connect() as c:
        due = c.execute(
            select(b.c.id, b.c.epoch)
            .where(
                b.c.state == "submitted",
                b.c.created_at < cutoff,
                exists().where(r.c.batch_id == b.c.id),
            )
            .order_by(b.c.epoch)
        ).all()
    directory.mkdir(parents=True, exist_ok=True)
    return [_prune_batch(store, directory, row.id) for row in due]


def _prune_batch(store: HubStore, directory: Path, batch_id: int) -> Pruned:
    b, r = schema.batches, schema.readings
    with store.engine.connect() as c:
        batch = c.execute(select(b).where(b.c.id == batch_id)).one()
        rows = c.execute(
            select(r.c.raw, r.c.signature)
            .where(r.c.batch_id == batch_id)
            .order_by(r.c.meter_id, r.c.seq)
        ).all()
    header = wire_batch.decode_header(bytes(batch.header))
    data = archive.dumps(
        bytes(batch.header),
        bytes(batch.signature),
        [(bytes(x.raw), bytes(x.signature)) for x in rows],
        json.loads(batch.chain_txs or "[]"),
    )
    name = archive.file_name(header.hub_id, header.epoch)
    archive.write(directory / name, data)
    archive.load((directory / name).read_bytes())  # what is on disk is the whole batch
    with store.engine.begin() as c:
        c.execute(delete(r).where(r.c.batch_id == batch_id))
        c.execute(
            insert(schema.archived_ranges),
            [
                {
                    "meter_id": m.meter_id,
                    "first_seq": m.first_seq,
                    "last_seq": m.last_seq,
                    "batch_id": batch_id,
                }
                for m in header.ranges
            ],
        )
        c.execute(
            update(b).where(b.c.id == batch_id).values(archive=name, archived_at=int(time.time()))
        )
    return Pruned(batch.epoch, len(rows), name)


def archived_proof(
    store: HubStore, directory: Path, meter_id: str, seq: int
) -> dict[str, object] | None:
    """The inclusion proof of a pruned reading, from its batch's archive (the same answer
    as batches.proof gave before pruning), or None."""
    a, b = schema.archived_ranges, schema.batches
    with store.engine.connect() as c:
        row = c.execute(
            select(b.c.epoch, b.c.header, b.c.signature, b.c.state, b.c.archive)
            .join(a, a.c.batch_id == b.c.id)
            .where(a.c.meter_id == meter_id, a.c.first_seq <= seq, a.c.last_seq >= seq)
        ).first()
    if row is None:
        return None
    data = (directory / row.archive).read_bytes()
    if len(data) > archive.MAX_BYTES:
        return None
    document = json.loads(gzip.decompress(data))
    found = next(
        (x for x in document["readings"] if (x["meter_id"], x["seq"]) == (meter_id, seq)),
        None,
    )
    if found is None:
        return None  # a gap inside the meter's range
    header = wire_batch.decode_header(bytes(row.header))
    return {
        "meter_id": meter_id,
        "seq": seq,
        "epoch": row.epoch,
        "root": header.root.hex(),
        "index": found["index"],
        "size": header.count,
        "path": found["path"],
        "signed_bytes": signed_bytes(bytes.fromhex(found["raw"])).hex(),
        "header": bytes(row.header).hex(),
        "hub_signature": bytes(row.signature).hex() if row.signature else None,
        "state": row.state,
    }
