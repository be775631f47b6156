"""The hub's batch proof: an RFC 9162 (Certificate Transparency v2) Merkle tree, SHA-256.

leaf hash = SHA-256(0x00 || signed bytes of a reading)
node hash = SHA-256(0x01 || left || right), splitting n leaves at the largest power of two
below n, so no leaf is ever duplicated (no second-preimage trick with odd counts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from gridtokenx.wire.errors import WireError


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root_of_hashes(leaves: Sequence[bytes]) -> bytes:
    """Root over already-hashed leaves (iterative, for large batches)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    return _root(leaves, 0, len(leaves))


def _root(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    if hi - lo == 1:
        return leaves[lo]
    k = _split(hi - lo)
    return node_hash(_root(leaves, lo, lo + k), _root(leaves, lo + k, hi))


def root(items: Sequence[bytes]) -> bytes:
    return root_of_hashes([leaf_hash(item) for item in items])


def proof(items: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of item `index`: sibling hashes from the leaf up."""
    if not 0 <= index < len(items):
        raise WireError("no_such_leaf", f"leaf {index} not in a tree of {len(items)}")
    leaves = [leaf_hash(item) for item in items]
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(_root(leaves, lo + k, hi))
            hi = lo + k
        else:
            path.append(_root(leaves, lo, lo + k))
            lo = lo + k
    return path[::-1]


def verify_inclusion(
    item: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: does `item` sit at `index` of the tree with this root?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(item)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
