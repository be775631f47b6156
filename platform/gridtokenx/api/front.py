"""A front process of `gridtokenx platform run --fronts N` (see `api/fronts.py`): it takes
HTTP connections on the public port, sends fast-path order placements to the core over the
placement socket and forwards everything else to the core's HTTP server.

Started by the core (`python -m gridtokenx.api.front ...`), never by hand: the access
tokens' secret comes on stdin, and the front exits when its core does."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import socket
import sys
from typing import Any

import httpx
import websockets
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send
from websockets.asyncio.client import unix_connect

from gridtokenx.accounts import Accounts
from gridtokenx.api.fronts import FrameError, frame, read_frame
from gridtokenx.api.limits import BATCH_BODY, DEFAULT_BODY, BodyLimit
from gridtokenx.api.routers.orders import PATH, parse_fast
from gridtokenx.hub import logs

log = logging.getLogger("gridtokenx.front")
# not forwarded either way: they describe one hop (RFC 9110 7.6.1), or httpx sets them
HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"te",
    b"trailer",
    b"upgrade",
    b"host",
    b"content-length",
}
WS_SKIP = HOP | {
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-extensions",
    b"sec-websocket-protocol",
    b"x-forwarded-for",
}


def unavailable() -> JSONResponse:
    return JSONResponse(
        {"code": "unavailable", "message": "the platform's core is not answering; try again"},
        503,
        headers={"Retry-After": "1"},
    )


class Placements:
    """The front's end of the placement socket: one connection, many orders in flight,
    each answer matched by its id. The frames of one turn of the event loop go out in one
    write (many connections' orders arrive together; a write each was a tenth of the
    front's time, and as many reads in the core, which shares its lock with the group
    commit). A lost connection fails the orders in flight with 503 `unavailable` (as a
    dropped HTTP connection would: the client looks its orders up); the next order
    connects again."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._connecting = asyncio.Lock()
        self._reading: asyncio.Future[None] | None = None
        self._out: list[tuple[int, bytes]] = []  # frames for the next write, by id

    async def connect(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is None or self._writer.is_closing():
                reader, self._writer = await asyncio.open_unix_connection(self.path)
                self._reading = asyncio.ensure_future(self._answers(reader, self._writer))
            return self._writer

    async def _answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                answer = await read_frame(reader)
                if answer is None:
                    break
                waiting = self._waiting.pop(int(answer.get("id", -1)), None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(answer)
        except (FrameError, OSError, ValueError, TypeError) as err:
            log.warning("placement socket: %s", err)
        finally:
            writer.close()
            if self._writer is writer:
                self._writer = None
            for waiting in self._waiting.values():
                if not waiting.done():
                    waiting.set_exception(ConnectionError("the core closed the placement socket"))
            self._waiting.clear()

    async def place(self, request: dict[str, Any]) -> dict[str, Any]:
        await self.connect()
        key = next(self._ids)
        loop = asyncio.get_running_loop()
        waiting = loop.create_future()
        self._waiting[key] = waiting
        if not self._out:
            loop.call_soon(self._write)
        self._out.append((key, frame({**request, "id": key})))
        answer: dict[str, Any] = await waiting
        return answer

    def _write(self) -> None:
        # a frame whose caller was already failed (its connection lost) is never sent
        out, self._out = [(k, d) for k, d in self._out if k in self._waiting], []
        writer = self._writer
        if writer is None or writer.is_closing():  # lost meanwhile: these were not sent
            for key, _ in out:
                waiting = self._waiting.pop(key, None)
                if waiting is not None and not waiting.done():
                    waiting.set_exception(ConnectionError("the placement socket closed"))
            return
        if out:
            writer.write(b"".join(data for _, data in out))


class Front:
    """The front's ASGI app (inside the body limit and the access log, as in the core)."""

    def __init__(self, core: str, placements: str, accounts: Accounts) -> None:
        self.core, self.accounts = core, accounts
        self.placements = Placements(placements)
        self.http: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
        elif scope["method"] == "GET" and scope["path"] == "/health":
            # this process's liveness, as the core's own /health; /ready asks the core
            await JSONResponse({"status": "ok"})(scope, receive, send)
        elif scope["method"] == "POST" and scope["path"] == PATH:
            messages, order, claims = await parse_fast(scope, receive, self.accounts.decode)

            async def replay() -> Message:
                return messages.pop(0) if messages else await receive()

            if order is None or claims is None:
                await self.forward(scope, replay, send)
                return
            try:
                answer = await self.placements.place(
                    {
                        "user_id": claims.user_id,
                        "family": claims.family,
                        "address": peer(scope),
                        "order": order.model_dump(),
                    }
                )
            except OSError:
                await unavailable()(scope, replay, send)
                return
            if "row" in answer:  # placed
                await JSONResponse(answer["row"], 201)(scope, replay, send)
                return
            body = str(answer["body"]).encode()
            headers = [(str(k).encode(), str(v).encode()) for k, v in answer["headers"]]
            headers.append((b"content-length", str(len(body)).encode()))
            await send(
                {"type": "http.response.start", "status": int(answer["status"]), "headers": headers}
            )
            await send({"type": "http.response.body", "body": body})
        else:
            await self.forward(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                transport = httpx.AsyncHTTPTransport(
                    uds=self.core,
                    limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
                )
                self.http = httpx.AsyncClient(
                    transport=transport,
                    base_url="http://core",
                    timeout=120,
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.http is not None:
                    await self.http.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The request to the core's HTTP server, its answer streamed back."""
        assert self.http is not None
        body = b""
        while True:  # in memory already: the body limit read it
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        raw = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            raw += b"?" + scope["query_string"]
        request = self.http.build_request(
            scope["method"],
            httpx.URL("http://core", raw_path=raw),
            headers=headers_for(scope, HOP),
            content=body,
        )
        try:
            response = await self.http.send(request, stream=True)
        except httpx.HTTPError:
            await unavailable()(scope, receive, send)
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k, v)
                        for k, v in response.headers.raw
                        if k.lower() not in HOP or k.lower() == b"content-length"
                    ],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket to the core's, relayed both ways until either side closes."""
        await receive()  # websocket.connect
        raw = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            raw += "?" + scope["query_string"].decode("latin-1")
        try:
            upstream = await unix_connect(
                self.core,
                "ws://core" + raw,
                additional_headers=[
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in headers_for(scope, WS_SKIP)
                ],
                subprotocols=scope.get("subprotocols") or None,
                max_size=2**20,
            )
        except (OSError, websockets.exceptions.InvalidHandshake):
            await send({"type": "websocket.close", "code": 1011})
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

        async def inbound() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close()
                    return
                data = message.get("text")
                await upstream.send(data if data is not None else message.get("bytes") or b"")

        reading = asyncio.ensure_future(inbound())
        try:
            async for data in upstream:
                key = "text" if isinstance(data, str) else "bytes"
                await send({"type": "websocket.send", key: data})
        except websockets.exceptions.ConnectionClosedError:
            pass
        finally:
            reading.cancel()
        code = upstream.close_code or 1000
        with contextlib.suppress(Exception):  # the client may be gone already
            await send({"type": "websocket.close", "code": code, "reason": upstream.close_reason})


def peer(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


def headers_for(scope: Scope, skip: set[bytes]) -> list[tuple[bytes, bytes]]:
    """The request's headers less `skip`, with the client's address appended to
    X-Forwarded-For (what a proxy in front of this one said stays, for the core's
    GTX_TRUSTED_PROXIES rule) and this request's id (the front's access line and the
    core's log lines carry the same, whether the client gave one or not)."""
    own = {b"x-forwarded-for", b"x-request-id"}
    forwarded = [v for k, v in scope["headers"] if k == b"x-forwarded-for"]
    kept = [(k, v) for k, v in scope["headers"] if k not in skip and k not in own]
    chain = b", ".join([*forwarded, peer(scope).encode()])
    rid = [(b"x-request-id", r.encode())] if (r := logs.request_id.get()) else []
    return [*kept, (b"x-forwarded-for", chain), *rid]


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from gridtokenx import heap

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--core", required=True, help="the core's HTTP socket")
    parser.add_argument("--placements", required=True, help="the core's placement socket")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="front")
    parser.add_argument("--body-limit", type=int, default=DEFAULT_BODY)
    parser.add_argument("--batch-limit", type=int, default=BATCH_BODY)
    args = parser.parse_args(argv)
    secret = bytes.fromhex(sys.stdin.readline().strip())
    from sqlalchemy import create_engine

    # `decode` reads no database: the engine is never connected
    accounts = Accounts(create_engine("sqlite://"), secret)
    front = Front(args.core, args.placements, accounts)
    app = BodyLimit(front, limit=args.body_limit, larger={"/api/v1/hub/batches": args.batch_limit})
    logs.configure(os.environ.get("GTX_LOG_FORMAT", "json"))
    listener = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # the fronts share it
    listener.bind((args.host, args.port))
    parent = os.getppid()
    config = uvicorn.Config(
        logs.RequestIds(app), log_level="warning", proxy_headers=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    heap.settle()  # the imports out of every later collection (see `heap`)

    async def orphaned() -> None:
        while os.getppid() == parent:  # the core gone: so is this front
            await asyncio.sleep(0.5)
        server.should_exit = True

    async def serve() -> None:
        watch = asyncio.ensure_future(orphaned())
        for _ in range(600):  # the core counts its fronts by this connection
            with contextlib.suppress(OSError):
                await front.placements.connect()
                break
            await asyncio.sleep(0.1)
        else:
            raise SystemExit(f"the core's placement socket {args.placements} did not answer")
        print(f"platform: {args.name} ready on {args.host}:{args.port}", flush=True)
        await server.serve(sockets=[listener])
        watch.cancel()

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(serve())


if __name__ == "__main__":
    main()
