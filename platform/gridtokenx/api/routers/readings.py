"""A household's meter readings as the hubs' batches hold them, newest first a page at a
time."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from gridtokenx.adapters import queries
from gridtokenx.api.deps import PlatformDep, UserDep
from gridtokenx.api.schemas import (
    CURSOR_HELP,
    NEXT_CURSOR,
    READING_CURSOR_PATTERN,
    ReadingOut,
    errors,
)

router = APIRouter(
    prefix="/api/v1", tags=["readings"], responses=errors(401, 403, 413, 422, 429, 503)
)


@router.get("/readings", response_model=list[ReadingOut], responses=NEXT_CURSOR)
def my_readings(
    claims: UserDep,
    platform: PlatformDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=READING_CURSOR_PATTERN, description=CURSOR_HELP)
    ] = None,
) -> list[dict[str, Any]]:
    """The readings of the caller's meters, newest first by (epoch, idx, hub_id); the next
    page's cursor is the `Next-Cursor` header, absent on the last page."""
    after = None
    if cursor is not None:
        epoch, idx, hub_id = cursor.split(".", 2)
        after = (int(epoch), int(idx), hub_id)
    mine = queries.meters_of_wallet(platform.books, claims.wallet)
    rows = queries.readings_of_meters(platform.books, mine, limit + 1, after, raw=False)
    page = rows[:limit]
    if len(rows) > limit:
        last = page[-1]
        response.headers["Next-Cursor"] = f"{last['epoch']}.{last['idx']}.{last['hub_id']}"
    return page
