# Signed over-the-air updates. An image is installed only when the release key signed its
# manifest (Ed25519 over UPDATE_DOMAIN + manifest), its SHA-256 and size match, and its
# version is above the running one (no downgrade). The running image stays in its slot:
# the new one goes to the other slot and runs on trial from the next boot (bootslot.py
# rolls it back if it does not confirm a good start). Format: docs/wire-format.md,
# section 7 "Firmware updates".
#
# gtx/app.py imports this module only when the hub offers a newer version, so none of
# it weighs on the reading cycle's heap. Slots are directories <data>/ota/a and
# <data>/ota/b holding the image's files (gtx/, lib/), which main.py puts first on the
# import path; on an ESP32 with secure boot they would be the app partitions
# (esp32.Partition) and the bootloader's own rollback.
import hashlib
import os
import socket

import bootslot
from micropython import const

from gtx import ed25519, store
from gtx.sha512 import sha512

TYPE_CHECKING = const(0)  # mypy reads the block below; MicroPython compiles it away
if TYPE_CHECKING:
    from gtx.app import Meter


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

HEAD = MANIFEST_SIZE + SIGNATURE_SIZE  # the offer is exactly these 108 bytes


def parse(update: bytes) -> tuple:
    """(version, size, sha256, manifest, signature) of an update's first 108 bytes."""
    if len(update) < HEAD or update[:4] != MAGIC:
        raise UpdateRefused("malformed_update")
    manifest = update[:MANIFEST_SIZE]
    version = int.from_bytes(manifest[4:8], "big")
    size = int.from_bytes(manifest[8:12], "big")
    return version, size, manifest[12:44], manifest, update[MANIFEST_SIZE:HEAD]


def check_head(head: bytes, release_key: bytes, running_version: int) -> tuple:
    """(version, size, sha256) of an offer (an update's head) this meter may take: the
    version first (an offer of what runs is refused without an Ed25519 verification)."""
    version, size, digest, manifest, signature = parse(head)
    if version <= running_version:
        raise UpdateRefused("downgrade")
    if not verify(release_key, UPDATE_DOMAIN + manifest, signature):
        raise UpdateRefused("bad_signature")
    if size > MAX_IMAGE:
        raise UpdateRefused("bad_size")
    return version, size, digest


def check(update: bytes, release_key: bytes, running_version: int) -> tuple:
    """(version, sha256, image) of a whole update this meter may install."""
    version, size, digest = check_head(update[:HEAD], release_key, running_version)
    image = update[HEAD:]
    if size != len(image):
        raise UpdateRefused("bad_size")
    if hashlib.sha256(image).digest() != digest:
        raise UpdateRefused("bad_hash")
    return version, digest, image


def _safe(name: str) -> bool:
    """A relative path of plain names: nothing outside the slot can be written."""
    if not name or name[0] == "/" or "\\" in name:
        return False
    for part in name.split("/"):
        if part in ("", ".", "..") or not (part[0].isalpha() or part[0] == "_"):
            return False
    return True


def _unpack(f: object, size: int, root: str) -> None:
    """Write an image's files under `root`. The image is entries of u16 BE name length,
    the name (a relative path, UTF-8), u32 BE size, the data; a bad name or a torn entry
    refuses it (what was written stays in the free slot, which runs nothing)."""
    left = size
    count = 0
    while left:
        n = int.from_bytes(f.read(2), "big")  # type: ignore[attr-defined]
        name = f.read(n).decode()  # type: ignore[attr-defined]
        length = int.from_bytes(f.read(4), "big")  # type: ignore[attr-defined]
        left -= 6 + n + length
        if not _safe(name) or left < 0:
            raise UpdateRefused("bad_image")
        where = root + "/" + name
        store.makedirs(where[: where.rfind("/")])
        with open(where, "wb") as out:
            while length:
                chunk = f.read(min(length, 1024))  # type: ignore[attr-defined]
                out.write(chunk)
                length -= len(chunk)
        count += 1
    if not count:
        raise UpdateRefused("bad_image")


def _clear(path: str) -> None:
    try:
        entries = os.listdir(path)
    except OSError:
        return
    for name in entries:
        child = path + "/" + name
        if os.stat(child)[0] & 0x4000:  # a directory
            _clear(child)
            os.rmdir(child)
        else:
            os.remove(child)


