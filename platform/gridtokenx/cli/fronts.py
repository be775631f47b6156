"""`platform run --fronts N`: this process (the core) serves its app on a Unix socket and the
placement socket, starts N front processes on the public port (`api/front.py`), restarts
one that dies, and stops them when it stops. See `api/fronts.py` for the why."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import typer
import uvicorn
from fastapi import FastAPI

from gridtokenx.api.fronts import CORE_SOCKET, PLACEMENT_SOCKET, PlacementServer

READY_S = 120.0  # a front's start: the imports take a few seconds on a slow machine


class _Server(uvicorn.Server):
    """uvicorn raises a caught SIGTERM again once it has stopped serving, which would end
    the process before it stops its fronts and releases what it holds: here it does not."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def _unix_listener(path: Path) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a core that died
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    path.chmod(0o600)  # only the platform's own user: its fronts
    return listener


def serve_with_fronts(
    app: FastAPI, data: Path, host: str, port: int, fronts: int, secret: bytes
) -> None:
    core, placements = data / CORE_SOCKET, data / PLACEMENT_SOCKET
    listener = _unix_listener(core)
    config = uvicorn.Config(app, log_level="warning", proxy_headers=False)
    server = _Server(config)
    placement: PlacementServer = app.state.placements
    children: list[subprocess.Popen[bytes] | None] = [None] * fronts

    def start(k: int) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridtokenx.api.front",
                "--core",
                str(core),
                "--placements",
                str(placements),
                "--host",
                host,
                "--port",
                str(port),
                "--name",
                f"front {k}",
            ],
            stdin=subprocess.PIPE,
        )
        assert child.stdin is not None
        child.stdin.write(secret.hex().encode() + b"\n")  # not in argv or the environment
        child.stdin.close()
        return child

    async def supervise() -> None:
        """Start the fronts, say ready once all hold their placement connection, then
        restart any that exits while the core runs."""
        for k in range(fronts):
            children[k] = start(k)
        deadline = time.monotonic() + READY_S
        while placement.connections < fronts:
            if time.monotonic() > deadline:  # e.g. the port is taken: each start fails
                typer.echo("platform: the fronts did not start", err=True)
                server.should_exit = True
                return
            restart()
            await asyncio.sleep(0.05)
        typer.echo(
            f"platform: ready, API at http://{host}:{port}/api/v1 (docs at /docs), "
            f"{fronts} front processes"
        )
        while not server.should_exit:
            await asyncio.sleep(0.5)
            restart()

    def restart() -> None:
        for k, child in enumerate(children):
            if child is not None and child.poll() is not None and not server.should_exit:
                typer.echo(f"platform: front {k} exited ({child.returncode}), restarted")
                children[k] = start(k)

    async def main() -> None:
        await placement.start(placements)
        watch = asyncio.ensure_future(supervise())
        try:
            await server.serve(sockets=[listener])
        finally:
            watch.cancel()
            for child in children:
                if child is not None and child.poll() is None:
                    child.terminate()
            for child in children:
                if child is not None:
                    try:
                        child.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        child.kill()
            await placement.close()
            for path in (core, placements):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(main())
