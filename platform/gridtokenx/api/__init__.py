"""The platform's HTTP API (FastAPI, under /api/v1)."""
