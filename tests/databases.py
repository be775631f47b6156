"""Database URLs for tests: a fresh SQLite file, and a fresh PostgreSQL database on the
machine's server (127.0.0.1:5432). A missing server is a skip locally, a failure in CI."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services import unavailable
from sqlalchemy import create_engine, text

PG_ADMIN = os.environ.get("GTX_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'hub.db'}"
        return
    name = f"gtx_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server, no permission: say which
        unavailable(f"PostgreSQL at {PG_ADMIN} is not usable: {exc.__class__.__name__}")
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
