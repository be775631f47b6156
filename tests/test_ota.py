"""Signed over-the-air updates: gtx/ota.py and bootslot.py on the MicroPython unix port
install only what the release key signed, never a downgrade, and roll back an image that
fails to start; hub/updates.py builds and checks the same files (docs/vectors/update-v1.json
is passed by both)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from services import FIRMWARE, run_micropython

from gridtokenx.hub import updates
from gridtokenx.wire import envelope
from gridtokenx.wire.status import STATUS_DOMAIN, decode_status

RELEASE = SigningKey(bytes(range(32)))  # a test key, not a release key
VECTORS = FIRMWARE.parent / "docs" / "vectors" / "update-v1.json"


def image_of(files: dict[str, bytes]) -> bytes:
    return updates.pack(files)


def on_meter(data: Path, steps: str, key: bytes | None = None) -> list[object]:
    """Run `steps` with `slots` (gtx.ota.Slots on `data`) and `key` (the release key) on
    the unix port; each step's result (or the refusal's reason) printed as one JSON line."""
    code = f"""
import json
from gtx import ota
slots = ota.Slots({str(data)!r})
key = bytes.fromhex({(key or bytes(RELEASE.verify_key)).hex()!r})
def update(name):
    with open({str(data)!r} + "/" + name, "rb") as f:
        return f.read()
for step in {steps!r}.split(";"):
    try:
        print(json.dumps(eval(step.strip())))
    except ota.UpdateRefused as err:
        print(json.dumps("refused:" + err.reason))
"""
    return [json.loads(line) for line in run_micropython(code).splitlines()]


def test_ed25519_verification_on_the_meter_agrees_with_pynacl(tmp_path: Path) -> None:
    key = SigningKey(bytes(range(1, 33)))
    message = b"gridtokenx"
    good = key.sign(message).signature
    bad = bytes([good[0] ^ 1]) + good[1:]
    code = f"""
from gtx import ota
pub = bytes.fromhex({bytes(key.verify_key).hex()!r})
print(ota.verify(pub, {message!r}, bytes.fromhex({good.hex()!r})))
print(ota.verify(pub, {message!r}, bytes.fromhex({bad.hex()!r})))
print(ota.verify(pub, b"gridtokenX", bytes.fromhex({good.hex()!r})))
"""
    assert run_micropython(code).split() == ["True", "False", "False"]


def test_the_update_vectors_are_what_the_generator_makes() -> None:
    assert json.loads(VECTORS.read_text()) == updates.vectors()


def test_the_hub_and_the_meter_decide_every_update_vector_alike(tmp_path: Path) -> None:
    v = json.loads(VECTORS.read_text())
    key = bytes.fromhex(v["release_key"]["public_key_hex"])
    good = bytes.fromhex(v["update"]["update_hex"])
    assert good[: updates.HEAD].hex() == v["update"]["offer_hex"]
    checked = updates.check(
        good, SigningKey(bytes.fromhex(v["release_key"]["seed_hex"])).verify_key
    )
    assert (checked.version, checked.sha256.hex()) == (2, v["update"]["sha256_hex"])
    image = bytes.fromhex(v["update"]["image_hex"])
    assert updates.unpack(image) == {k: bytes.fromhex(d) for k, d in v["update"]["files"].items()}
    hub = []
    for case in v["refused"]:
        with pytest.raises(updates.UpdateError) as err:
            updates.check(
                bytes.fromhex(case["update_hex"]),
                SigningKey(bytes.fromhex(v["release_key"]["seed_hex"])).verify_key,
                case["running_version"],
            )
        hub.append(err.value.code)
    assert hub == [case["reason"] for case in v["refused"]]
    # the meter: each vector installed over a meter running `running_version`
    cases = [(bytes.fromhex(c["update_hex"]), c["running_version"]) for c in [*v["refused"]]]
    cases.append((good, 1))
    for k, (raw, _) in enumerate(cases):
        (tmp_path / f"{k}.gtxu").write_bytes(raw)
    code = f"""
import json, bootslot
from gtx import ota
key = bytes.fromhex({key.hex()!r})
for k, running in enumerate({[r for _, r in cases]!r}):
    data = {str(tmp_path)!r} + "/m" + str(k)
    slots = ota.Slots(data)
    s = bootslot.state(data)
    s["version"] = running
    bootslot.save(data, s)
    with open({str(tmp_path)!r} + "/" + str(k) + ".gtxu", "rb") as f:
        raw = f.read()
    try:
        print(json.dumps(slots.install(raw, key)))
    except ota.UpdateRefused as err:
        print(json.dumps(err.reason))
"""
    meter = [json.loads(line) for line in run_micropython(code).splitlines()]
    assert meter == [*hub, 2]
    assert (tmp_path / "m9" / "ota" / "a" / "gtx" / "app.py").read_bytes() == b"print('v2')\n"
    assert not (tmp_path / "m8" / "ota" / "app.py").exists()  # "../app.py" wrote nothing out


def test_the_status_vectors_on_both_sides() -> None:
    v = json.loads(VECTORS.read_text())
    for s in v["statuses"]:
        f = s["fields"]
        raw, signature = envelope.unwrap(bytes.fromhex(s["envelope_hex"]))
        assert raw.hex() == s["cbor_hex"]
        decoded = decode_status(raw)
        assert (decoded.image_version, decoded.image_sha256) == (
            f["image_version"],
            bytes.fromhex(f["image_sha256_hex"]),
        )
        code = f"""
