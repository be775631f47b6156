"""Readings retention on the platform: the books' copy of a batch's readings (the evidence
`gridtokenx audit` re-verifies each mint against) is written to an archive file
(wire/archive.py, the same format the hub writes) and deleted once the batch's mint is on
the chain and its newest reading is older than N days. `gridtokenx audit --archive-dir DIR`
then takes a pruned batch's readings from its file, checked proof by proof.

The batch row (header, root, hub signature and key) stays in the books; only the readings
go. The file is written whole and read back before the rows are deleted, so a crash leaves
either the rows or a checked file.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, delete, select

from gridtokenx.adapters import books
from gridtokenx.ledger.backend import Landed
from gridtokenx.ledger.oracle import MINT, parse_ranges
from gridtokenx.wire import archive
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import decode

DAY_S = 86_400


@dataclass(frozen=True)
class Pruned:
    hub_id: str
    epoch: int
    readings: int
    file: str


def minted(history: list[Landed]) -> dict[tuple[str, int], list[str]]:
    """(hub id, epoch) -> the transactions of that batch (its `gtx1 batch` record and
    mints, as the hub's outbox lists them) for every batch with a mint on the chain."""
    txs: dict[tuple[str, int], list[str]] = defaultdict(list)
    with_mint: set[tuple[str, int]] = set()
    for entry in history:
        for text in entry.memos:
            kind, _, rest = text.partition(" ")[2].partition(" ")
            if text.startswith("gtx1 ") and kind in ("batch", "mint") and " " in rest:
                hub, _, epoch = rest.split(" ", 1)[0].rpartition("/")
                if not epoch.isdigit():
                    continue
                tag = (hub, int(epoch))
                if entry.signature not in txs[tag]:
                    txs[tag].append(entry.signature)
                if parse_ranges(text, MINT) is not None:
                    with_mint.add(tag)
    return {tag: txs[tag] for tag in with_mint}


def prune(
    engine: Engine, history: list[Landed], directory: Path, days: int, now: int | None = None
) -> list[Pruned]:
    """Archive and delete the readings of minted batches whose newest reading is older
    than `days` days."""
    if days < 1:
        raise ValueError("retention must be at least 1 day")
    cutoff = (int(time.time()) if now is None else now) - days * DAY_S
    on_chain = minted(history)
    b, r = books.batches, books.batch_readings
    directory.mkdir(parents=True, exist_ok=True)
    done = []
    with engine.connect() as c:
        tags = [(row.hub_id, row.epoch) for row in c.execute(select(b.c.hub_id, b.c.epoch))]
    for hub_id, epoch in sorted(tags):
        if (hub_id, epoch) not in on_chain:
            continue
        with engine.connect() as c:
            batch = c.execute(select(b).where(b.c.hub_id == hub_id, b.c.epoch == epoch)).one()
            rows = c.execute(
                select(r.c.raw, r.c.signature)
                .where(r.c.hub_id == hub_id, r.c.epoch == epoch)
                .order_by(r.c.idx)
            ).all()
        readings = [(bytes(x.raw), bytes(x.signature)) for x in rows]
        if not readings or max(decode(raw).ts for raw, _ in readings) >= cutoff:
            continue
        data = archive.dumps(
            bytes(batch.header), bytes(batch.hub_signature), readings, on_chain[hub_id, epoch]
        )
        name = archive.file_name(hub_id, epoch)
        archive.write(directory / name, data)
        archive.load((directory / name).read_bytes())
        with engine.begin() as c:
            c.execute(delete(r).where(r.c.hub_id == hub_id, r.c.epoch == epoch))
        done.append(Pruned(hub_id, epoch, len(readings), name))
    return done


def archived_readings(
    directory: Path, hub_id: str, epoch: int, header: bytes
) -> tuple[tuple[bytes, bytes], ...]:
    """A pruned batch's readings from its archive, which must be of the very same header."""
    loaded = archive.load((directory / archive.file_name(hub_id, epoch)).read_bytes())
    if loaded.header_bytes != header:
        raise WireError("bad_archive", "the archive is of another batch header")
    return loaded.readings
