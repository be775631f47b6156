"""Which instance is the market sequencer: the one holding a PostgreSQL advisory lock.

The lock is a session lock on a connection kept for it alone, so it is held exactly as
long as that connection lives: when the holder's process dies (or its connection breaks)
PostgreSQL releases it, and the next instance to try takes it, within one try's interval.
SQLite has one process: it is always the sequencer.
"""

from __future__ import annotations

from contextlib import suppress

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

SEQUENCER_LOCK = 0x47545831_00000003


class Election:
    def __init__(self, engine: Engine, campaign: bool = True) -> None:
        """`campaign=False`: this instance never becomes the sequencer (API only)."""
        self.campaign = campaign
        self._engine: Engine | None = None
        if engine.dialect.name == "postgresql":
            # its own engine: the lock's connection is never handed to a request
            self._engine = create_engine(engine.url, poolclass=NullPool)
        self._connection: Connection | None = None

    def holds(self) -> bool:
        """Whether this instance is the sequencer now (trying to become it if not)."""
        if not self.campaign:
            return False
        if self._engine is None:
            return True
        try:
            if self._connection is None:
                self._connection = self._engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT"
                )
                got = self._connection.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": SEQUENCER_LOCK}
                ).scalar_one()
                if not got:
                    self._connection.close()
                    self._connection = None
                    return False
                return True
            self._connection.execute(text("SELECT 1"))  # still ours while this answers
            return True
        except Exception:  # the database or the connection is away: not the sequencer
            self.release()
            return False

    def release(self) -> None:
        if self._connection is not None:
            with suppress(Exception):  # already broken
                self._connection.close()
            self._connection = None
