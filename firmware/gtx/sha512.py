# SHA-512 (FIPS 180-4) in plain MicroPython: the ports' hashlib has no SHA-512 and
# Ed25519 needs it. Verified against hashlib.sha512 in tests/test_firmware_crypto.py.
try:
    import hashlib

    _native = hashlib.sha512  # type: ignore[attr-defined]
except (ImportError, AttributeError):
    _native = None

_M = 0xFFFFFFFFFFFFFFFF
# The 80 round constants as one bytes object: 640 bytes instead of 80 big integers
_K = bytes.fromhex(
    "428a2f98d728ae227137449123ef65cdb5c0fbcfec4d3b2fe9b5dba58189dbbc3956c25bf348b53859f111f1"
    "b605d019923f82a4af194f9bab1c5ed5da6d8118d807aa98a303024212835b0145706fbe243185be4ee4b28c"
    "550c7dc3d5ffb4e272be5d74f27b896f80deb1fe3b1696b19bdc06a725c71235c19bf174cf692694e49b69c1"
    "9ef14ad2efbe4786384f25e30fc19dc68b8cd5b5240ca1cc77ac9c652de92c6f592b02754a7484aa6ea6e483"
    "5cb0a9dcbd41fbd476f988da831153b5983e5152ee66dfaba831c66d2db43210b00327c898fb213fbf597fc7"
    "beef0ee4c6e00bf33da88fc2d5a79147930aa72506ca6351e003826f142929670a0e6e7027b70a8546d22ffc"
    "2e1b21385c26c9264d2c6dfc5ac42aed53380d139d95b3df650a73548baf63de766a0abb3c77b2a881c2c92e"
    "47edaee692722c851482353ba2bfe8a14cf10364a81a664bbc423001c24b8b70d0f89791c76c51a30654be30"
    "d192e819d6ef5218d69906245565a910f40e35855771202a106aa07032bbd1b819a4c116b8d2d0c81e376c08"
    "5141ab532748774cdf8eeb9934b0bcb5e19b48a8391c0cb3c5c95a634ed8aa4ae3418acb5b9cca4f7763e373"
    "682e6ff3d6b2b8a3748f82ee5defb2fc78a5636f43172f6084c87814a1f0ab728cc702081a6439ec90befffa"
    "23631e28a4506cebde82bde9bef9a3f7b2c67915c67178f2e372532bca273eceea26619cd186b8c721c0c207"
    "eada7dd6cde0eb1ef57d4f7fee6ed17806f067aa72176fba0a637dc5a2c898a6113f9804bef90dae1b710b35"
    "131c471b28db77f523047d8432caab7b40c724933c9ebe0a15c9bebc431d67c49c100d4c4cc5d4becb3e42b6"
    "597f299cfc657e2a5fcb6fab3ad6faec6c44198c4a475817"
)
_H0 = (
    0x6A09E667F3BCC908,
    0xBB67AE8584CAA73B,
    0x3C6EF372FE94F82B,
    0xA54FF53A5F1D36F1,
    0x510E527FADE682D1,
    0x9B05688C2B3E6C1F,
    0x1F83D9ABFB41BD6B,
    0x5BE0CD19137E2179,
)


def _compress(h: list[int], block: "bytes | bytearray | memoryview") -> list[int]:
    # The message schedule lives in a rolling window of 16 words instead of 80, to keep
    # the heap small on a meter (64-bit words are big integers there).
    w = [int.from_bytes(block[i : i + 8], "big") for i in range(0, 128, 8)]
    a, b, c, d, e, f, g, hh = h
    for t in range(80):
        if t >= 16:
            x, y = w[(t - 15) & 15], w[(t - 2) & 15]
            s0 = ((x >> 1) | (x << 63)) ^ ((x >> 8) | (x << 56)) ^ (x >> 7)
            s1 = ((y >> 19) | (y << 45)) ^ ((y >> 61) | (y << 3)) ^ (y >> 6)
            w[t & 15] = (w[t & 15] + s0 + w[(t - 7) & 15] + s1) & _M
        s1 = ((e >> 14) | (e << 50)) ^ ((e >> 18) | (e << 46)) ^ ((e >> 41) | (e << 23))
        ch = (e & f) ^ (~e & g)
        t1 = (hh + (s1 & _M) + ch + int.from_bytes(_K[8 * t : 8 * t + 8], "big") + w[t & 15]) & _M
        s0 = ((a >> 28) | (a << 36)) ^ ((a >> 34) | (a << 30)) ^ ((a >> 39) | (a << 25))
        t2 = ((s0 & _M) + ((a & b) ^ (a & c) ^ (b & c))) & _M
        hh, g, f, e, d, c, b, a = g, f, e, (d + t1) & _M, c, b, a, (t1 + t2) & _M
    return [(x + y) & _M for x, y in zip(h, (a, b, c, d, e, f, g, hh))]


def sha512(data: bytes) -> bytes:
    """SHA-512 digest (64 bytes) of `data` (bytes-like)."""
    if _native is not None:
        return _native(data).digest()
    n = len(data)
    h = list(_H0)
    full = n - n % 128
    view = memoryview(data)
    for i in range(0, full, 128):
        h = _compress(h, view[i : i + 128])
    last = bytearray(128)  # the padded last block(s), filled in place
    rest = n - full
    last[:rest] = view[full:]
    last[rest] = 0x80
    for i in range(rest + 1, 128):
        last[i] = 0
    if rest >= 112:  # no room for the length: it goes in one more block
        h = _compress(h, last)
        for i in range(112):
            last[i] = 0
    last[112:] = (n * 8).to_bytes(16, "big")
    h = _compress(h, last)
    return b"".join(x.to_bytes(8, "big") for x in h)
