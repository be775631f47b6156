"""Enrol many meters at once (an installer's batch, what `gridtokenx up` does): register
each approved by the public key its device made, and issue each a new MQTT password, in one
database transaction per step and one rewrite of the brokers' files, instead of one
`hub meter add` process (and one rewrite of `passwd` and `acl`) per meter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gridtokenx.hub import credentials
from gridtokenx.hub.rules import MeterStatus
from gridtokenx.hub.store import HubStore, RegistrationError


@dataclass(frozen=True)
class Enrolment:
    meter_id: str
    public_key: bytes
    rated_w: int = 23_000
    household: str | None = None


def enrol(store: HubStore, meters: list[Enrolment], broker_auth: Path | None) -> dict[str, str]:
    """Register the meters not yet registered (approved), and issue every one a new MQTT
    password: returned by meter id, never stored (the database keeps its hash). A meter
    registered before with another key is refused (`key_mismatch`) before anything changes:
    its readings would all be rejected."""
    known = {m.meter_id: m for m in store.meters()}
    for e in meters:
        old = known.get(e.meter_id)
        if old is not None and old.public_key != e.public_key:
            raise RegistrationError(
                "key_mismatch", f"meter {e.meter_id!r} is registered with another key"
            )
    for e in meters:
        if e.meter_id not in known:
            store.add_meter(e.meter_id, e.public_key, e.rated_w, e.household, MeterStatus.APPROVED)
    passwords = credentials.issue_many(store.engine, [e.meter_id for e in meters], "meter")
    if broker_auth is not None:
        credentials.write_files(store.engine, broker_auth)
    return passwords
