"""Firmware update files, signed with the release key (docs/wire-format.md, "Firmware
updates"): what the hub serves and the meters' gtx/ota.py checks before installing.

An update is manifest (44 bytes: b"GTXU", version u32 BE, image size u32 BE, SHA-256 of
the image) + Ed25519 signature of UPDATE_DOMAIN + manifest (64 bytes) + the image.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

UPDATE_DOMAIN = b"gridtokenx/update/v1\x00"
MAGIC = b"GTXU"
MANIFEST_SIZE = 44
SIGNATURE_SIZE = 64


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


def build(image: bytes, version: int, release_key: SigningKey) -> bytes:
    """Sign an image as version `version` (1..2^32-1)."""
    if not 0 < version < 2**32:
        raise UpdateError("invalid_version")
    manifest = (
        MAGIC
        + version.to_bytes(4, "big")
        + len(image).to_bytes(4, "big")
        + hashlib.sha256(image).digest()
    )
    return manifest + release_key.sign(UPDATE_DOMAIN + manifest).signature + image


def check(update: bytes, release_key: VerifyKey) -> Update:
    """What the meter checks, minus the version rule (that needs the meter's own version)."""
    head = MANIFEST_SIZE + SIGNATURE_SIZE
    if len(update) < head or update[:4] != MAGIC:
        raise UpdateError("malformed_update")
    manifest, signature, image = update[:MANIFEST_SIZE], update[MANIFEST_SIZE:head], update[head:]
    try:
        release_key.verify(UPDATE_DOMAIN + manifest, signature)
    except BadSignatureError:
        raise UpdateError("bad_signature") from None
    size = int.from_bytes(manifest[8:12], "big")
    if size != len(image):
        raise UpdateError("bad_size")
    if hashlib.sha256(image).digest() != manifest[12:44]:
        raise UpdateError("bad_hash")
    return Update(int.from_bytes(manifest[4:8], "big"), manifest[12:44], size)


def known(directory: Path, release_key: VerifyKey) -> dict[str, int]:
    """SHA-256 hex -> version of every valid update file in `directory` (`*.gtxu`): the
    images a meter may report running; any other hash is unknown."""
    found = {}
    for path in sorted(directory.glob("*.gtxu")):
        try:
            update = check(path.read_bytes(), release_key)
        except UpdateError:
            continue
        found[update.sha256.hex()] = update.version
    return found
