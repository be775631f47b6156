"""A household's orders: place (with escrow; honours Idempotency-Key), cancel, list.

`POST /api/v1/orders` is the platform's hottest request, so its common case (a JSON body
that validates, a bearer token that decodes, no Idempotency-Key) is answered by `FastPath`,
an ASGI middleware in front of the router that runs the very same steps as the route (the
`OrderIn` model, `Accounts.decode`, the role, the per-user limit, `Trading.place_async`,
the one error mapping) without the framework's routing and dependency solving, which cost
more event-loop time than the rest of the request. Any other request, and any request the
fast path would refuse before placing, goes to the route unchanged, which answers it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gridtokenx.accounts import Claims
from gridtokenx.api.deps import Api, TraderDep, TradingDep, UserDep
from gridtokenx.api.errors import error_response, response_for
from gridtokenx.api.schemas import (
    CURSOR_HELP,
    NEXT_CURSOR,
    ORDER_CURSOR_PATTERN,
    OrderIn,
    OrderOut,
    errors,
)
from gridtokenx.errors import CodedError, Forbidden
from gridtokenx.services.orders import OrderRequest, place_order

TRADERS = ("consumer", "prosumer", "admin")
PATH = "/api/v1/orders"

router = APIRouter(
    prefix="/api/v1", tags=["orders"], responses=errors(401, 403, 409, 413, 422, 429, 503)
)


@router.post("/orders", status_code=201, response_model=OrderOut)
async def place(
    body: OrderIn,
    claims: TraderDep,
    t: TradingDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> JSONResponse:
    """On the event loop: the placement waits for its group commit without a thread of its
    own. With an Idempotency-Key the key's claim reads the database first: in a thread."""
    if claims.role not in TRADERS:
        raise Forbidden("wrong_role", "only households trade")
    request = OrderRequest(body.side, body.quantity_wh, body.price, body.zone, body.tif)
    if idempotency_key:
        row = await run_in_threadpool(
            place_order, t, claims.user_id, request, idempotency_key, family=claims.family
        )
    else:
        row = await t.place_async(
            claims.user_id,
            body.side,
            body.quantity_wh,
            body.price,
            body.zone,
            body.tif,
            family=claims.family,
        )
    return JSONResponse(row, status_code=201)


@router.delete("/orders/{order_id}", response_model=OrderOut)
def cancel(order_id: str, claims: UserDep, t: TradingDep) -> dict[str, Any]:
    return t.cancel(claims.user_id, order_id)


@router.get("/orders", response_model=list[OrderOut], responses=NEXT_CURSOR)
def my_orders(
    claims: UserDep,
    t: TradingDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=ORDER_CURSOR_PATTERN, description=CURSOR_HELP)
    ] = None,
) -> list[dict[str, Any]]:
    """Newest first, a page at a time. The body stays a list (clients from before cursors
    read it unchanged); the next page's cursor is the `Next-Cursor` header, absent on the
    last page."""
    after = None
    if cursor is not None:
        epoch, seq, order_id = cursor.split(".", 2)
        after = (int(epoch), int(seq), order_id)
    rows = t.orders_of(claims.user_id, limit + 1, after)
    page = rows[:limit]
    if len(rows) > limit:
        last = page[-1]
        response.headers["Next-Cursor"] = f"{last['epoch']}.{last['seq']}.{last['order_id']}"
    return page


async def parse_fast(
    scope: Scope, receive: Receive, decode: Callable[[str], Claims]
) -> tuple[list[Message], OrderIn | None, Claims | None]:
    """A `POST /api/v1/orders` request's messages (for the route to read again) and, in the
    fast path's case, its order and its token's claims; (messages, None, None) when the
    route must decide: a header twice, an Idempotency-Key, not JSON, a body that does not
    validate, a token that does not decode, a role that does not trade."""
    authorization = content_type = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is not None:  # twice: the route decides
                authorization = b""
                break
            authorization = value
        elif name == b"content-type":
            if content_type is not None:  # twice: the route decides
                authorization = b""
                break
            content_type = value
        elif name == b"idempotency-key":  # its claim reads the database: the route
            authorization = b""
            break
    messages: list[Message] = []
    body = b""
    while True:  # the body limit has read it already: these messages are in memory
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    if (
        authorization is None
        or not authorization.startswith(b"Bearer ")
        or content_type is None
        or content_type.split(b";")[0].strip().lower() != b"application/json"
        or messages[-1]["type"] != "http.request"
    ):
        return messages, None, None
    try:
        order = OrderIn.model_validate_json(body)
        claims = decode(authorization[7:].decode("latin-1"))
    except (ValidationError, CodedError, UnicodeError):
        return messages, None, None
    if claims.role not in TRADERS:
        return messages, None, None
    return messages, order, claims


async def answer_fast(api: Api, user_id: str, family: str, order: OrderIn) -> JSONResponse:
    """The fast path's placement and its answer: the per-user limit, then
    `Trading.place_async`, every refusal mapped as the route's."""
    refused = api.over_user_limit(user_id)
    if refused is not None:
        return error_response(refused)
    assert api.trading is not None
    try:
        row = await api.trading.place_async(
            user_id,
            order.side,
            order.quantity_wh,
            order.price,
            order.zone,
            order.tif,
            family=family,
        )
    except Exception as err:
        return response_for(err, f"POST {PATH}")
    return JSONResponse(row, status_code=201)


class FastPath:
    """`POST /api/v1/orders` in its common case without the router (see the module's
    docstring); `taken` counts the requests it answered (`gtx_api_fast_orders`). It sits
    inside the body limit, the per-address limit, the metrics and the access log, so those
    apply as to any request."""

    def __init__(self, app: ASGIApp, api: Api, taken: Counter) -> None:
        self.app, self.api, self.taken = app, api, taken

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        api = self.api
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != PATH
            or api.trading is None
            or api.accounts is None
        ):
            await self.app(scope, receive, send)
            return
        messages, order, claims = await parse_fast(scope, receive, api.accounts.decode)

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        if claims is None or order is None:
            await self.app(scope, replay, send)  # the route answers, refusals included
            return
        self.taken.inc()
        response = await answer_fast(api, claims.user_id, claims.family, order)
        await response(scope, replay, send)
