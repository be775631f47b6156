"""`platform run --fronts N`: this process (the core) serves its app on a Unix socket and the
placement socket, starts N front processes on the public port (`api/front.py`), restarts
one that dies, and stops them when it stops. See `api/fronts.py` for the why."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import typer
import uvicorn
from fastapi import FastAPI

from gridtokenx.api.fronts import CORE_SOCKET, PLACEMENT_SOCKET, PlacementServer
from gridtokenx.cli.server import Server

READY_S = 120.0  # a front's start: the imports take a few seconds on a slow machine


def socket_paths(data: Path) -> tuple[Path, Path, int]:
    """This core's two socket paths in `data` and the lock it holds while it lives, named
    by a token of its own: several cores may share one data directory (two instances on
    one volume, each with its fronts), and a pid is no name for them (each container's core
    may be pid 1). The sockets of a core whose lock is free (it died) are removed; a live
    core's are left alone (nothing connects to them to find out)."""
    for lock in data.glob(f"{CORE_SOCKET}-*.lock"):
        token = lock.name.removeprefix(f"{CORE_SOCKET}-").removesuffix(".lock")
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:  # another starting core removed it just now
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # held: its core is alive
        else:
            for name in (f"{CORE_SOCKET}-{token}.sock", f"{PLACEMENT_SOCKET}-{token}.sock"):
                with contextlib.suppress(FileNotFoundError):
                    (data / name).unlink()
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
        finally:
            os.close(fd)
    token = secrets.token_hex(4)
    # locked under a name no other core looks at, then renamed: never seen unlocked
    fresh = data / f".{CORE_SOCKET}-{token}.lock"
    fd = os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    fresh.rename(data / f"{CORE_SOCKET}-{token}.lock")
    return data / f"{CORE_SOCKET}-{token}.sock", data / f"{PLACEMENT_SOCKET}-{token}.sock", fd


def _unix_listener(path: Path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    path.chmod(0o600)  # only the platform's own user: its fronts
    listener.listen(2048)
    return listener


def serve_with_fronts(
    app: FastAPI, data: Path, host: str, port: int, fronts: int, secret: bytes
) -> None:
    core, placements, lock = socket_paths(data)
    listener = _unix_listener(core)
    config = uvicorn.Config(app, log_level="warning", proxy_headers=False)
    server = Server(config)
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
            # the fronts finish their requests (this loop keeps answering their placements
            # meanwhile), then the placements taken are answered, then the sockets go
            watch.cancel()
            for child in children:
                if child is not None and child.poll() is None:
                    child.terminate()
            for child in children:
                if child is not None:
                    try:
                        await asyncio.to_thread(child.wait, 30)
                    except subprocess.TimeoutExpired:
                        child.kill()
            if placement.api.trading is not None:
                await asyncio.to_thread(placement.api.trading.close)
            await placement.close()
            for path in (core, placements, core.with_suffix(".lock")):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            os.close(lock)

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(main())
