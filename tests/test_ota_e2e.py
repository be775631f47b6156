"""Over-the-air updates end to end: the real firmware on the MicroPython unix port, a real
Mosquitto, a hub process serving and offering what the operator published. The meter
takes the offer, checks it, restarts into it on trial, confirms it after its first
delivered reading and reports it (signed); a broken image is rolled back; a file changed
on the hub is refused; a meter reporting an image nobody published is flagged. On the
unix port a restart is the process exiting (75 after an install, 1 after a crash) and
this test starting it again, as a board's reset would."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey
from paho.mqtt.enums import CallbackAPIVersion
from services import FIRMWARE, Mosquitto, free_port, micropython, mpy_env, run_micropython
from sqlalchemy import update

from gridtokenx.hub import schema
from gridtokenx.hub.store import connect
from gridtokenx.sim.devices import ChipServer, EmulatedChip
from gridtokenx.wire import envelope
from gridtokenx.wire.status import STATUS_DOMAIN, Status, encode_status
from gridtokenx.wire.topics import status_topic

pytestmark = pytest.mark.slow
TOKEN = "installer-test-token"


def gtx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridtokenx", *args], capture_output=True, text=True, timeout=120
    )


def hub(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridtokenx.hub", *args, "--database", db],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def running_hub(tmp_path: Path, broker: Mosquitto) -> Iterator[tuple[str, int]]:
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "gridtokenx.hub", "run", "--database", db,
            "--mqtt-port", str(broker.port), "--http-host", "127.0.0.1",
            "--http-port", str(port), "--min-interval-s", "0",
            "--key-file", str(tmp_path / "hub.key"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**mpy_env(), "HUB_INSTALLER_TOKEN": TOKEN},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "ready" in line:
                break
        yield db, port
    finally:
        proc.kill()
        proc.wait()


def api(port: int) -> dict[str, Any]:
    r = httpx.get(
        f"http://127.0.0.1:{port}/api/firmware", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def wait_for(predicate, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.2)


def sign(tmp_path: Path, key: Path, version: int, source: Path) -> Path:
    out = tmp_path / f"v{version}.gtxu"
    done = gtx(
        "firmware", "sign", "--version", str(version), "--source", str(source),
        "--out", str(out), "--key", str(key),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def image_sha(update_file: Path) -> str:
    return update_file.read_bytes()[12:44].hex()


class Meter:
    def __init__(self, config: Path) -> None:
        self.config = config

    def boot(self, readings: int) -> tuple[int, str]:
        """One start of the meter until it exits: (exit code, what it printed)."""
        done = subprocess.run(
            [micropython(), str(FIRMWARE / "main.py"), str(self.config), str(readings)],
            env=mpy_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.returncode, done.stdout + done.stderr


def test_an_offered_update_is_taken_confirmed_reported_and_a_broken_one_rolled_back(
    tmp_path: Path, broker: Mosquitto, running_hub: tuple[str, int]
) -> None:
    db, port = running_hub
    flash = tmp_path / "flash"
    run_micropython(
        f"from gtx import store, keys; store.makedirs({str(flash)!r}); "
        f"keys.load_or_create({str(flash)!r})"
    )
    pubkey = (flash / "meter.pub").read_text().strip()
    assert hub("meter", "add", "mtr-ota", "--pubkey", pubkey, "--approve", db=db).returncode == 0
    key = tmp_path / "release" / "ota.key"
    made = gtx("firmware", "release-key", "--key", str(key))
    release = made.stdout.strip()
    assert made.returncode == 0 and len(release) == 64
    assert oct(key.stat().st_mode & 0o777) == "0o600" and release not in key.read_text()
    v2 = sign(tmp_path, key, 2, FIRMWARE)  # the firmware as it is, as version 2
    broken_src = tmp_path / "broken"
    shutil.copytree(FIRMWARE, broken_src)
    (broken_src / "gtx" / "app.py").write_text("raise RuntimeError('v3 cannot start')\n")
    v3 = sign(tmp_path, key, 3, broken_src)
    next_src = tmp_path / "next"
    shutil.copytree(FIRMWARE, next_src)
    with (next_src / "gtx" / "app.py").open("a") as f:
        f.write("# version 4\n")

    wrong = hub("firmware", "publish", str(v2), "--release-key", bytes(32).hex(), db=db)
    assert wrong.returncode == 2 and "bad_signature" in wrong.stderr  # the hub checks too
    published = hub("firmware", "publish", str(v2), "--release-key", release, db=db)
    assert published.returncode == 0, published.stderr
    wait_for(lambda: api(port)["offered"] == 2)
    assert hub("firmware", "publish", str(v2), "--release-key", release, db=db).returncode == 2

    chip = EmulatedChip("pzem004t", 1)
    chip.update(import_wh=5_000)
    with ChipServer([chip]) as chips:
        config = tmp_path / "meter.json"
        config.write_text(
            json.dumps(
                {
                    "meter_id": "mtr-ota",
                    "uart": {"tcp": chips.address, "timeout_ms": 50},
                    "broker": {"host": "127.0.0.1", "port": broker.port, "timeout_s": 2},
                    "interval_s": 1.05,
                    "heartbeat_s": 60,
                    "data_dir": str(flash),
                    "release_key": release,
                    "update_url": f"http://127.0.0.1:{port}",
                }
            )
        )
        meter = Meter(config)
        code, out = meter.boot(0)  # the cable-flashed image: it takes the offer of v2
        assert code == 75 and "image 2 installed" in out, out
        state = json.loads((flash / "ota" / "state.json").read_text())
        assert state["trial"] == {"slot": "a", "version": 2, "sha256": image_sha(v2)}
        assert (flash / "ota" / "a" / "gtx" / "app.py").read_bytes() == (
            FIRMWARE / "gtx" / "app.py"
        ).read_bytes()

        code, out = meter.boot(2)  # v2 on trial: reads, delivers, confirms
        assert code == 0 and "image 2 confirmed" in out, out
        state = json.loads((flash / "ota" / "state.json").read_text())
        assert (state["running"], state["version"], state["trial"]) == ("a", 2, None)
        wait_for(lambda: api(port)["meters"].get("mtr-ota", {}).get("version") == 2)
        assert api(port)["meters"]["mtr-ota"]["sha256"] == image_sha(v2)
        assert api(port)["meters"]["mtr-ota"]["image"] == "published"

        # a file changed on the hub (its disk, or anyone between): refused by its hash
        v4 = sign(tmp_path, key, 4, next_src)
        again = hub(
            "firmware",
            "publish",
            str(sign(tmp_path, key, 5, FIRMWARE)),
            "--release-key",
            release,
            db=db,
        )
        assert again.returncode == 2 and "already_published" in again.stderr
        assert hub("firmware", "publish", str(v4), "--release-key", release, db=db).returncode == 0
        wait_for(lambda: api(port)["offered"] == 4)
        engine = connect(db)
        raw = v4.read_bytes()
        with engine.begin() as c:
            c.execute(
                update(schema.firmware_images)
                .where(schema.firmware_images.c.version == 4)
                .values(update=raw[:-10] + b"#tampered\n")
            )
        code, out = meter.boot(2)
        assert code == 0 and "update refused: bad_hash" in out, out
        assert not (flash / "ota" / "download.bin").exists()
        state = json.loads((flash / "ota" / "state.json").read_text())
        assert (state["running"], state["version"], state["trial"]) == ("a", 2, None)
        with engine.begin() as c:  # the operator takes the bad file away
            c.execute(schema.firmware_images.delete().where(schema.firmware_images.c.version == 4))
        engine.dispose()

        # v3 cannot start: installed, tried once, rolled back to v2
        assert hub("firmware", "publish", str(v3), "--release-key", release, db=db).returncode == 0
        wait_for(lambda: api(port)["offered"] == 3)
        code, out = meter.boot(0)
        assert code == 75 and "image 3 installed" in out, out
        code, out = meter.boot(2)  # the trial boot crashes
        assert code == 1 and "v3 cannot start" in out, out
        code, out = meter.boot(2)  # the restart runs v2 again, which takes v3 no more
        assert code == 0 and "update refused: rolled_back" in out, out
        state = json.loads((flash / "ota" / "state.json").read_text())
        assert state["rolled_back"] == {"version": 3, "sha256": image_sha(v3)}
        assert (state["running"], state["version"], state["trial"]) == ("a", 2, None)
        assert "meter mtr-ota" in out
    wait_for(lambda: api(port)["meters"]["mtr-ota"]["version"] == 2)
    assert api(port)["meters"]["mtr-ota"]["image"] == "published"
    assert [p["version"] for p in api(port)["published"]] == [3, 2]


def test_a_meter_reporting_an_image_nobody_published_is_flagged(
    tmp_path: Path, broker: Mosquitto, running_hub: tuple[str, int]
) -> None:
    db, port = running_hub
    keys = {m: SigningKey(bytes([n + 1]) * 32) for n, m in enumerate(["mtr-odd", "mtr-cable"])}
    for meter_id, k in keys.items():
        added = hub(
            "meter", "add", meter_id, "--pubkey", bytes(k.verify_key).hex(), "--approve", db=db
        )
        assert added.returncode == 0
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="probe")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    odd = hashlib.sha256(b"someone's own build").digest()
    for meter_id, version, digest in (("mtr-odd", 7, odd), ("mtr-cable", 0, b"")):
        raw = encode_status(Status(meter_id, int(time.time()), 5, 0, 0, 0, "", version, digest))
        seal = envelope.seal(raw, STATUS_DOMAIN, keys[meter_id])
        client.publish(status_topic(meter_id), seal, qos=1, retain=True).wait_for_publish()
    forged = encode_status(Status("mtr-odd", int(time.time()) + 1, 5, 0, 0, 0, "", 2, bytes(32)))
    stranger = SigningKey(bytes([9]) * 32)
    client.publish(status_topic("mtr-odd"), envelope.seal(forged, STATUS_DOMAIN, stranger), qos=1)
    wait_for(lambda: len(api(port)["meters"]) == 2)
    time.sleep(0.5)  # the forged status (after them) had its chance to be mistaken
    client.loop_stop()
    client.disconnect()
    meters = api(port)["meters"]
    assert {m: (v["version"], v["sha256"], v["image"]) for m, v in meters.items()} == {
        "mtr-cable": (0, "", "cable"),
        "mtr-odd": (7, odd.hex(), "unknown"),
    }
    page = httpx.get(f"http://127.0.0.1:{port}/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert page.status_code == 200
    assert f"v7 {odd.hex()[:12]} unknown image" in page.text
    assert "v0 (flashed by cable)" in page.text
    listed = hub("firmware", "list", db=db)
    assert listed.stdout.splitlines() == [
        "mtr-cable\tv0\t-\tcable",
        f"mtr-odd\tv7\t{odd.hex()}\tunknown",
    ]
    missing = httpx.get(f"http://127.0.0.1:{port}/firmware/{odd.hex()}.gtxu")
    assert (missing.status_code, missing.json()["code"]) == (404, "unknown_image")
    assert httpx.get(f"http://127.0.0.1:{port}/firmware/..%2fhub.db").status_code == 404
