"""Structured logs for the hub and the platform (here, so the hub needs nothing of the
platform): one JSON object per line on stderr, and a request id
per HTTP request (the caller's `X-Request-ID` when it is sane, else a new one) that is
echoed in the response and carried by every log line written while the request runs.

`GTX_LOG_FORMAT=text` keeps plain lines for a terminal; JSON is the default for
`gridtokenx platform run` and `gridtokenx hub run`, so a log shipper needs no parsing rules.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import re
import sys
import time
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
access = logging.getLogger("gridtokenx.access")


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "request_id"?, ...extra fields, "error"?}`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            entry["request_id"] = rid
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(fmt: str = "json", level: int = logging.INFO) -> None:
    """Send the `gridtokenx` loggers to stderr, as JSON lines or plain text."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("gridtokenx")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def install(app: FastAPI, access_lines: bool = True) -> None:
    """Give every request an id (header `X-Request-ID` both ways) and an access log line;
    `access_lines` False: no line (a core behind its fronts: the front that forwarded the
    request writes it, with the same id)."""
    app.add_middleware(RequestIds, access_lines=access_lines)


class RequestIds:
    """A pure ASGI middleware (Starlette's `BaseHTTPMiddleware` costs a task group and
    memory streams per request: about half of a trivial request's time here)."""

    def __init__(self, app: ASGIApp, access_lines: bool = True) -> None:
        self.app = app
        self.access_lines = access_lines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        text = given.decode("latin-1")
        rid = (
            text if SANE_ID.fullmatch(text) else f"{random.getrandbits(128):032x}"
        )  # an id, not a secret
        token = request_id.set(rid)
        start = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
            if self.access_lines:
                access.info(
                    "request",
                    extra={
                        "fields": {
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": status,
                            "ms": round((time.perf_counter() - start) * 1000, 1),
                        }
                    },
                )
        finally:
            request_id.reset(token)
