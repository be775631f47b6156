"""Firmware updates at the hub: the operator publishes update files signed with the
release key (the hub checks them with the release *public* key and never holds the
secret one), the hub serves them and offers the newest to the meters (a retained MQTT
message, the update's 108-byte head), and keeps what each meter says it runs, flagging
images that are not published.

A meter's report is its signed status (docs/wire-format.md section 7): it proves which
meter spoke, not which code runs; only secure boot (hardware/hardening.md) binds the two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from nacl.signing import VerifyKey
from sqlalchemy import select

from gridtokenx.hub import schema, updates
from gridtokenx.hub.store import HubStore
from gridtokenx.wire.status import Status


class FirmwareError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Published:
    version: int
    sha256: str
    size: int
    published_at: int


def publish(store: HubStore, update: bytes, release_key: VerifyKey) -> Published:
    """Store an update file the release key signed, newer than every published one."""
    try:
        checked = updates.check(update, release_key)
    except updates.UpdateError as err:
        raise FirmwareError(err.code, f"not an update the release key signed: {err.code}") from None
    with store.engine.begin() as c:
        newest = c.execute(
            select(schema.firmware_images.c.version)
            .order_by(schema.firmware_images.c.version.desc())
            .limit(1)
        ).scalar()
        same = c.execute(
            select(schema.firmware_images.c.version).where(
                schema.firmware_images.c.sha256 == checked.sha256.hex()
            )
        ).scalar()
        if same is not None:
            raise FirmwareError(
                "already_published", f"this image is published already, as version {same}"
            )
        if newest is not None and checked.version <= newest:
            raise FirmwareError(
                "not_newer", f"version {checked.version} is not above the published {newest}"
            )
        row = Published(checked.version, checked.sha256.hex(), checked.size, int(time.time()))
        c.execute(
            schema.firmware_images.insert().values(
                sha256=row.sha256,
                version=row.version,
                size=row.size,
                update=update,
                published_at=row.published_at,
            )
        )
    return row


def published(store: HubStore) -> list[Published]:
    """Every published image, newest first (without the files)."""
    t = schema.firmware_images
    with store.engine.connect() as c:
        rows = c.execute(
            select(t.c.version, t.c.sha256, t.c.size, t.c.published_at).order_by(t.c.version.desc())
        ).all()
    return [Published(r.version, r.sha256, r.size, r.published_at) for r in rows]


def offer(store: HubStore) -> bytes | None:
    """The newest image's offer: the first 108 bytes of its update file."""
    t = schema.firmware_images
    with store.engine.connect() as c:
        head = c.execute(select(t.c.update).order_by(t.c.version.desc()).limit(1)).scalar()
    return None if head is None else bytes(head[: updates.HEAD])


def update_file(store: HubStore, sha256_hex: str) -> bytes | None:
    t = schema.firmware_images
    with store.engine.connect() as c:
        raw = c.execute(select(t.c.update).where(t.c.sha256 == sha256_hex)).scalar()
    return None if raw is None else bytes(raw)


def report(store: HubStore, status: Status) -> None:
    """Keep the image a verified status says its meter runs (the newest status wins)."""
    if status.image_version is None:
        return
    t = schema.meter_images
    values = {
        "version": status.image_version,
        "sha256": (status.image_sha256 or b"").hex(),
        "status_ts": status.ts,
        "reported_at": int(time.time()),
    }
    with store.engine.begin() as c:
        statement = store._upsert(t).values(meter_id=status.meter_id, **values)
        c.execute(
            statement.on_conflict_do_update(
                index_elements=[t.c.meter_id], set_=values, where=t.c.status_ts <= status.ts
            )
        )


def fleet(store: HubStore) -> dict[str, dict[str, Any]]:
    """Per meter that reported: version, sha256, and `image`: `published` (the hash and
    version of a published image), `cable` (flashed by cable, hash unknown to the meter)
    or `unknown` (a hash that no published image has: not our firmware)."""
    t, p = schema.meter_images, schema.firmware_images
    with store.engine.connect() as c:
        known = {r.sha256: r.version for r in c.execute(select(p.c.sha256, p.c.version))}
        rows = c.execute(select(t).order_by(t.c.meter_id)).all()
    out = {}
    for r in rows:
        if r.version == 0 and r.sha256 == "":
            verdict = "cable"
        elif known.get(r.sha256) == r.version:
            verdict = "published"
        else:
            verdict = "unknown"
        out[r.meter_id] = {
            "version": r.version,
            "sha256": r.sha256,
            "reported_at": r.reported_at,
            "image": verdict,
        }
    return out


def as_json(p: Published) -> dict[str, Any]:
    return {
        "version": p.version,
        "sha256": p.sha256,
        "size": p.size,
        "path": f"/firmware/{p.sha256}.gtxu",
    }
