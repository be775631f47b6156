"""Backups of the platform: the keystore, the deployment, the embedded chain's log and the
books, taken while the platform runs, and checked to reconcile before they count.

The parts are copied in the order that keeps them consistent with each other: first a
snapshot of the books (SQLite's online backup into the backup directory, or an exported
PostgreSQL snapshot that `pg_dump` then dumps exactly), then the keystore (a superset of
the wallets the books name: it only grows), then the chain log up to its last whole record.
A transaction landing between the snapshot and the log copy would make the copy disagree
with itself, so `gridtokenx audit` is run on the copy (its chain replayed, its books read at
the snapshot) and the backup is retaken until it reconciles. A backup that never reconciles
is refused, not kept.

The keystore stays encrypted; its secret (GTX_KEYSTORE_KEY or the passphrase) is not in the
backup: keep it apart (docs/operations.md, key custody). It is needed to check the backup.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text

from gridtokenx import audit
from gridtokenx.errors import CodedError
from gridtokenx.hub import backup as files
from gridtokenx.ledger import site
from gridtokenx.ledger.deployment import Deployment
from gridtokenx.ledger.keystore import Keystore, KeystoreError, secret_from_env

RECORD = struct.Struct("<II")  # the embedded ledger's log framing: length, CRC-32 (embedded.py)
CHAIN = "chain/chain.log"


class BackupError(CodedError):
    """A backup or restore refused; nothing live was changed."""

    code = "backup_refused"


def books_url(data: Path, database: str | None) -> str:
    return database or f"sqlite:///{data / 'books.db'}"


def whole_records(log: bytes) -> bytes:
    """The chain log up to its last complete, checksummed record (a writer may be midway)."""
    offset = 0
    while offset + RECORD.size <= len(log):
        size, crc = RECORD.unpack_from(log, offset)
        body = log[offset + RECORD.size : offset + RECORD.size + size]
        if len(body) < size or zlib.crc32(body) != crc:
            break
        offset += RECORD.size + size
    return log[:offset]


@contextmanager
def books_snapshot(url: str, out: Path) -> Iterator[tuple[Engine, str | None, str]]:
    """(an engine reading the snapshot, the PostgreSQL snapshot id, the dump's file name)."""
    if files.dialect(url) == "sqlite":
        name = files.dump_database(url, out, "books")
        engine = create_engine(f"sqlite:///{out / name}")
        try:
            yield engine, None, name
        finally:
            engine.dispose()
        return
    holder = create_engine(url, isolation_level="REPEATABLE READ")
    try:
        with holder.connect() as keep:
            snapshot = str(keep.execute(text("SELECT pg_export_snapshot()")).scalar_one())
            reader = create_engine(url)

            @event.listens_for(reader, "begin")
            def at_snapshot(conn):  # type: ignore[no-untyped-def]
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")

            try:
                yield reader, snapshot, "books.dump"
            finally:
                reader.dispose()
            keep.rollback()
    finally:
        holder.dispose()


def _keystore(data: Path) -> Keystore:
    try:
        return Keystore(data / "keys.json", secret_from_env())
    except KeystoreError as err:
        raise BackupError(err.code, str(err)) from None


def verify(copy: Path, books: Engine) -> audit.Report:
    """`gridtokenx audit` of a copy: its chain log replayed, its books as given."""
    keys = _keystore(copy)
    ledger = site.open_ledger(copy, keys)
    try:
        dep = Deployment.load(ledger, keys, copy / "deployment.json")
        return audit.run(dep, books)
    finally:
        close = getattr(ledger, "close", None)
        if close is not None:
            close()


def create(
    data: Path, out: Path, database: str | None = None, attempts: int = 10
) -> dict[str, Any]:
    """Back up the platform at `data` (running or not) into the fresh directory `out`."""
    url = books_url(data, database)
    try:
        kind = files.dialect(url)
        if (out / files.MANIFEST).exists():
            raise files.BackupError("not_fresh", f"{out} already holds a backup")
        if not (data / "deployment.json").exists() or not (data / "keys.json").exists():
            raise files.BackupError("no_platform", f"{data} has no keystore and deployment")
        files.private_dir(out)
        embedded = not os.environ.get(site.RPC_ENV)
        failures: list[str] = []
        for attempt in range(attempts):
            with books_snapshot(url, out) as (engine, snapshot, db_file):
                files.copy_private(data / "keys.json", out / "keys.json")
                files.copy_private(data / "deployment.json", out / "deployment.json")
                names = [db_file, "keys.json", "deployment.json"]
                if embedded:
                    files.private_dir(out / "chain")
                    log = data / CHAIN
                    chain = whole_records(log.read_bytes()) if log.exists() else b""
                    files.write_private(out / CHAIN, chain)
                    names.append(CHAIN)
                report = verify(out, engine)
                if report.ok:
                    if snapshot is not None:
                        files.dump_database(url, out, "books", snapshot)
                    return files.write_manifest(
                        out,
                        "platform",
                        names,
                        database=kind,
                        database_file=db_file,
                        chain="embedded" if embedded else "cluster",
                        attempts=attempt + 1,
                        checked=dict(report.checked),
                    )
                failures = report.failures
            time.sleep(0.1 * (attempt + 1))
        raise files.BackupError(
            "inconsistent",
            f"no copy reconciled in {attempts} attempts; last: {'; '.join(failures[:3])}",
        )
    except files.BackupError as err:
        raise BackupError(err.code, err.message) from None


def restore(backup: Path, data: Path, database: str | None = None) -> dict[str, Any]:
    """Restore a platform backup into a fresh data directory (and fresh books database)."""
    url = books_url(data, database)
    try:
        manifest = files.read_manifest(backup, "platform")
        for name in ("keys.json", "deployment.json", CHAIN):
            if (data / name).exists():
                raise files.BackupError(
                    "not_fresh", f"{data / name} exists; restore to a fresh one"
                )
        files.private_dir(data)
        files.restore_database(url, backup, manifest["database_file"])
        for name in manifest["files"]:
            if name == manifest["database_file"]:
                continue
            if "/" in name:
                files.private_dir(data / Path(name).parent)
            files.copy_private(backup / name, data / name)
        return manifest
    except files.BackupError as err:
        raise BackupError(err.code, err.message) from None
