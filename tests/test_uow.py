"""The unit of work (services/uow.py): one transaction, events only once committed."""

from __future__ import annotations

from pathlib import Path

import pytest
from databases import database
from sqlalchemy import select

from gridtokenx import auditlog
from gridtokenx.adapters import books
from gridtokenx.adapters.events import Event
from gridtokenx.adapters.tables import settings
from gridtokenx.services.uow import UnitOfWork


class Boom(Exception):
    pass


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_unit_of_work_commits_its_rows_and_audit_entries_together(
    kind: str, tmp_path: Path
) -> None:
    # no ledger call here (placement's and settlement's tests cover `lock` and `settle`):
    # the deployment is not needed for the transaction and the events
    with database(kind, tmp_path) as url:
        engine = books.connect(url)
        try:
            with UnitOfWork(engine, None) as uow:  # type: ignore[arg-type]
                uow.c.execute(settings.insert().values(name="a", value="1"))
                auditlog.append_many(uow.c, [("tester", "x.done", {"n": 1})])
                uow.emit(Event("book", {"epoch": 7}))
            assert uow.events == [Event("book", {"epoch": 7})]
            with pytest.raises(Boom), UnitOfWork(engine, None) as failed:  # type: ignore[arg-type]
                failed.c.execute(settings.insert().values(name="b", value="2"))
                auditlog.append_many(failed.c, [("tester", "x.failed", {"n": 2})])
                failed.emit(Event("book", {"epoch": 8}))
                raise Boom
            assert failed.events == []  # nothing announced that was not committed
            with engine.connect() as c:
                names = c.execute(select(settings.c.name, settings.c.value)).all()
            assert [tuple(r) for r in names if r.name in ("a", "b")] == [("a", "1")]
            entries = auditlog.entries(engine)
            assert [(e["actor"], e["action"]) for e in entries] == [("tester", "x.done")]
            assert auditlog.verify(engine) is None
            with pytest.raises(AssertionError):
                _ = uow.c  # only inside the block
        finally:
            engine.dispose()
