"""The uvicorn server every `gridtokenx` command serves with (`platform run`, its core with
fronts, `cosigner run`)."""

from __future__ import annotations

import socket
from types import FrameType

import typer
import uvicorn


class Server(uvicorn.Server):
    """uvicorn raises a caught SIGTERM or SIGINT again once it has stopped serving, which
    would end the process before its own shutdown (the market stopped, the fronts stopped,
    the ledger closed): here it does not, and `run` returns. `ready`, if given, is printed
    once the port is bound, not before: a line that says ready while the port may still be
    taken misleads whoever reads it."""

    def __init__(self, config: uvicorn.Config, ready: str | None = None) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.ready:
            typer.echo(self.ready)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()
