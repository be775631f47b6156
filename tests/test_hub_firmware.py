"""The hub's side of firmware updates, in process on SQLite and PostgreSQL: what it
publishes (only what the release key signed, only newer), what it serves, and how it
judges what meters report."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from databases import database
from fastapi.testclient import TestClient
from nacl.signing import SigningKey

from gridtokenx.hub import firmware, updates
from gridtokenx.hub.firmware import FirmwareError
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.hub.web import HubContext, create_app
from gridtokenx.wire.status import Status

RELEASE = SigningKey(bytes([7]) * 32)  # a test key
TOKEN = "t0ken"


def image(text: bytes) -> bytes:
    return updates.pack({"gtx/app.py": text})


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubStore]:
    with database(request.param, tmp_path) as url:
        s = HubStore(connect(url))
        for meter_id in ("m1", "m2", "m3"):
            s.add_meter(meter_id, bytes(SigningKey(meter_id.encode() * 16).verify_key))
        yield s
        s.engine.dispose()


def test_only_newer_images_the_release_key_signed_are_published(store: HubStore) -> None:
    v2 = updates.build(image(b"v2"), 2, RELEASE)
    refused = []
    for raw in (
        updates.build(image(b"v2"), 2, SigningKey(bytes(32))),  # another key
        v2[:-1] + b"!",  # changed after signing
        updates.build(updates.pack({"gtx/app.py": b""})[:-1], 2, RELEASE),  # torn entry
    ):
        with pytest.raises(FirmwareError) as err:
            firmware.publish(store, raw, RELEASE.verify_key)
        refused.append(err.value.code)
    assert refused == ["bad_signature", "bad_hash", "bad_image"]
    assert firmware.published(store) == []
    assert firmware.offer(store) is None
    p = firmware.publish(store, v2, RELEASE.verify_key)
    assert (p.version, p.sha256, p.size) == (2, hashlib.sha256(image(b"v2")).hexdigest(), 18)
    for raw, code in (
        (updates.build(image(b"v1"), 1, RELEASE), "not_newer"),
        (updates.build(image(b"v2 again"), 2, RELEASE), "not_newer"),
        (updates.build(image(b"v2"), 5, RELEASE), "already_published"),
    ):
        with pytest.raises(FirmwareError) as err:
            firmware.publish(store, raw, RELEASE.verify_key)
        assert err.value.code == code
    v3 = updates.build(image(b"v3"), 3, RELEASE)
    firmware.publish(store, v3, RELEASE.verify_key)
    assert [x.version for x in firmware.published(store)] == [3, 2]
    assert firmware.offer(store) == v3[:108]
    assert firmware.update_file(store, p.sha256) == v2


def test_reports_are_judged_against_the_published_images(store: HubStore) -> None:
    raw = updates.build(image(b"v2"), 2, RELEASE)
    firmware.publish(store, raw, RELEASE.verify_key)
    good = hashlib.sha256(image(b"v2")).digest()
    firmware.report(store, Status("m1", 100, 1, 0, 0, 0, "", 2, good))
    firmware.report(store, Status("m2", 100, 1, 0, 0, 0, "", 3, good))  # right hash, wrong v
    firmware.report(store, Status("m3", 100, 1, 0, 0, 0, "", 0, b""))
    firmware.report(store, Status("m3", 90, 1, 0, 0, 0, "", 2, good))  # older: ignored
    firmware.report(store, Status("m1", 101, 1, 0, 0, 0, ""))  # old firmware: no image keys
    fleet = firmware.fleet(store)
    assert {m: (v["version"], v["sha256"], v["image"]) for m, v in fleet.items()} == {
        "m1": (2, good.hex(), "published"),
        "m2": (3, good.hex(), "unknown"),
        "m3": (0, "", "cable"),
    }


def test_the_hub_serves_published_files_and_shows_the_fleet(store: HubStore) -> None:
    raw = updates.build(image(b"v2"), 2, RELEASE)
    firmware.publish(store, raw, RELEASE.verify_key)
    firmware.report(store, Status("m1", 100, 1, 0, 0, 0, "", 9, bytes(32)))
    client = TestClient(create_app(HubContext(store, installer_token=TOKEN)))
    name = hashlib.sha256(image(b"v2")).hexdigest() + ".gtxu"
    got = client.get(f"/firmware/{name}")
    assert (got.status_code, got.content) == (200, raw)
    for bad in (name.upper(), "0" * 64 + ".gtxu", "x.gtxu", name[:-5]):
        r = client.get(f"/firmware/{bad}")
        assert (r.status_code, r.json()["code"]) == (404, "unknown_image"), bad
    assert client.get("/api/firmware").status_code == 401
    state = client.get("/api/firmware", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert state["published"] == [
        {"version": 2, "sha256": name[:64], "size": 18, "path": f"/firmware/{name}"}
    ]
    assert state["offered"] is None  # no MQTT side in this app
    assert state["meters"]["m1"]["image"] == "unknown"
    page = client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert f"v9 {'0' * 12} unknown image" in page and "not reported" in page
    assert "unknown image" not in client.get("/").text  # the LAN sees no meter list
    metrics = client.get("/metrics").text
    for line in (
        'gtx_hub_firmware_meters{image="published"} 0.0',
        'gtx_hub_firmware_meters{image="cable"} 0.0',
        'gtx_hub_firmware_meters{image="unknown"} 1.0',
    ):
        assert line in metrics.splitlines()
