"""WebSocket events: market events for all, account events to their owner only."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from gridtokenx.api.deps import api_of
from gridtokenx.errors import CodedError

router = APIRouter(tags=["ws"])


@router.websocket("/ws")
async def events(ws: WebSocket, token: str | None = None) -> None:
    """Send {"subscribe": ["market", "account"]}; receive {"type": ..., "data": ...}."""
    api = api_of(ws)
    await ws.accept()
    try:
        if api.accounts is None:
            raise CodedError("no_accounts", "user accounts are not enabled here")
        claims = api.accounts.verify(token or "")
    except CodedError as err:
        await ws.close(code=4401, reason=err.code)
        return
    sub = api.fanout.subscribe(claims.user_id)

    async def receive() -> None:
        while True:
            message = await ws.receive_json()
            topics = message.get("subscribe", []) if isinstance(message, dict) else []
            sub.topics |= {t for t in topics if t in ("market", "account")}
            await sub.queue.put({"type": "subscribed", "data": sorted(sub.topics)})

    reader = asyncio.create_task(receive())
    try:
        while True:
            getter = asyncio.create_task(sub.queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                getter.cancel()
                return
            item = getter.result()
            if item is None:  # dropped for being too slow
                await ws.close(code=4408, reason="too_slow")
                return
            await ws.send_json(item)
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        reader.cancel()
        api.fanout.unsubscribe(sub)
