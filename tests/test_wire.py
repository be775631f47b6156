"""Wire format: the checked-in vectors, strict decoding, signatures, Merkle proofs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey, VerifyKey

from gridtokenx.wire import batch, envelope, merkle, topics
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import READING_DOMAIN, Reading, decode, encode, signed_bytes
from gridtokenx.wire.status import STATUS_DOMAIN, decode_status
from gridtokenx.wire.vectors import generate

VECTORS = Path(__file__).resolve().parents[1] / "docs" / "vectors" / "wire-v1.json"


@pytest.fixture(scope="module")
def vectors() -> dict:  # type: ignore[type-arg]
    return json.loads(VECTORS.read_text())


def test_checked_in_vectors_match_the_generator(vectors: dict) -> None:  # type: ignore[type-arg]
    assert vectors == json.loads(json.dumps(generate())), "run: gridtokenx wire vectors --write"


def test_reading_vectors_decode_verify_and_reencode(vectors: dict) -> None:  # type: ignore[type-arg]
    public = bytes.fromhex(vectors["key"]["public_key_hex"])
    assert bytes(SigningKey(bytes.fromhex(vectors["key"]["seed_hex"])).verify_key) == public
    for v in vectors["readings"]:
        raw = bytes.fromhex(v["cbor_hex"])
        reading = decode(raw)
        assert reading == Reading(**v["fields"])
        assert encode(reading) == raw
        # cbor2 (independently of our strict path) sees the same integer-keyed map
        plain = cbor2.loads(raw)
        assert plain[0] == 1 and plain[1] == v["fields"]["meter_id"]
        assert signed_bytes(raw).hex() == v["signed_bytes_hex"]
        message, signature = envelope.unwrap(bytes.fromhex(v["envelope_hex"]))
        assert message == raw and signature.hex() == v["signature_hex"]
        VerifyKey(public).verify(signed_bytes(raw), signature)  # PyNaCl directly
        envelope.verify(message, signature, READING_DOMAIN, public)


def test_status_vector(vectors: dict) -> None:  # type: ignore[type-arg]
    public = bytes.fromhex(vectors["key"]["public_key_hex"])
    message, signature = envelope.unwrap(bytes.fromhex(vectors["status"]["envelope_hex"]))
    envelope.verify(message, signature, STATUS_DOMAIN, public)
    assert decode_status(message).meter_id == "mtr-0001"
    # a status signature is not a reading signature (domain separation)
    with pytest.raises(WireError) as err:
        envelope.verify(message, signature, READING_DOMAIN, public)
    assert err.value.reason == "bad_signature"


def test_invalid_vectors_are_refused_with_their_reason(vectors: dict) -> None:  # type: ignore[type-arg]
    for v in vectors["invalid"]:
        with pytest.raises(WireError) as err:
            decode(bytes.fromhex(v["hex"]))
        assert err.value.reason == v["reason"], v


def test_tampered_reading_fails_signature(vectors: dict) -> None:  # type: ignore[type-arg]
    v = vectors["readings"][0]
    public = bytes.fromhex(vectors["key"]["public_key_hex"])
    message, signature = envelope.unwrap(bytes.fromhex(v["envelope_hex"]))
    forged = encode(replace(decode(message), export_wh=10**9))
    with pytest.raises(WireError) as err:
        envelope.verify(forged, signature, READING_DOMAIN, public)
    assert err.value.reason == "bad_signature"


@pytest.mark.parametrize(
    "payload,reason",
    [
        (b"\xff", "malformed_cbor"),
        (cbor2.dumps([b"x"]), "malformed_envelope"),
        (cbor2.dumps([b"x", b"short"]), "malformed_envelope"),
        (cbor2.dumps({"a": 1}), "malformed_envelope"),
    ],
)
def test_malformed_envelopes(payload: bytes, reason: str) -> None:
    with pytest.raises(WireError) as err:
        envelope.unwrap(payload)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    "change",
    [
        {"meter_id": "a/b"},
        {"meter_id": ""},
        {"seq": -1},
        {"pf_milli": 1001},
        {"import_wh": 1 << 63},
        {"voltage_dv": True},
    ],
)
def test_out_of_range_fields_refused(change: dict) -> None:  # type: ignore[type-arg]
    base = Reading("m1", 1, 1, 0, 0, 60, 2300, 0, 1000, 5000)
    with pytest.raises(WireError) as err:
        encode(replace(base, **change))
    assert err.value.reason == "invalid_field"


def test_unknown_or_missing_keys_refused() -> None:
    raw = encode(Reading("m1", 1, 1, 0, 0, 60, 2300, 0, 1000, 5000))
    item = cbor2.loads(raw)
    item[12] = 0
    with pytest.raises(WireError):
        decode(cbor2.dumps(item, canonical=True))
    del item[12], item[5]
    with pytest.raises(WireError):
        decode(cbor2.dumps(item, canonical=True))
    item[5] = 1.5  # a float where an integer belongs
    with pytest.raises(WireError):
        decode(cbor2.dumps(item, canonical=True))


readings = st.builds(
    Reading,
    meter_id=st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True),
    seq=st.integers(0, (1 << 63) - 1),
    ts=st.integers(0, (1 << 63) - 1),
    import_wh=st.integers(0, (1 << 63) - 1),
    export_wh=st.integers(0, (1 << 63) - 1),
    interval_s=st.integers(0, 86_400),
    voltage_dv=st.integers(0, 70_000),
    current_ma=st.integers(0, 10**6),
    pf_milli=st.integers(-1000, 1000),
    freq_chz=st.integers(0, 7000),
    flags=st.integers(0, 255),
)


@given(readings)
def test_roundtrip_any_valid_reading(reading: Reading) -> None:
    assert decode(encode(reading)) == reading


def test_vector_merkle_proofs(vectors: dict) -> None:  # type: ignore[type-arg]
    b = vectors["batch"]
    raws = [bytes.fromhex(v["cbor_hex"]) for v in vectors["readings"]]
    leaves = [signed_bytes(raw) for _, raw in batch.order_leaves(raws)]
    root = bytes.fromhex(b["root_hex"])
    for index, path in enumerate(b["proofs"]):
        hashes = [bytes.fromhex(h) for h in path]
        assert merkle.verify_inclusion(leaves[index], index, len(leaves), hashes, root)
        assert not merkle.verify_inclusion(leaves[index], (index + 1) % 4, 4, hashes, root)
    header = batch.decode_header(bytes.fromhex(b["header_cbor_hex"]))
    assert header.root == root and header.count == 4
    assert [r.meter_id for r in header.ranges] == ["meter.B_3", "mtr-0001", "mtr-0002"]
    first = header.ranges[1]
    assert (first.first_seq, first.last_seq, first.import_first_wh, first.import_last_wh) == (
        1,
        2,
        1_234_567,
        1_234_600,
    )


def test_merkle_matches_rfc9162_shape() -> None:
    # RFC 9162 2.1.1: MTH of one leaf is the leaf hash; of two, the node of both leaves.
    a, b, c = b"a", b"b", b"c"
    assert merkle.root([a]) == merkle.leaf_hash(a)
    assert merkle.root([a, b]) == merkle.node_hash(merkle.leaf_hash(a), merkle.leaf_hash(b))
    assert merkle.root([a, b, c]) == merkle.node_hash(
        merkle.node_hash(merkle.leaf_hash(a), merkle.leaf_hash(b)), merkle.leaf_hash(c)
    )
    # duplicating the last leaf (the Bitcoin CVE-2012-2459 trick) changes the root
    assert merkle.root([a, b, c]) != merkle.root([a, b, c, c])


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_every_proof_verifies_and_only_for_its_leaf(
    items: list[bytes], data: st.DataObject
) -> None:
    root = merkle.root(items)
    index = data.draw(st.integers(0, len(items) - 1))
    path = merkle.proof(items, index)
    assert merkle.verify_inclusion(items[index], index, len(items), path, root)
    assert not merkle.verify_inclusion(items[index] + b"!", index, len(items), path, root)


def test_topics() -> None:
    assert topics.reading_topic("mtr-0001") == "gtx/v1/meters/mtr-0001/reading"
    assert topics.meter_of("gtx/v1/meters/mtr-0001/reading") == "mtr-0001"
    assert topics.meter_of("gtx/v1/meters/mtr-0001/other") is None
    assert topics.meter_of("elsewhere/x") is None


def test_signing_with_random_keys_verifies_only_with_own_key() -> None:
    raw = encode(Reading("m1", 1, 1, 0, 0, 60, 2300, 0, 1000, 5000))
    one, two = SigningKey.generate(), SigningKey.generate()
    message, signature = envelope.unwrap(envelope.seal(raw, READING_DOMAIN, one))
    envelope.verify(message, signature, READING_DOMAIN, bytes(one.verify_key))
    with pytest.raises(WireError):
        envelope.verify(message, signature, READING_DOMAIN, bytes(two.verify_key))
