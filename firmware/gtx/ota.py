# Signed over-the-air updates. An image is installed only when the release key signed its
# manifest (Ed25519 over UPDATE_DOMAIN + manifest), its SHA-256 and size match, and its
# version is above the running one (no downgrade). The running image stays in its slot:
# the new one runs on trial, and one that has not confirmed a good start by its second
# boot is rolled back. Format: docs/wire-format.md, section "Firmware updates".
#
# Two slots, a and b, are files in <data>/ota/ with their state in <data>/ota/state.json
# (written atomically: a power cut leaves the old state or the new). Not wired into
# main.py yet: nothing runs the slot boot() names or calls confirm(); on an ESP32 the
# slots would be the app partitions (esp32.Partition), not files.
import hashlib

from gtx import ed25519, store
from gtx.sha512 import sha512

UPDATE_DOMAIN = b"gridtokenx/update/v1\x00"
MAGIC = b"GTXU"
MANIFEST_SIZE = 44  # magic, version (u32 BE), size (u32 BE), SHA-256 of the image
SIGNATURE_SIZE = 64
MAX_IMAGE = 4 * 1024 * 1024


class UpdateRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- Ed25519 verification (RFC 8032 5.1.7, cofactorless like libsodium) ----------------

_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
_SQRT_M1 = pow(2, (ed25519.P - 1) // 4, ed25519.P)


def _decode(b: bytes) -> tuple | None:
    p = ed25519.P
    if len(b) != 32:
        return None
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= p:
        return None
    u = (y * y - 1) % p
    v = (_D * y * y + 1) % p
    x = u * pow(v, 3, p) * pow(u * pow(v, 7, p), (p - 5) // 8, p) % p
    if (v * x * x - u) % p:
        x = x * _SQRT_M1 % p
        if (v * x * x - u) % p:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = p - x
    return (x, y, 1, x * y % p)


def _add(p: tuple, q: tuple) -> tuple:
    """p + q for any two extended points (X, Y, Z, T): ed25519._add takes q only in its
    signing table's form, which a public key is not."""
    m = ed25519.P
    a = (p[1] - p[0]) * (q[1] - q[0]) % m
    b = (p[1] + p[0]) * (q[1] + q[0]) % m
    c = p[3] * ed25519._D2 * q[3] % m
    d = 2 * p[2] * q[2] % m
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % m, g * h % m, f * g % m, e * h % m)


def _mul(k: int, q: tuple) -> tuple:
    r = ed25519._ZERO
    while k:
        if k & 1:
            r = _add(r, q)
        q = ed25519._double(q)
        k >>= 1
    return r


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is the Ed25519 signature of `message` by `public`."""
    if len(signature) != 64:
        return False
    a = _decode(public)
    r = _decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= ed25519.L:
        return False
    k = int.from_bytes(sha512(signature[:32] + public + message), "little") % ed25519.L
    p = ed25519.P
    minus_ka = _mul(k, (p - a[0], a[1], a[2], p - a[3]))  # -A = (-x, y)
    return ed25519._encode(_add(ed25519._base_mul(s), minus_ka)) == signature[:32]


# -- the update --------------------------------------------------------------------------


def parse(update: bytes) -> tuple:
    """(version, size, sha256, manifest, signature, image) of an update file."""
    head = MANIFEST_SIZE + SIGNATURE_SIZE
    if len(update) < head or update[:4] != MAGIC:
        raise UpdateRefused("malformed_update")
    manifest = update[:MANIFEST_SIZE]
    version = int.from_bytes(manifest[4:8], "big")
    size = int.from_bytes(manifest[8:12], "big")
    return version, size, manifest[12:44], manifest, update[MANIFEST_SIZE:head], update[head:]


def check(update: bytes, release_key: bytes, running_version: int) -> tuple:
    """(version, sha256, image) of an update this meter may install, or UpdateRefused."""
    version, size, digest, manifest, signature, image = parse(update)
    if not verify(release_key, UPDATE_DOMAIN + manifest, signature):
        raise UpdateRefused("bad_signature")
    if size != len(image) or size > MAX_IMAGE:
        raise UpdateRefused("bad_size")
    if hashlib.sha256(image).digest() != digest:
        raise UpdateRefused("bad_hash")
    if version <= running_version:
        raise UpdateRefused("downgrade")
    return version, digest, image


class Slots:
    def __init__(self, data_dir: str) -> None:
        self.dir = data_dir + "/ota"
        store.makedirs(self.dir)
        self.state_path = self.dir + "/state.json"

    def state(self) -> dict:
        return store.load_json(
            self.state_path,
            {"running": None, "version": 0, "sha256": "", "trial": None, "tries": 0},
        )

    def _save(self, state: dict) -> None:
        store.save_json(self.state_path, state)

    def running(self) -> tuple:
        """(version, SHA-256 hex) of the image that runs now: what the status reports."""
        s = self.state()
        if s["trial"] is not None:
            return s["trial"]["version"], s["trial"]["sha256"]
        return s["version"], s["sha256"]

    def install(self, update: bytes, release_key: bytes) -> int:
        """Check an update and put it in the free slot, to run on trial from the next boot."""
        s = self.state()
        version, digest, image = check(update, release_key, self.running()[0])
        free = "b" if s["running"] == "a" else "a"
        store.write_atomic(self.dir + "/" + free + ".bin", image)
        s["trial"] = {"slot": free, "version": version, "sha256": digest.hex(), "booted": False}
        s["tries"] = 0
        self._save(s)
        return version

    def boot(self) -> str | None:
        """At start: the slot to run. A trial image gets one boot to confirm; if it booted
        before and did not confirm, it failed to start and the previous image runs again."""
        s = self.state()
        trial = s["trial"]
        if trial is None:
            return s["running"]
        if s["tries"] >= 1:
            s["trial"] = None
            s["rolled_back"] = {"version": trial["version"], "sha256": trial["sha256"]}
            self._save(s)
            return s["running"]
        s["tries"] = 1
        self._save(s)
        return trial["slot"]

    def confirm(self) -> None:
        """The trial image started well: it becomes the running one, the old one is kept."""
        s = self.state()
        trial = s["trial"]
        if trial is None:
            return
        s["previous"] = {"slot": s["running"], "version": s["version"], "sha256": s["sha256"]}
        s["running"], s["version"], s["sha256"] = trial["slot"], trial["version"], trial["sha256"]
        s["trial"] = None
        s["tries"] = 0
        self._save(s)

    def image(self, slot: str) -> bytes:
        with open(self.dir + "/" + slot + ".bin", "rb") as f:
            return f.read()
