"""A hub's side of the co-signing: submit an epoch batch, return the signatures asked for."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam

from gridtokenx.api.deps import HubDep, PlatformDep, unhex
from gridtokenx.api.schemas import EPOCH_MAX, BatchIn, OutcomeOut, SignaturesIn, errors
from gridtokenx.errors import InvalidInput
from gridtokenx.services.site import Outcome

router = APIRouter(
    prefix="/api/v1/hub", tags=["hubs"], responses=errors(401, 403, 404, 409, 413, 422, 429)
)


def outcome_json(out: Outcome) -> dict[str, Any]:
    return {
        "state": out.state,
        "messages": [base64.b64encode(bytes(p.message)).decode() for p in out.proposals],
        "memos": [p.memo for p in out.proposals],
        "transactions": list(out.transactions),
    }


@router.post("/batches", response_model=OutcomeOut)
def submit_batch(body: BatchIn, hub_id: HubDep, platform: PlatformDep) -> dict[str, Any]:
    readings = [(unhex(r, "reading"), unhex(s, "signature")) for r, s in body.readings]
    out = platform.receive_batch(
        hub_id,
        body.epoch,
        unhex(body.header, "header"),
        unhex(body.hub_signature, "hub_signature"),
        readings,
    )
    return outcome_json(out)


@router.post("/batches/{epoch}/signatures", response_model=OutcomeOut)
def sign_batch(
    epoch: Annotated[int, PathParam(ge=0, le=EPOCH_MAX)],
    body: SignaturesIn,
    hub_id: HubDep,
    platform: PlatformDep,
) -> dict[str, Any]:
    try:
        raw = [base64.b64decode(s, validate=True) for s in body.signatures]
    except ValueError:
        raise InvalidInput("invalid_request", "signatures are base64") from None
    return outcome_json(platform.sign_batch(hub_id, epoch, raw))
