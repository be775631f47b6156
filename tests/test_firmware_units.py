"""Firmware building blocks, run on the MicroPython unix port and checked against the
CPython libraries (hashlib, PyNaCl, cbor2) and the RFC test vectors."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from services import run_micropython

# RFC 8032 section 7.1: (secret key, public key, message, signature)
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]


def test_ed25519_rfc8032_vectors() -> None:
    code = f"""
from gtx import ed25519
for sk, pk, msg, sig in {RFC8032!r}:
    seed = bytes.fromhex(sk)
    assert ed25519.public_key(seed).hex() == pk, sk
    assert ed25519.sign(seed, bytes.fromhex(msg)).hex() == sig, sk
print("ok")
"""
    assert run_micropython(code).strip() == "ok"


def test_ed25519_matches_pynacl_on_two_thousand_random_messages(tmp_path: Path) -> None:
    rng = random.Random(8032)
    cases = []
    for _ in range(2000):
        seed = bytes(rng.getrandbits(8) for _ in range(32))
        message = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
        cases.append((seed.hex(), message.hex()))
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    code = f"""
import json
from gtx import ed25519
for seed, msg in json.load(open({str(path)!r})):
    s = bytes.fromhex(seed)
    pk = ed25519.public_key(s)
    print(pk.hex(), ed25519.sign(s, bytes.fromhex(msg), pk).hex())
"""
    results = [line.split() for line in run_micropython(code).splitlines()]
    for (seed, message), (public, signature) in zip(cases, results, strict=True):
        key = SigningKey(bytes.fromhex(seed))
        assert public == bytes(key.verify_key).hex()
        assert signature == key.sign(bytes.fromhex(message)).signature.hex()


def test_sha512_matches_hashlib() -> None:
    lengths = [0, 1, 55, 111, 112, 127, 128, 129, 239, 240, 255, 256, 1000]
    code = f"""
from gtx.sha512 import sha512
print(" ".join(sha512(bytes((i * 7) & 255 for i in range(n))).hex() for n in {lengths!r}))
"""
    got = run_micropython(code).split()
    for n, digest in zip(lengths, got, strict=True):
        assert digest == hashlib.sha512(bytes((i * 7) & 255 for i in range(n))).hexdigest()


cbor_values = st.recursive(
    st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.integers(-30, 300) | st.text(max_size=4), children, max_size=5)
    ),
    max_leaves=12,
)


@settings(max_examples=1, deadline=None)
@given(st.lists(cbor_values, min_size=200, max_size=200))
def test_cbor_encoder_matches_cbor2_canonical(values: list[object]) -> None:
    code = """
from gtx import cbor
def back(v):
    if isinstance(v, dict):
        return bytes.fromhex(v["$b"])
    if isinstance(v, list):
        if v and v[0] == "$map":
            return {back(k): back(x) for k, x in v[1]}
        return [back(x) for x in v]
    return v
for value in DATA:
    print(cbor.encode(back(value)).hex())
"""

    def tag(value: object) -> object:
        if isinstance(value, bytes):
            return {"$b": value.hex()}
        if isinstance(value, dict):
            return ["$map", [[tag(k), tag(v)] for k, v in value.items()]]
        if isinstance(value, list):
            return [tag(v) for v in value]
        return value

    data = json.dumps([tag(v) for v in values])
    got = run_micropython(f"DATA = __import__('json').loads({data!r})\n" + code).split()
    for value, encoded in zip(values, got, strict=True):
        assert encoded == cbor2.dumps(value, canonical=True).hex()


def test_modbus_crc_and_request_frame() -> None:
    # The frame a PZEM-004T expects for "read 10 input registers from 0" (CRC 0x0D70).
    out = run_micropython(
        "from gtx import modbus; print(modbus.frame(1, 4, 0, 10).hex(), modbus.crc16(b'123456789'))"
    ).split()
    assert out == ["01040000000a700d", str(0x4B37)]


def test_ring_keeps_order_drops_oldest_when_full_and_skips_torn_slots(tmp_path: Path) -> None:
    code = f"""
from gtx.ring import Ring, SLOT, HEADER
d = {str(tmp_path)!r}
r = Ring(d, 4)
for i in range(6):
    r.append(b"reading-%d" % i, 10 + i)
print(len(r), r.dropped, r.peek())
r.pop()
r = Ring(d, 4)  # a reboot: the ring is read back from flash
print(len(r), r.peek())
f = open(d + "/ring.bin", "r+b"); f.seek((r.head % 4) * SLOT + HEADER + 2); f.write(b"X"); f.close()
print(r.peek(), r.dropped)
"""
    lines = run_micropython(code).splitlines()
    assert lines == ["4 2 (12, b'reading-2')", "3 (13, b'reading-3')", "(14, b'reading-4') 3"]


def test_ring_releases_only_what_the_ack_covers(tmp_path: Path) -> None:
    code = f"""
from gtx.ring import Ring
d = {str(tmp_path)!r}
r = Ring(d, 8)
for seq in (3, 4, 6, 7):  # seq 5 was skipped by a crash: a gap, not a hole in the ring
    r.append(b"r%d" % seq, seq)
print(r.release(2), len(r), r.peek())
print(r.release(5), len(r), r.peek())
r = Ring(d, 8)  # what was released stays released after a reboot
print(len(r), r.peek(), r.release(7), len(r), r.peek(), r.release(100))
"""
    assert run_micropython(code).splitlines() == [
        "0 4 (3, b'r3')",
        "2 2 (6, b'r6')",
        "2 (6, b'r6') 2 0 None 0",
    ]


def test_state_is_monotonic_and_counts_resets(tmp_path: Path) -> None:
    code = f"""
from gtx.store import MeterState
s = MeterState({str(tmp_path / "state.json")!r})
print(s.absorb(1000, 5), s.registers)
print(s.absorb(1010, 5), s.registers)
print(s.absorb(3, 5), s.registers)
print(s.absorb(13, 6), s.registers, s.next_seq(), s.next_seq())
s = MeterState({str(tmp_path / "state.json")!r})
print(s.seq, s.registers)
"""
    assert run_micropython(code).splitlines() == [
        " [1000, 5]",
        " [1010, 5]",
        "counter_reset [1010, 5]",
        " [1020, 6] 1 2",
        "2 [1020, 6]",
    ]


def test_clock_reports_time_not_set() -> None:
    out = run_micropython(
        "from gtx import clock; print(clock.stamp(0, 42), clock.stamp(1767225600, 42))"
    )
    assert out.strip() == "(42, 1) (1767225600, 0)"


def test_key_is_made_once_and_only_the_public_key_is_written_out(tmp_path: Path) -> None:
    code = f"""
from gtx import keys
a = keys.load_or_create({str(tmp_path)!r})
b = keys.load_or_create({str(tmp_path)!r})
print(a == b, keys.public_hex({str(tmp_path)!r}) == a[1].hex())
"""
    assert run_micropython(code).strip() == "True True"
    assert sorted(os.listdir(tmp_path)) == ["meter.key", "meter.pub"]
    seed = (tmp_path / "meter.key").read_bytes()
    assert (tmp_path / "meter.pub").read_text() == bytes(SigningKey(seed).verify_key).hex()
