"""What every command module shares: user-facing errors, output, file reading."""

from __future__ import annotations

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
    """uvicorn.run that prints `ready` once the port is bound, not before: a line that
    says ready while the port may still be taken (then exit 1) misleads whoever reads it."""
    import uvicorn

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                typer.echo(ready)

    Announcing(uvicorn.Config(app, host=host, port=port, log_level="warning", **config)).run()


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
