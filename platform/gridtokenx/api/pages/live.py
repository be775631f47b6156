"""`/static/live.js`: the small script that keeps the pages current (no build step, no CDN);
each page marks what it refreshes with `data-live`. It is the hub's script (one copy, in
the gateway-hub package the platform depends on), served as the hub serves it."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter()
SCRIPT = resources.files("gridtokenx.hub").joinpath("static", "live.js").read_bytes()


@router.get("/static/live.js")
def live_script() -> Response:
    return Response(SCRIPT, media_type="text/javascript", headers={"Cache-Control": "max-age=300"})
