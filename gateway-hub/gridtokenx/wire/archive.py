"""The readings archive: one file per batch whose mint is on the chain, so that readings can
be pruned from a database and every mint still traced (docs/operations.md, "Readings
retention").

A file is gzip (no name, mtime 0: the same batch always gives the same bytes) of one JSON
document: the batch header and hub signature as sent to the platform, the ledger's
transactions, and each reading (its CBOR and meter signature) with its RFC 9162 audit path
to the root, in leaf order. `load` checks every path against the header's root, the count
and the ranges, so a file that loads is the batch the chain minted from.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire import merkle
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import decode, signed_bytes

FORMAT = "gtx-batch-archive/1"
MAX_BYTES = 512 * 1024 * 1024  # an archive is read whole: refuse anything larger


@dataclass(frozen=True)
class Archived:
    header: wire_batch.BatchHeader
    header_bytes: bytes
    hub_signature: bytes
    chain_txs: tuple[str, ...]
    readings: tuple[tuple[bytes, bytes], ...]  # (reading CBOR, meter signature), leaf order


def file_name(hub_id: str, epoch: int) -> str:
    return f"batch-{hub_id}-{epoch:012d}.json.gz"


def dumps(
    header_bytes: bytes,
    hub_signature: bytes,
    readings: Sequence[tuple[bytes, bytes]],
    chain_txs: Sequence[str],
) -> bytes:
    """The archive of a batch; `readings` in leaf order, as the header's root covers them."""
    header = wire_batch.decode_header(header_bytes)
    leaves = [signed_bytes(raw) for raw, _ in readings]
    if len(leaves) != header.count or merkle.root(leaves) != header.root:
        raise WireError("bad_archive", "the readings are not the batch's leaves")
    rows = []
    for index, (raw, signature) in enumerate(readings):
        r = decode(raw)
        rows.append(
            {
                "meter_id": r.meter_id,
                "seq": r.seq,
                "raw": raw.hex(),
                "signature": signature.hex(),
                "index": index,
                "path": [h.hex() for h in merkle.proof(leaves, index)],
            }
        )
    document = {
        "format": FORMAT,
        "hub_id": header.hub_id,
        "epoch": header.epoch,
        "root": header.root.hex(),
        "header": header_bytes.hex(),
        "hub_signature": hub_signature.hex(),
        "chain_txs": list(chain_txs),
        "readings": rows,
    }
    text = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    return gzip.compress(text, compresslevel=9, mtime=0)


def load(data: bytes) -> Archived:
    """Parse and check an archive: every reading's audit path leads to the header's root."""
    if len(data) > MAX_BYTES:
        raise WireError("bad_archive", f"over {MAX_BYTES} bytes")
    try:
        document = json.loads(gzip.decompress(data))
        if document["format"] != FORMAT:
            raise WireError("bad_archive", f"format {document['format']!r}, not {FORMAT}")
        header_bytes = bytes.fromhex(document["header"])
        header = wire_batch.decode_header(header_bytes)
        readings = []
        for k, row in enumerate(document["readings"]):
            raw, signature = bytes.fromhex(row["raw"]), bytes.fromhex(row["signature"])
            path = [bytes.fromhex(h) for h in row["path"]]
            leaf = signed_bytes(raw)
            if row["index"] != k or not merkle.verify_inclusion(
                leaf, k, header.count, path, header.root
            ):
                raise WireError("bad_archive", f"reading {k}'s audit path misses the root")
            r = decode(raw)
            if (r.meter_id, r.seq) != (row["meter_id"], row["seq"]):
                raise WireError("bad_archive", f"reading {k} is not {row['meter_id']}/{row['seq']}")
            readings.append((raw, signature))
        if len(readings) != header.count:
            raise WireError("bad_archive", f"{len(readings)} readings, header has {header.count}")
        if wire_batch.build(header.hub_id, header.epoch, [raw for raw, _ in readings]) != header:
            raise WireError("bad_archive", "the readings do not give the header's ranges")
        return Archived(
            header,
            header_bytes,
            bytes.fromhex(document["hub_signature"]),
            tuple(str(t) for t in document["chain_txs"]),
            tuple(readings),
        )
    except WireError:
        raise
    except (OSError, EOFError, ValueError, KeyError, TypeError) as err:
        raise WireError("bad_archive", f"unreadable archive ({type(err).__name__})") from err


def write(path: Path, data: bytes) -> None:
    """Put an archive on disk whole or not at all: a temporary file, fsync, rename, fsync of
    the directory (owner-only: readings are personal data)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
