"""Liveness, readiness (the ledger answers) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import generate_latest

from gridtokenx.api.deps import PlatformDep
from gridtokenx.api.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut)
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", response_model=ReadyOut)
def ready(platform: PlatformDep) -> dict[str, Any]:
    platform.dep.grx.supply()  # the ledger answers
    return {"status": "ready", "grx_mint": str(platform.dep.grx.address)}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> str:
    return generate_latest(request.app.state.metrics).decode()
