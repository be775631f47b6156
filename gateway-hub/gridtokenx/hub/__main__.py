"""`python -m gridtokenx.hub`: the hub's command, without the platform installed."""

from gridtokenx.hub.cli import app

app()
