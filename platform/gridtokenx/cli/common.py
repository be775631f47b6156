"""What every command module shares: user-facing errors, output, file reading."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import typer

REPO = Path(__file__).resolve().parents[3]


def fail(message: str, code: int = 2) -> None:
    """Print a user-facing error (no traceback) and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def serve(app: Any, host: str, port: int, ready: str, **config: Any) -> None:
    """Serve until SIGTERM/SIGINT, then return, so the caller's own shutdown runs; `ready`
    printed once the port is bound (`cli.server.Server`)."""
    import uvicorn

    from gridtokenx.cli.server import Server

    server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning", **config), ready)
    with contextlib.suppress(KeyboardInterrupt):  # whatever uvicorn raises on a Ctrl-C
        server.run()


def emit(payload: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        for key, value in payload.items():
            typer.echo(f"{key}: {value}")


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror}")
    except UnicodeDecodeError:
        fail(f"{what} {path} is not UTF-8 text")
    raise AssertionError("unreachable")
