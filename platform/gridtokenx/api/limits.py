"""Bounds at the door: the request body limit (413) and the client address behind proxies.

The body limit is a pure ASGI middleware: a declared Content-Length over the limit is refused
before a byte is read; a body without one is read only up to the limit, then refused. So a
100 MB upload costs the server at most the limit in memory, never a parse.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_BODY = 64 * 1024  # every JSON body and form of the API and the pages
BATCH_BODY = 64 * 1024 * 1024  # a hub's epoch batch: every reading with its signature


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int, larger: Mapping[str, int] | None = None) -> None:
        self.app, self.limit, self.larger = app, limit, dict(larger or {})

    def limit_for(self, path: str) -> int:
        return next((n for p, n in self.larger.items() if path.startswith(p)), self.limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await too_large(limit)(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                await too_large(limit)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"code": "body_too_large", "message": f"the request body is over {limit} bytes"}, 413
    )


class ClientAddress:
    """The caller's address: the socket's peer, or X-Forwarded-For only from a trusted proxy.

    With proxies configured, the address is the right-most X-Forwarded-For entry that is not
    itself a trusted proxy (what the nearest untrusted hop claimed cannot be forged by the
    client, everything left of it can)."""

    def __init__(self, proxies: Iterable[str] = ()) -> None:
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in proxies]

    def trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.proxies)

    def of(self, peer: str, forwarded_for: str | None, front: bool = False) -> str:
        """`front`: the peer is one of the platform's own front processes (a Unix socket:
        `api/fronts.py`), whose last X-Forwarded-For entry is its own peer; that entry is
        then the peer the rule starts from."""
        if front and forwarded_for:
            hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
            if hops:
                peer, forwarded_for = hops[-1][:64], ", ".join(hops[:-1])
        if not forwarded_for or not self.trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusted(hop):
                return hop[:64]
        return peer
