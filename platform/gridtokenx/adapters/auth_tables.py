"""The tables of login abuse control (same metadata as `tables.py`; migration 0003_api).

- `revoked_logins`: a login (a refresh-token family) ended by logout, refresh-token reuse or
  suspension. An access token names its family (`fam`), so it stops working at once, not
  when it expires. A row is needed only while access tokens of the family can be alive.
- `login_failures`: failed password logins per account and per address, and the lockout
  they earned (growing with each lockout), shared by every platform instance.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table

from gridtokenx.adapters.books import metadata

revoked_logins = Table(
    "revoked_logins",
    metadata,
    Column("family", String(36), primary_key=True),
    Column("revoked_at", BigInteger, nullable=False),
)
Index("revoked_logins_revoked_at", revoked_logins.c.revoked_at)

login_failures = Table(
    "login_failures",
    metadata,
    Column("key", String(300), primary_key=True),  # "account:<email>" | "address:<ip>"
    Column("failures", Integer, nullable=False),  # since the last lockout, in the window
    Column("lockouts", Integer, nullable=False),  # how many in a row: the next one is longer
    Column("locked_until", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
Index("login_failures_updated_at", login_failures.c.updated_at)
