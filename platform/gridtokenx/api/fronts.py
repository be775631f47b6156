"""Front processes (`gridtokenx platform run --fronts N`): the HTTP work on other cores.

One interpreter lock cannot hold both an order's HTTP work (parsing, the token, the JSON,
the access log) and its group commit at 3,000 orders/s on two cores. With `--fronts N`
the platform process (the core) listens on no TCP port: N front processes (`api/front.py`)
share the public port (SO_REUSEPORT, the kernel spreads the connections) and

- answer `POST /api/v1/orders` in its fast-path case (`orders.parse_fast`: a JSON body that
  validates, a token that decodes, a trading role, no Idempotency-Key) by sending the order
  to the core over the placement socket, a frame per order (below); the core applies the
  per-address and per-user limits and places it (`PlacementServer`), so every limit and
  every refusal is the core's, one process's, whatever front took the connection;
- forward every other request, and WebSockets, to the core's HTTP server on the core
  socket, with the client's address in X-Forwarded-For (a Unix-socket peer is the
  platform's own front: `Api.client_ip` believes it, and no one else can connect: 0600).

The placement frame (a Unix socket, so no version or peer check): a 4-byte big-endian
length, then a JSON object; at most `MAX_FRAME` bytes. A request is
`{"id", "user_id", "family", "address", "order": {OrderIn's fields}}`; its answer
`{"id", "row": {the order}}` (201) or, refused, `{"id", "status", "headers": [[name,
value]], "body"}`, the HTTP response the front sends as it is. Answers come in any order
(each waits for its own group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from starlette.responses import JSONResponse

from gridtokenx.api.deps import Api
from gridtokenx.api.errors import error_response, response_for
from gridtokenx.api.schemas import OrderIn
from gridtokenx.errors import CodedError, InvalidInput

log = logging.getLogger(__name__)
MAX_FRAME = 64 * 1024
HEAD = struct.Struct(">I")
CORE_SOCKET = "core"  # <data>/core-<token>.sock: the core's HTTP server
PLACEMENT_SOCKET = "place"  # <data>/place-<token>.sock: orders from the fronts


class FrameError(Exception):
    """A frame over `MAX_FRAME` or not a JSON object: the connection is dropped."""


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame, None at the end of the stream."""
    try:
        head = await reader.readexactly(HEAD.size)
    except asyncio.IncompleteReadError:
        return None
    (size,) = HEAD.unpack(head)
    if size > MAX_FRAME:
        raise FrameError(f"a frame of {size} bytes (at most {MAX_FRAME})")
    try:
        frame = json.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ValueError) as err:
        raise FrameError(f"not a frame: {err.__class__.__name__}") from None
    if not isinstance(frame, dict):
        raise FrameError("a frame is a JSON object")
    return frame


_encode = json.JSONEncoder(separators=(",", ":")).encode  # built once, not per frame


def frame(payload: dict[str, Any]) -> bytes:
    data = _encode(payload).encode()
    return HEAD.pack(len(data)) + data


class PlacementServer:
    """The core's end of the placement socket. Each frame is checked (the order's form, the
    per-address and per-user limits) on this event loop and queued for the group commit
    (`Trading.submit`); the answers of a batch are written back together, one wake-up of
    the loop per batch rather than a task and a thread hand-off per order (this loop shares
    the interpreter lock with the group commit). A placed order's answer carries its row,
    which the front renders; a refusal its rendered response. Counted in the API's request
    metrics like a request the core answered itself."""

    def __init__(self, api: Api, requests: Counter, latency: Histogram, taken: Counter) -> None:
        self.api, self.requests, self.latency, self.taken = api, requests, latency, taken
        self.created = requests.labels("POST", "201")
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: list[tuple[Future[dict[str, Any]], Any, asyncio.StreamWriter, float]] = []
        self._lock = threading.Lock()
        self._woken = False

    async def start(self, path: Path) -> None:
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a socket left by a process that died
        self._server = await asyncio.start_unix_server(self._connection, path=str(path))
        os.chmod(path, 0o600)  # only the platform's own user: its fronts

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    request = await read_frame(reader)
                except FrameError as err:
                    log.warning("placement socket: %s; connection dropped", err)
                    return
                if request is None:
                    return
                self._take(request, writer)
        finally:
            self.connections -= 1
            writer.close()

    def _take(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        start = time.perf_counter()
        key = request.get("id")
        api = self.api
        try:
            order = OrderIn.model_validate(request.get("order"))
            user_id, family = str(request["user_id"]), str(request.get("family", ""))
            address = str(request.get("address", "-"))[:64]
        except (ValidationError, KeyError, TypeError):
            bad = InvalidInput("invalid_request", "not a placement frame")
            self._refuse(key, writer, error_response(bad), start)
            return
        self.taken.inc()
        limited = api.over_address_limit(address) or api.over_user_limit(user_id)
        if limited is not None:
            self._refuse(key, writer, error_response(limited), start)
            return
        assert api.trading is not None
        try:
            future = api.trading.submit(
                user_id, order.side, order.quantity_wh, order.price, order.zone, order.tif, family
            )
        except CodedError as err:  # this instance is stopping: the placement not taken
            self._refuse(key, writer, error_response(err), start)
            return
        future.add_done_callback(lambda f: self._finished(f, key, writer, start))

    def _finished(
        self, future: Future[dict[str, Any]], key: Any, writer: asyncio.StreamWriter, start: float
    ) -> None:
        """In the group-commit thread: the answer kept, the loop woken once per batch."""
        with self._lock:
            self._done.append((future, key, writer, start))
            wake, self._woken = not self._woken, True
        if wake and self._loop is not None:
            self._loop.call_soon_threadsafe(self._answer)

    def _answer(self) -> None:
        with self._lock:
            done, self._done, self._woken = self._done, [], False
        now = time.perf_counter()
        out: dict[asyncio.StreamWriter, list[bytes]] = {}
        for future, key, writer, start in done:
            err = future.exception()
            if err is not None and not isinstance(err, Exception):  # the committer ended
                err = RuntimeError(f"the placement ended: {err.__class__.__name__}")
            if err is not None:
                self._refuse(key, writer, response_for(err, "POST /api/v1/orders"), start)
                continue
            self.created.inc()
            self.latency.observe(now - start)
            out.setdefault(writer, []).append(frame({"id": key, "row": future.result()}))
        for writer, frames in out.items():  # a write per front, not per order
            if not writer.is_closing():
                writer.write(b"".join(frames))

    def _refuse(
        self, key: Any, writer: asyncio.StreamWriter, response: JSONResponse, start: float
    ) -> None:
        self.requests.labels("POST", str(response.status_code)).inc()
        self.latency.observe(time.perf_counter() - start)
        headers = [
            [k.decode("latin-1"), v.decode("latin-1")]
            for k, v in response.raw_headers
            if k != b"content-length"
        ]
        if not writer.is_closing():
            body = bytes(response.body).decode()
            writer.write(
                frame({"id": key, "status": response.status_code, "headers": headers, "body": body})
            )