from gtx import reading
seed = bytes.fromhex({updates.VECTOR_METER_SEED.hex()!r})
from gtx import ed25519
public = ed25519.public_key(seed)
m = reading.encode_status({f["meter_id"]!r}, {f["ts"]}, {f["uptime_s"]}, {f["last_seq"]},
    {f["buffered"]}, {f["dropped"]}, {f["fault"]!r},
    ({f["image_version"]}, bytes.fromhex({f["image_sha256_hex"]!r}), False))
print(m.hex())
print(reading.seal(m, reading.STATUS_DOMAIN, seed, public).hex())
"""
        assert run_micropython(code).split() == [s["cbor_hex"], s["envelope_hex"]]
        envelope.verify(
            raw, signature, STATUS_DOMAIN, SigningKey(updates.VECTOR_METER_SEED).verify_key.encode()
        )


def test_a_good_update_installs_runs_on_trial_and_is_confirmed(tmp_path: Path) -> None:
    files = {"gtx/app.py": b"x = 2\n" * 500, "lib/umqtt/simple.py": b"y = 1\n"}
    image = image_of(files)
    (tmp_path / "v2.gtxu").write_bytes(updates.build(image, 2, RELEASE))
    got = on_meter(
        tmp_path,
        "slots.running(); slots.install(update('v2.gtxu'), key); slots.running();"
        " slots.boot(); slots.running(); slots.confirm(); slots.running(); slots.boot()",
    )
    digest = hashlib.sha256(image).hexdigest()
    assert got == [
        [0, "", False],
        2,
        [0, "", False],  # installed, not running yet
        "a",
        [2, digest, True],  # running on trial
        None,
        [2, digest, False],
        "a",
    ]
    for name, data in files.items():
        assert (tmp_path / "ota" / "a" / name).read_bytes() == data
    state = json.loads((tmp_path / "ota" / "state.json").read_text())
    assert (state["running"], state["version"], state["sha256"]) == ("a", 2, digest)
    assert updates.known(tmp_path, RELEASE.verify_key) == {digest: 2}


def test_tampered_forged_and_older_images_are_refused(tmp_path: Path) -> None:
    v3 = image_of({"gtx/app.py": b"v3"})
    good = updates.build(v3, 3, RELEASE)
    (tmp_path / "v3.gtxu").write_bytes(good)
    (tmp_path / "tampered.gtxu").write_bytes(good[:-1] + b"X")  # the image changed
    forged = updates.build(image_of({"gtx/app.py": b"v9"}), 9, SigningKey(bytes(32)))
    (tmp_path / "forged.gtxu").write_bytes(forged)  # someone else's key
    (tmp_path / "relabelled.gtxu").write_bytes(good[:7] + b"\x09" + good[8:])  # version 9
    (tmp_path / "v2.gtxu").write_bytes(updates.build(image_of({"gtx/app.py": b"v2"}), 2, RELEASE))
    (tmp_path / "short.gtxu").write_bytes(b"GTXU")
    got = on_meter(
        tmp_path,
        "slots.install(update('tampered.gtxu'), key); slots.install(update('forged.gtxu'), key);"
        " slots.install(update('relabelled.gtxu'), key); slots.install(update('short.gtxu'), key);"
        " slots.state(); slots.install(update('v3.gtxu'), key); slots.boot(); slots.confirm();"
        " slots.install(update('v2.gtxu'), key); slots.install(update('v3.gtxu'), key);"
        " slots.running()",
    )
    assert got == [
        "refused:bad_hash",
        "refused:bad_signature",
        "refused:bad_signature",
        "refused:malformed_update",
        {"running": None, "version": 0, "sha256": "", "trial": None, "tries": 0},  # untouched
        3,
        "a",
        None,
        "refused:downgrade",
        "refused:downgrade",  # the same version again is no upgrade either
        [3, hashlib.sha256(v3).hexdigest(), False],
    ]
    for name, code in (("tampered", "bad_hash"), ("forged", "bad_signature")):
        with pytest.raises(updates.UpdateError) as err:
            updates.check((tmp_path / f"{name}.gtxu").read_bytes(), RELEASE.verify_key)
        assert err.value.code == code
    assert set(updates.known(tmp_path, RELEASE.verify_key).values()) == {2, 3}


def test_an_image_that_fails_to_start_is_rolled_back(tmp_path: Path) -> None:
    v1, v2 = image_of({"gtx/app.py": b"v1"}), image_of({"gtx/app.py": b"v2 broken"})
    (tmp_path / "v1.gtxu").write_bytes(updates.build(v1, 1, RELEASE))
    (tmp_path / "v2.gtxu").write_bytes(updates.build(v2, 2, RELEASE))
    first = on_meter(
        tmp_path,
        "slots.install(update('v1.gtxu'), key); slots.boot(); slots.confirm();"
        " slots.install(update('v2.gtxu'), key); slots.boot()",
    )
    assert first == [1, "a", None, 2, "b"]  # v2 runs on trial from slot b ...
    # ... and the meter restarts before v2 confirmed a good start (it crashed)
    second = on_meter(tmp_path, "slots.boot(); slots.running(); slots.state()['rolled_back']")
    h1, h2 = hashlib.sha256(v1).hexdigest(), hashlib.sha256(v2).hexdigest()
    assert second == ["a", [1, h1, False], {"version": 2, "sha256": h2}]
    assert (tmp_path / "ota" / "a" / "gtx" / "app.py").read_bytes() == b"v1"  # kept
