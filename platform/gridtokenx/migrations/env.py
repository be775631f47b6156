"""Alembic environment: the platform runs its migrations itself, on its own connection."""

from __future__ import annotations

from alembic import context

import gridtokenx.adapters.tables  # noqa: F401  (registers the platform's tables on the metadata)
from gridtokenx.adapters.books import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
