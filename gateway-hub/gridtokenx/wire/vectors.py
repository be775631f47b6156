"""Generate the wire-format test vectors (docs/vectors/wire-v1.json), deterministically.

Both implementations test against the checked-in file: this CPython one (cbor2, PyNaCl)
and the firmware's own MicroPython encoder and Ed25519. `gridtokenx wire vectors`
rewrites the file; tests/test_wire.py fails if the file and this generator disagree.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from nacl.signing import SigningKey

from gridtokenx.wire import batch, envelope, merkle
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode, signed_bytes
from gridtokenx.wire.status import STATUS_DOMAIN, Status, encode_status

# RFC 8032 section 7.1, TEST 1 secret key: anyone can check our signatures by hand.
RFC8032_TEST1_SEED = bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
)


def _readings() -> list[Reading]:
    base = Reading(
        meter_id="mtr-0001",
        seq=1,
        ts=1_767_225_600,  # 2026-01-01T00:00:00Z
        import_wh=1_234_567,
        export_wh=89_012,
        interval_s=60,
        voltage_dv=2301,
        current_ma=5_120,
        pf_milli=985,
        freq_chz=5_000,
    )
    return [
        base,
        Reading("mtr-0001", 2, 1_767_225_660, 1_234_600, 89_012, 60, 2298, 1_980, 1000, 4_998),
        Reading("mtr-0002", 7, 1_767_225_615, 0, 4_294_967_296, 900, 2405, 65_535, -870, 5_012),
        Reading("meter.B_3", 0, 42, 0, 0, 60, 0, 0, 0, 0, flags=1),  # time not set
    ]


def _hex(b: bytes) -> str:
    return b.hex()


def generate() -> dict[str, Any]:
    key = SigningKey(RFC8032_TEST1_SEED)
    readings = _readings()
    out: dict[str, Any] = {
        "format": "gridtokenx wire v1 test vectors (see docs/wire-format.md)",
        "reading_domain_hex": _hex(READING_DOMAIN),
        "status_domain_hex": _hex(STATUS_DOMAIN),
        "batch_domain_hex": _hex(batch.BATCH_DOMAIN),
        "key": {
            "seed_hex": _hex(RFC8032_TEST1_SEED),
            "public_key_hex": _hex(bytes(key.verify_key)),
        },
        "readings": [],
    }
    encoded = []
    for reading in readings:
        raw = encode(reading)
        encoded.append(raw)
        payload = envelope.seal(raw, READING_DOMAIN, key)
        out["readings"].append(
            {
                "fields": asdict(reading),
                "cbor_hex": _hex(raw),
                "signed_bytes_hex": _hex(signed_bytes(raw)),
                "signature_hex": _hex(envelope.unwrap(payload)[1]),
                "envelope_hex": _hex(payload),
            }
        )
    status = Status("mtr-0001", 1_767_225_600, 3_600, 60, 3, 0, "")
    raw_status = encode_status(status)
    out["status"] = {
        "fields": {k: v for k, v in asdict(status).items() if not k.startswith("image_")},
        "cbor_hex": _hex(raw_status),
        "envelope_hex": _hex(envelope.seal(raw_status, STATUS_DOMAIN, key)),
    }
    # Encodings a strict decoder must refuse, with the reason code the hub stores.
    first = encoded[0]
    out["invalid"] = [
        # seq 1 written as a 1-byte-argument integer (0x18 0x01) instead of 0x01
        {
            "hex": _hex(first.replace(b"\x02\x01", b"\x02\x18\x01", 1)),
            "reason": "non_canonical_cbor",
        },
        # the same map with keys 0 and 1 swapped is not sorted
        {"hex": _hex(_swap_first_keys(first)), "reason": "non_canonical_cbor"},
        {"hex": _hex(first[:-1]), "reason": "malformed_cbor"},
        {"hex": _hex(first + b"\x00"), "reason": "malformed_cbor"},
        {"hex": "a0", "reason": "unsupported_version"},
    ]
    header = batch.build("hub-001", 1_963_584, encoded)
    leaves = [signed_bytes(raw) for _, raw in batch.order_leaves(encoded)]
    out["batch"] = {
        "hub_id": header.hub_id,
        "epoch": header.epoch,
        "leaf_order": [r.meter_id + "#" + str(r.seq) for r, _ in batch.order_leaves(encoded)],
        "leaf_hashes_hex": [_hex(merkle.leaf_hash(leaf)) for leaf in leaves],
        "root_hex": _hex(header.root),
        "proofs": [[_hex(h) for h in merkle.proof(leaves, i)] for i in range(len(leaves))],
        "header_cbor_hex": _hex(batch.encode_header(header)),
    }
    out["merkle_roots"] = {
        str(n): _hex(merkle.root([bytes([i]) for i in range(n)])) for n in (0, 1, 2, 3, 5, 7, 8)
    }
    return out


def _swap_first_keys(raw: bytes) -> bytes:
    # raw = a<n> 00 01 01 68 "mtr-0001" ...: put "1: meter_id" before "0: 1"
    head, rest = raw[:1], raw[1:]
    assert rest[:2] == b"\x00\x01"
    key1_len = 2 + 8  # 01 68 + 8 characters
    return head + rest[2 : 2 + key1_len] + rest[:2] + rest[2 + key1_len :]
