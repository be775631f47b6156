"""Firmware update files, signed with the release key (docs/wire-format.md section 7):
what the operator builds (`gridtokenx firmware sign`), the hub serves, and the meters'
gtx/ota.py checks before installing.

An update is manifest (44 bytes: b"GTXU", version u32 BE, image size u32 BE, SHA-256 of
the image) + Ed25519 signature of UPDATE_DOMAIN + manifest (64 bytes) + the image. The
first 108 bytes are also the offer the hub publishes. The image is the firmware's files:
entries of u16 BE name length, name (relative path, UTF-8), u32 BE size, data.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from gridtokenx.wire.envelope import seal
from gridtokenx.wire.status import STATUS_DOMAIN, Status, encode_status

UPDATE_DOMAIN = b"gridtokenx/update/v1\x00"
MAGIC = b"GTXU"
MANIFEST_SIZE = 44
SIGNATURE_SIZE = 64
HEAD = MANIFEST_SIZE + SIGNATURE_SIZE
MAX_IMAGE = 4 * 1024 * 1024  # what a meter accepts
OFFER_TOPIC = "gtx/v1/firmware/offer"
_PART = re.compile(r"[A-Za-z_][^/\\]*")


class UpdateError(Exception):
    """An update file that is not one the release key signed (with a stable code)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Update:
    version: int
    sha256: bytes
    size: int

    @classmethod
    def of_head(cls, head: bytes) -> Update:
        """The fields of an update's (already checked) first 108 bytes, e.g. an offer."""
        return cls(int.from_bytes(head[4:8], "big"), head[12:44], int.from_bytes(head[8:12], "big"))

    @property
    def name(self) -> str:
        """Where the hub serves it: /firmware/{name}."""
        return self.sha256.hex() + ".gtxu"


def safe_name(name: str) -> bool:
    """A relative path of plain names (what the meter accepts: nothing outside a slot)."""
    return bool(name) and all(
        part not in (".", "..") and _PART.fullmatch(part) for part in name.split("/")
    )


def pack(files: dict[str, bytes]) -> bytes:
    """An image of these files (name -> content), in name order."""
    out = bytearray()
    for name in sorted(files):
        raw = name.encode()
        if not safe_name(name) or len(raw) > 0xFFFF:
            raise UpdateError("bad_image")
        out += len(raw).to_bytes(2, "big") + raw + len(files[name]).to_bytes(4, "big")
        out += files[name]
    return bytes(out)


def unpack(image: bytes) -> dict[str, bytes]:
    """The files of an image; `bad_image` for a bad name, a torn entry or no files."""
    out: dict[str, bytes] = {}
    at = 0
    while at < len(image):
        n = int.from_bytes(image[at : at + 2], "big")
        try:
            name = image[at + 2 : at + 2 + n].decode()
        except UnicodeDecodeError:
            raise UpdateError("bad_image") from None
        size = int.from_bytes(image[at + 2 + n : at + 6 + n], "big")
        at += 6 + n
        if not safe_name(name) or at + size > len(image):
            raise UpdateError("bad_image")
        out[name] = image[at : at + size]
        at += size
    if not out:
        raise UpdateError("bad_image")
    return out


def firmware_files(directory: Path) -> dict[str, bytes]:
    """What an update replaces: gtx/ and lib/ of a firmware tree (.py or mpy-cross's
    .mpy). main.py and bootslot.py are the first stage and stay as flashed."""
    files = {}
    for sub in ("gtx", "lib"):
        for path in sorted((directory / sub).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".mpy"):
                files[path.relative_to(directory).as_posix()] = path.read_bytes()
    if not any(name.startswith("gtx/") for name in files):
        raise UpdateError("bad_image")
    return files


def build(image: bytes, version: int, release_key: SigningKey) -> bytes:
    """Sign an image as version `version` (1..2^32-1)."""
    if not 0 < version < 2**32:
        raise UpdateError("invalid_version")
    if len(image) > MAX_IMAGE:
        raise UpdateError("bad_size")
    manifest = (
        MAGIC
        + version.to_bytes(4, "big")
        + len(image).to_bytes(4, "big")
        + hashlib.sha256(image).digest()
    )
    return manifest + release_key.sign(UPDATE_DOMAIN + manifest).signature + image


