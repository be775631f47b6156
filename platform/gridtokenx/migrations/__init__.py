"""Alembic migrations of the platform's database (books, users, market, audit log)."""
