# Ed25519 signing (RFC 8032, pure Ed25519) in plain MicroPython, on its big integers.
# Only what a meter needs: derive the public key, sign. Verification is the hub's job
# (PyNaCl). Verified against RFC 8032 section 7.1 and PyNaCl in the tests.
#
# Side channels: big-integer arithmetic does not run in constant time. A meter signs its
# own public readings, and the key stays in its flash; an attacker able to time
# signatures at the chip is out of scope (documented in hardware/README.md).
from gtx.sha512 import sha512

Point = tuple  # extended coordinates (X, Y, Z, T); a plain alias, no typing on devices

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
_D2 = 2 * 37095705934669439343138083508754565189542113879843219016388785533085940283555 % P
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960


def _double(p: Point) -> Point:
    a = p[0] * p[0] % P
    b = p[1] * p[1] % P
    c = 2 * p[2] * p[2] % P
    h = a + b
    s = p[0] + p[1]
    e = h - s * s % P
    g = a - b
    f = c + g
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _add(p: Point, q: Point) -> Point:
    """p + q for q in the table's form (y - x, y + x, 2d * x * y) with Z = 1: one
    multiplication fewer than a general addition, three numbers per entry instead of four."""
    a = (p[1] - p[0]) * q[0] % P
    b = (p[1] + p[0]) * q[1] % P
    c = p[3] * q[2] % P
    d = 2 * p[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _affine(p: Point) -> Point:
    """An extended point in _add's form for q."""
    zi = pow(p[2], P - 2, P)
    x, y = p[0] * zi % P, p[1] * zi % P
    return ((y - x) % P, (y + x) % P, _D2 * x * y % P)


_ZERO = (0, 1, 1, 0)
_B = (_BX, _BY, 1, _BX * _BY % P)  # B, then 2B, ... while the table is built
_TABLE = [(1, 1, 0), _affine(_B)]  # k * B for k = 0..15 (a 4-bit fixed window), _add's form
for _ in range(14):
    _B = _add(_B, _TABLE[1])
    _TABLE.append(_affine(_B))
del _B


def _base_mul(s: int) -> Point:
    """s * B: 64 windows of 4 doublings and one (always performed) table addition."""
    q = _ZERO
    for shift in range(252, -4, -4):
        q = _double(_double(_double(_double(q))))
        q = _add(q, _TABLE[(s >> shift) & 15])
    return q


def _encode(p: Point) -> bytes:
    zi = pow(p[2], P - 2, P)
    x = p[0] * zi % P
    y = p[1] * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _expand(seed: bytes) -> tuple[int, bytes]:
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed has 32 bytes")
    h = sha512(seed)
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def public_key(seed: bytes) -> bytes:
    """The 32-byte public key of a 32-byte secret seed."""
    a, _ = _expand(seed)
    return _encode(_base_mul(a))


def sign(seed: bytes, message: bytes, public: bytes | None = None) -> bytes:
    """The 64-byte signature of `message`; pass `public` to skip recomputing it."""
    a, prefix = _expand(seed)
    if public is None:
        public = _encode(_base_mul(a))
    r = int.from_bytes(sha512(prefix + message), "little") % L
    big_r = _encode(_base_mul(r))
    k = int.from_bytes(sha512(big_r + public + message), "little") % L
    s = (r + k * a) % L
    return big_r + s.to_bytes(32, "little")