class Slots:
    def __init__(self, data_dir: str) -> None:
        self.data = data_dir
        self.dir = data_dir + "/ota"
        store.makedirs(self.dir)

    def state(self) -> dict:
        return bootslot.state(self.data)

    def running(self) -> tuple:
        return bootslot.running(self.data)

    def boot(self) -> str | None:
        return bootslot.boot(self.data)

    def confirm(self) -> None:
        bootslot.confirm(self.data)

    def install(self, update: bytes, release_key: bytes) -> int:
        """Check a whole update and put it in the free slot, on trial from the next boot."""
        version, digest, image = check(update, release_key, self.running()[0])
        path = self.dir + "/download.bin"
        store.write_atomic(path, image)
        return self._put(version, digest, path, len(image))

    def take(self, offer: bytes, release_key: bytes, url: str, feed: object = None) -> int:
        """Fetch the update an offer names from the hub (HTTP GET `url`), hashing it as it
        streams to flash, and install it: 1 KB in memory at a time."""
        version, size, digest = check_head(offer, release_key, self.running()[0])
        if self.state().get("rolled_back", {}).get("sha256") == digest.hex():
            raise UpdateRefused("rolled_back")  # it failed to start here once: not again
        path = self.dir + "/download.bin"
        try:
            got = _download(url, offer, size, path, feed)
            if got[0] != size:
                raise UpdateRefused("bad_size")
            if got[1] != digest:
                raise UpdateRefused("bad_hash")
        except UpdateRefused:
            if store.exists(path):
                os.remove(path)
            raise
        return self._put(version, digest, path, size)

    def _put(self, version: int, digest: bytes, path: str, size: int) -> int:
        s = self.state()
        free = "b" if s["running"] == "a" else "a"
        root = self.dir + "/" + free
        _clear(root)
        try:
            with open(path, "rb") as f:
                _unpack(f, size, root)
        except ValueError:  # a name that is not UTF-8
            raise UpdateRefused("bad_image") from None
        finally:
            os.remove(path)
        s["trial"] = {"slot": free, "version": version, "sha256": digest.hex()}
        s["tries"] = 0
        bootslot.save(self.data, s)
        return version


def _download(url: str, offer: bytes, size: int, path: str, feed: object) -> tuple:
    """(bytes got, SHA-256) of the image in the body of `url` (at most `size` bytes read),
    written to `path`; the body must start with the offer's 108 bytes (the hub serves the
    update file as it was signed)."""
    if not url.startswith("http://"):
        raise UpdateRefused("bad_url")
    host, _, rest = url[7:].partition("/")
    name, _, port = host.partition(":")
    s = socket.socket()
    try:
        s.settimeout(10)
        s.connect(socket.getaddrinfo(name, int(port or 80))[0][-1])
        s.send(("GET /" + rest + " HTTP/1.0\r\nHost: " + host + "\r\n\r\n").encode())
        f = s  # MicroPython's sockets are streams (makefile() is the socket itself)
        line = f.readline()
        if line[9:12] != b"200":
            raise UpdateRefused("fetch_failed")
        while f.readline() not in (b"\r\n", b"\n", b""):
            pass
        if f.read(HEAD) != offer:
            raise UpdateRefused("not_offered")
        h = hashlib.sha256()
        n = 0
        with open(path, "wb") as out:
            while n < size:
                chunk = f.read(min(1024, size - n))
                if not chunk:
                    break
                h.update(chunk)
                out.write(chunk)
                n += len(chunk)
                if feed is not None:
                    feed()  # type: ignore[operator]
        return n, h.digest()
    except OSError:
        raise UpdateRefused("fetch_failed") from None
    finally:
        s.close()


# -- in the meter's loop (gtx/app.py calls this only when there is something to do) ------


def step(meter: object, wdt: object) -> None:
    """Confirm a trial image that delivered its first reading, or take the hub's offer of
    a newer image: fetch, check, install, restart into it (on trial)."""
    m: "Meter" = meter  # type: ignore[assignment]
    cfg = m.cfg
    data = cfg["data_dir"]
    if m.image[2] and m.readings and not len(m.ring):
        bootslot.confirm(data)
        m.image = bootslot.image(data)
        print("image", m.image[0], "confirmed")
    offer = m.uplink.offer
    if offer is None:
        return
    m.uplink.offer = None
    if "release_key" not in cfg:
        print("update offered, but the config has no release_key: ignored")
        return
    url = cfg.get("update_url") or "http://" + cfg["broker"]["host"] + ":8080"
    try:
        key = bytes.fromhex(cfg["release_key"])
    except ValueError:
        key = b""  # verifies nothing: refused as bad_signature
    try:
        version = Slots(data).take(
            offer,
            key,
            url + "/firmware/" + offer[12:44].hex() + ".gtxu",
            wdt.feed,  # type: ignore[attr-defined]
        )
    except UpdateRefused as exc:
        print("update refused:", exc.reason)
        return
    except (OSError, MemoryError) as exc:  # flash full, out of memory: the running
        print("update failed:", exc)  # image goes on, the next offer tries again
        return
    print("image", version, "installed: restarting into it")
    m.uplink.close()
    bootslot.restart()
