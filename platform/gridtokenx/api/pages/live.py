"""`/static/live.js`: the small script that keeps the pages current (no build step, no CDN);
each page marks what it refreshes with `data-live`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter()
SCRIPT = (Path(__file__).parent / "static" / "live.js").read_bytes()


@router.get("/static/live.js")
def live_script() -> Response:
    return Response(SCRIPT, media_type="text/javascript", headers={"Cache-Control": "max-age=300"})