def check(update: bytes, release_key: VerifyKey, running_version: int = 0) -> Update:
    """What the meter checks, in its order: magic and length, version above the running
    one, signature, size, hash, the image's file names."""
    if len(update) < HEAD or update[:4] != MAGIC:
        raise UpdateError("malformed_update")
    manifest, signature, image = update[:MANIFEST_SIZE], update[MANIFEST_SIZE:HEAD], update[HEAD:]
    version = int.from_bytes(manifest[4:8], "big")
    if version <= running_version:
        raise UpdateError("downgrade")
    try:
        release_key.verify(UPDATE_DOMAIN + manifest, signature)
    except BadSignatureError:
        raise UpdateError("bad_signature") from None
    size = int.from_bytes(manifest[8:12], "big")
    if size > MAX_IMAGE or size != len(image):
        raise UpdateError("bad_size")
    if hashlib.sha256(image).digest() != manifest[12:44]:
        raise UpdateError("bad_hash")
    unpack(image)
    return Update(version, manifest[12:44], size)


def known(directory: Path, release_key: VerifyKey) -> dict[str, int]:
    """SHA-256 hex -> version of every valid update file in `directory` (`*.gtxu`)."""
    found = {}
    for path in sorted(directory.glob("*.gtxu")):
        try:
            update = check(path.read_bytes(), release_key)
        except UpdateError:
            continue
        found[update.sha256.hex()] = update.version
    return found


# -- test vectors: docs/vectors/update-v1.json ---------------------------------------------

# RFC 8032 section 7.1 TEST 2 secret key as the (test) release key; the meter's key is TEST 1.
VECTOR_RELEASE_SEED = bytes.fromhex(
    "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"
)
VECTOR_METER_SEED = bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
)


def vectors() -> dict[str, Any]:
    """Deterministic vectors both the hub (this module) and the meter (gtx/ota.py,
    gtx/reading.py) pass in tests/test_ota.py."""
    key = SigningKey(VECTOR_RELEASE_SEED)
    files = {"gtx/__init__.py": b"", "gtx/app.py": b"print('v2')\n"}
    image = pack(files)
    good = build(image, 2, key)
    other = SigningKey(bytes(32))
    manifest = good[:MANIFEST_SIZE]
    lying_size = manifest[:8] + (len(image) + 1).to_bytes(4, "big") + manifest[12:]
    bad_name = (9).to_bytes(2, "big") + b"../app.py" + (0).to_bytes(4, "big")
    refused = [
        ("image changed", good[:-1] + b"\x00", 1, "bad_hash"),
        ("signed by another key", build(image, 2, other), 1, "bad_signature"),
        ("version relabelled", good[:7] + b"\x09" + good[8:], 1, "bad_signature"),
        ("same version as running", good, 2, "downgrade"),
        ("older than running", good, 3, "downgrade"),
        ("too short", good[:107], 0, "malformed_update"),
        ("no magic", b"GTXV" + good[4:], 0, "malformed_update"),
        (
            "size field lies",
            lying_size + key.sign(UPDATE_DOMAIN + lying_size).signature + image,
            1,
            "bad_size",
        ),
        ("file outside the slot", build(bad_name, 2, key), 1, "bad_image"),
    ]
    status = Status(
        "mtr-0001", 1_767_225_600, 3_600, 60, 3, 0, "", 2, hashlib.sha256(image).digest()
    )
    cable = Status("mtr-0001", 1_767_225_600, 3_600, 60, 3, 0, "", 0, b"")
    return {
        "format": "gridtokenx update v1 test vectors (see docs/wire-format.md section 7)",
        "update_domain_hex": UPDATE_DOMAIN.hex(),
        "offer_topic": OFFER_TOPIC,
        "release_key": {
            "seed_hex": VECTOR_RELEASE_SEED.hex(),
            "public_key_hex": bytes(key.verify_key).hex(),
        },
        "update": {
            "version": 2,
            "files": {name: data.hex() for name, data in files.items()},
            "image_hex": image.hex(),
            "sha256_hex": hashlib.sha256(image).hexdigest(),
            "update_hex": good.hex(),
            "offer_hex": good[:HEAD].hex(),
            "path": f"/firmware/{hashlib.sha256(image).hexdigest()}.gtxu",
        },
        "refused": [
            {"what": what, "update_hex": raw.hex(), "running_version": running, "reason": why}
            for what, raw, running, why in refused
        ],
        "statuses": [
            {
                "fields": {
                    "meter_id": s.meter_id,
                    "ts": s.ts,
                    "uptime_s": s.uptime_s,
                    "last_seq": s.last_seq,
                    "buffered": s.buffered,
                    "dropped": s.dropped,
                    "fault": s.fault,
                    "image_version": s.image_version,
                    "image_sha256_hex": (s.image_sha256 or b"").hex(),
                },
                "cbor_hex": encode_status(s).hex(),
                "envelope_hex": seal(
                    encode_status(s), STATUS_DOMAIN, SigningKey(VECTOR_METER_SEED)
                ).hex(),
            }
            for s in (status, cable)
        ],
    }
