"""Signed over-the-air updates: gtx/ota.py on the MicroPython unix port installs only what
the release key signed, never a downgrade, and rolls back an image that fails to start;
hub/updates.py builds the files and lists the known image hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from services import run_micropython

from gridtokenx.hub import updates

RELEASE = SigningKey(bytes(range(32)))  # a test key, not a release key


def on_meter(data: Path, steps: str) -> list[object]:
    """Run `steps` with `slots` (gtx.ota.Slots on `data`) and `key` (the release key) on
    the unix port; each step's result (or the refusal's reason) printed as one JSON line."""
    code = f"""
import json
from gtx import ota
slots = ota.Slots({str(data)!r})
key = bytes.fromhex({bytes(RELEASE.verify_key).hex()!r})
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


def test_a_good_update_installs_runs_on_trial_and_is_confirmed(tmp_path: Path) -> None:
    image = b"firmware v2 " * 1000
    (tmp_path / "v2.gtxu").write_bytes(updates.build(image, 2, RELEASE))
    got = on_meter(
        tmp_path,
        "slots.running(); slots.install(update('v2.gtxu'), key); slots.running();"
        " slots.boot(); slots.confirm(); slots.running(); slots.boot()",
    )
    digest = hashlib.sha256(image).hexdigest()
    assert got == [[0, ""], 2, [2, digest], "a", None, [2, digest], "a"]
    assert (tmp_path / "ota" / "a.bin").read_bytes() == image
    state = json.loads((tmp_path / "ota" / "state.json").read_text())
    assert (state["running"], state["version"], state["sha256"]) == ("a", 2, digest)
    assert updates.known(tmp_path, RELEASE.verify_key) == {digest: 2}


def test_tampered_forged_and_older_images_are_refused(tmp_path: Path) -> None:
    good = updates.build(b"v3 image", 3, RELEASE)
    (tmp_path / "v3.gtxu").write_bytes(good)
    (tmp_path / "tampered.gtxu").write_bytes(good[:-1] + b"X")  # the image changed
    forged = updates.build(b"v9 image", 9, SigningKey(bytes(32)))  # someone else's key
    (tmp_path / "forged.gtxu").write_bytes(forged)
    (tmp_path / "relabelled.gtxu").write_bytes(good[:7] + b"\x09" + good[8:])  # version 9
    (tmp_path / "v2.gtxu").write_bytes(updates.build(b"v2 image", 2, RELEASE))
    (tmp_path / "short.gtxu").write_bytes(b"GTXU")
    got = on_meter(
        tmp_path,
        "slots.install(update('tampered.gtxu'), key); slots.install(update('forged.gtxu'), key);"
        " slots.install(update('relabelled.gtxu'), key); slots.install(update('short.gtxu'), key);"
        " slots.install(update('v3.gtxu'), key); slots.boot(); slots.confirm();"
        " slots.install(update('v2.gtxu'), key); slots.install(update('v3.gtxu'), key);"
        " slots.running()",
    )
    assert got == [
        "refused:bad_hash",
        "refused:bad_signature",
        "refused:bad_signature",
        "refused:malformed_update",
        3,
        "a",
        None,
        "refused:downgrade",
        "refused:downgrade",  # the same version again is no upgrade either
        [3, hashlib.sha256(b"v3 image").hexdigest()],
    ]
    for name, code in (("tampered", "bad_hash"), ("forged", "bad_signature")):
        with pytest.raises(updates.UpdateError) as err:
            updates.check((tmp_path / f"{name}.gtxu").read_bytes(), RELEASE.verify_key)
        assert err.value.code == code
    assert set(updates.known(tmp_path, RELEASE.verify_key).values()) == {2, 3}


def test_an_image_that_fails_to_start_is_rolled_back(tmp_path: Path) -> None:
    (tmp_path / "v1.gtxu").write_bytes(updates.build(b"v1 image", 1, RELEASE))
    (tmp_path / "v2.gtxu").write_bytes(updates.build(b"v2 broken", 2, RELEASE))
    first = on_meter(
        tmp_path,
        "slots.install(update('v1.gtxu'), key); slots.boot(); slots.confirm();"
        " slots.install(update('v2.gtxu'), key); slots.boot()",
    )
    assert first == [1, "a", None, 2, "b"]  # v2 runs on trial from slot b ...
    # ... and the meter restarts before v2 confirmed a good start (it crashed)
    second = on_meter(tmp_path, "slots.boot(); slots.running(); slots.state()['rolled_back']")
    v1, v2 = hashlib.sha256(b"v1 image").hexdigest(), hashlib.sha256(b"v2 broken").hexdigest()
    assert second == ["a", [1, v1], {"version": 2, "sha256": v2}]
    assert (tmp_path / "ota" / "a.bin").read_bytes() == b"v1 image"  # the previous image kept
