"""Backups of the hub (its database and its key), and the database copy both the hub and the
platform use: SQLite's online backup API or `pg_dump`, each a consistent snapshot taken
while the service keeps writing.

A backup is a directory (mode 0700) of files (0600) and a `manifest.json` with each file's
SHA-256; a restore checks every digest first and writes only into a fresh database and a
key path that does not exist, so it never overwrites live data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import URL, make_url

FORMAT = 1
MANIFEST = "manifest.json"


class BackupError(Exception):
    """A backup or restore refused, with a stable code (nothing was overwritten)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` as a 0600 file, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    path.chmod(0o600)


def copy_private(src: Path, dst: Path) -> None:
    """Copy `src` to `dst` as a 0600 file (keys and personal data)."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, src.open("rb") as f:
        shutil.copyfileobj(f, out)
        out.flush()
        os.fsync(out.fileno())
    dst.chmod(0o600)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- databases ---------------------------------------------------------------------------------
def dialect(url: str) -> str:
    name = make_url(url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError("unsupported_database", f"{name} databases are not backed up here")
    return name


def sqlite_file(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("unsupported_database", "an in-memory SQLite database has no backup")
    return Path(database)


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """The URL for pg_dump/pg_restore without its password, and the environment that gives
    the password (so that it never shows in a process list)."""
    parsed: URL = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError("missing_tool", f"{name} is not installed (PostgreSQL client tools)")
    return found


def sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy even while other processes commit."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dst.close()
        src.close()


def dump_database(url: str, out: Path, name: str, snapshot: str | None = None) -> str:
    """Write a consistent copy of the database at `url` into `out`; the file name written.
    SQLite: the online backup API (a snapshot even while writers commit). PostgreSQL:
    `pg_dump --format=custom`, at an exported `snapshot` when one is given."""
    if dialect(url) == "sqlite":
        source = sqlite_file(url)
        if not source.exists():
            raise BackupError("no_database", f"{source} does not exist")
        target = out / f"{name}.db"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        sqlite_copy(source, target)
        return target.name
    target = out / f"{name}.dump"
    conninfo, env = libpq(url)
    argv = [_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(target)]
    if snapshot:
        argv += ["--snapshot", snapshot]
    done = subprocess.run([*argv, conninfo], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise BackupError("dump_failed", done.stderr.strip()[-500:])
    target.chmod(0o600)
    return target.name


def restore_database(url: str, backup: Path, file: str) -> None:
    """Load a dump made by `dump_database` into a fresh database at `url`: a SQLite file that
    does not exist yet, or a PostgreSQL database without tables."""
    kind = dialect(url)
    source = backup / file
    if (kind == "sqlite") != file.endswith(".db"):
        raise BackupError("engine_mismatch", f"{file} cannot be restored into a {kind} database")
    if kind == "sqlite":
        target = sqlite_file(url)
        if target.exists():
            raise BackupError("not_fresh", f"{target} exists; restore into a fresh database")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        try:
            sqlite_copy(source, target)
        except sqlite3.Error as exc:
            target.unlink()
            raise BackupError("restore_failed", str(exc)) from None
        return
    engine = create_engine(url)
    try:
        tables = inspect(engine).get_table_names()
    finally:
        engine.dispose()
    if tables:
        raise BackupError("not_fresh", "the target database has tables; restore into an empty one")
    conninfo, env = libpq(url)
    done = subprocess.run(
        [
            _tool("pg_restore"),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",  # all or nothing: a failed restore leaves no tables
            "--dbname",
            conninfo,
            str(source),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        raise BackupError("restore_failed", done.stderr.strip()[-500:])


# -- manifests ---------------------------------------------------------------------------------
def write_manifest(out: Path, kind: str, files: list[str], **extra: Any) -> dict[str, Any]:
    manifest = {
        "format": FORMAT,
        "kind": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {name: sha256(out / name) for name in files},
        **extra,
    }
    tmp = out / (MANIFEST + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, out / MANIFEST)
    return manifest


def read_manifest(backup: Path, kind: str) -> dict[str, Any]:
    """The manifest of a backup of `kind`, after checking every file's digest."""
    try:
        manifest: dict[str, Any] = json.loads((backup / MANIFEST).read_text())
    except (OSError, ValueError):
        raise BackupError("no_backup", f"{backup} has no readable {MANIFEST}") from None
    if manifest.get("format") != FORMAT or manifest.get("kind") != kind:
        raise BackupError("wrong_backup", f"{backup} is not a {kind} backup of format {FORMAT}")
    for name, digest in manifest["files"].items():
        path = backup / name
        if not path.is_file() or sha256(path) != digest:
            raise BackupError("corrupt_backup", f"{name} is missing or differs from the manifest")
    return manifest


# -- the hub -----------------------------------------------------------------------------------
def create(out: Path, database: str, key_file: Path) -> dict[str, Any]:
    """Back up the hub: its database (a snapshot while it runs) and its key."""
    private_dir(out)
    if (out / MANIFEST).exists():
        raise BackupError("not_fresh", f"{out} already holds a backup")
    if not key_file.is_file():
        raise BackupError("no_key", f"{key_file} does not exist (the hub's --key-file)")
    db_file = dump_database(database, out, "hub")
    copy_private(key_file, out / "hub.key")
    return write_manifest(
        out, "hub", [db_file, "hub.key"], database=dialect(database), database_file=db_file
    )


def restore(backup: Path, database: str, key_file: Path) -> dict[str, Any]:
    """Restore a hub backup into a fresh database and key file."""
    manifest = read_manifest(backup, "hub")
    if key_file.exists():
        raise BackupError("not_fresh", f"{key_file} exists; restore to a fresh key path")
    restore_database(database, backup, manifest["database_file"])
    key_file.parent.mkdir(parents=True, exist_ok=True)
    copy_private(backup / "hub.key", key_file)
    return manifest
