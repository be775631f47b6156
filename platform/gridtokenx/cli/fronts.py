"""`platform run --fronts N`: this process (the core) serves its app on a Unix socket and the
placement socket, starts N front processes on the public port (`api/front.py`), restarts
one that dies, and stops them when it stops. See `api/fronts.py` for the why."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import stat
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


def socket_paths(data: Path) -> tuple[Path, Path]:
    """This core's two socket paths in `data`, named by a token of its own: several cores
    may share one data directory (two instances on one volume, each with its fronts), and
    a pid is no name for them (each container's core may be pid 1). The sockets a dead
    core left (nothing listens on them) are removed; a live core's are kept."""
    for name in (CORE_SOCKET, PLACEMENT_SOCKET):
        for left in data.glob(f"{name}-*.sock"):
            if not stat.S_ISSOCK(left.lstat().st_mode):
                continue  # not a socket: not ours to remove
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(str(left))
            except ConnectionRefusedError:
                with contextlib.suppress(FileNotFoundError):
                    left.unlink()
            except OSError:
                pass  # e.g. no permission: another user's, left as it is
            finally:
                probe.close()
    token = secrets.token_hex(4)
    return data / f"{CORE_SOCKET}-{token}.sock", data / f"{PLACEMENT_SOCKET}-{token}.sock"


def _unix_listener(path: Path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    path.chmod(0o600)  # only the platform's own user: its fronts
    return listener


def serve_with_fronts(
    app: FastAPI, data: Path, host: str, port: int, fronts: int, secret: bytes
) -> None:
    core, placements = socket_paths(data)
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
