"""The feeder balance on the hub's HTTP side: the grid operator's page, JSON and metrics.

Mounted by web.py; metrics are a collector read at scrape time, so /metrics needs no code
of its own for them.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gridtokenx.hub import balances
from gridtokenx.hub.store import HubStore


class FeederCollector(Collector):
    def __init__(self, store: HubStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = balances.counts(self.store)
        held = counts.pop("held")
        verdicts = GaugeMetricFamily(
            "gtx_hub_feeder_balances", "Feeder balances by verdict", labels=["verdict"]
        )
        for verdict, n in counts.items():
            verdicts.add_metric([verdict], n)
        yield verdicts
        yield GaugeMetricFamily(
            "gtx_hub_batches_held", "Batches held for the grid operator's review", value=held
        )
        newest = balances.recent(self.store, 1)
        yield GaugeMetricFamily(
            "gtx_hub_feeder_gap_wh",
            "The newest balance's gap (feeder - households - losses), Wh",
            value=newest[0]["gap_wh"] if newest else 0,
        )


def mount(
    app: FastAPI, store: HubStore, registry: CollectorRegistry, hub_id: str, token: str | None
) -> None:
    """The page shows verdicts and gaps to the LAN; which meters are named is for the grid
    operator only (the JSON, with the installer token), not for the neighbours."""
    registry.register(FeederCollector(store))

    def operator(authorization: Annotated[str | None, Header()] = None) -> None:
        if not token:
            raise HTTPException(
                503, {"code": "installer_api_disabled", "message": "set HUB_INSTALLER_TOKEN"}
            )
        given = (authorization or "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, token.encode()):
            raise HTTPException(
                401, {"code": "unauthorized", "message": "a valid installer token is required"}
            )

    templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

    def rows(limit: int) -> list[dict[str, Any]]:
        out = balances.recent(store, limit)
        for row in out:
            t0, t1 = (datetime.fromtimestamp(row[k], UTC) for k in ("t0", "t1"))
            row["window"] = f"{t0:%Y-%m-%d %H:%M:%S} - {t1:%H:%M:%S}"
            row["suspects"] = len(row.pop("named"))
        return out

    @app.get("/feeder", response_class=HTMLResponse)
    def feeder_page(request: Request) -> HTMLResponse:
        with store.engine.connect() as c:
            configured = balances.get_feeder(c)
        return templates.TemplateResponse(
            request,
            "feeder.html",
            {"hub_id": hub_id, "feeder": configured, "balances": rows(96)},
        )

    @app.get("/api/feeder/balances", dependencies=[Depends(operator)])
    def feeder_balances(limit: int = 96) -> list[dict[str, Any]]:
        return balances.recent(store, max(1, min(limit, 2000)))
