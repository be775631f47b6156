"""What several platform processes share, used by two at once: the keystore file, the
embedded chain's log and the audit log's sequence (one writer each would lose the other's
keys, fork the chain or break the hash chain). Two objects over one path stand for two
processes: their `flock`s are on separate open files, as two processes' would be."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from databases import database
from ledger_fixtures import make_chain

from gridtokenx import auditlog
from gridtokenx.adapters import books
from gridtokenx.keynames import user_key
from gridtokenx.ledger.deployment import Deployment
from gridtokenx.ledger.embedded import EmbeddedLedger
from gridtokenx.ledger.keystore import Keystore

SECRET = os.urandom(32)


def test_two_keystores_on_one_file_keep_every_key(tmp_path: Path) -> None:
    a, b = Keystore(tmp_path / "keys.json", SECRET), Keystore(tmp_path / "keys.json", SECRET)

    def add(store: Keystore, side: str) -> None:
        for k in range(40):
            store.ensure(user_key(f"{side}{k}"))

    threads = [threading.Thread(target=add, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    both = a.ensure(user_key("both"))  # made by one, then found by the other
    assert b.ensure(user_key("both")).pubkey() == both.pubkey()
    fresh = Keystore(tmp_path / "keys.json", SECRET)
    names = set(fresh.names())
    assert names == {user_key(f"a{k}") for k in range(40)} | {
        user_key(f"b{k}") for k in range(40)
    } | {user_key("both")}
    assert (
        fresh.get(user_key("b7")).pubkey()
        == b.get(user_key("b7")).pubkey()
        == a.get(user_key("b7")).pubkey()
    )


def test_two_writers_of_one_chain_log_see_each_other_and_replay_the_same(
    tmp_path: Path,
) -> None:
    chain = make_chain(tmp_path, SECRET)
    other_keys = Keystore(tmp_path / "keys.json", SECRET)
    other = EmbeddedLedger(tmp_path / "chain", other_keys.get("payer"))
    dep_b = Deployment.load(other, other_keys, tmp_path / "deployment.json")
    alice, bob = (
        chain.keys.ensure(user_key("alice")).pubkey(),
        other_keys.ensure(user_key("bob")).pubkey(),
    )
    chain.dep.open_wallet(alice)
    dep_b.open_wallet(bob)
    for k in range(5):  # interleaved: each writes on top of what the other wrote
        chain.dep.top_up(alice, 1_000, f"a-{k}")
        dep_b.top_up(bob, 10, f"b-{k}")
        dep_b.top_up(alice, 1, f"c-{k}")
    for dep in (chain.dep, dep_b):
        assert (dep.thb.balance(alice), dep.thb.balance(bob)) == (5_005, 50)
        assert f"gtx1 onramp b-4 {bob} 10" in dep.ledger.memo_index()
    assert len(chain.ledger.history()) == len(other.history())
    chain.ledger.close()
    other.close()
    replayed = EmbeddedLedger(tmp_path / "chain", chain.keys.get("payer"))
    dep = Deployment.load(replayed, chain.keys, tmp_path / "deployment.json")
    assert (dep.thb.balance(alice), dep.thb.balance(bob)) == (5_005, 50)
    replayed.close()


@pytest.mark.parametrize("kind", ["postgresql"])
def test_two_engines_append_one_unbroken_audit_chain(tmp_path: Path, kind: str) -> None:
    with database(kind, tmp_path) as url:
        engines = [books.connect(url), books.connect(url)]

        def append(k: int) -> None:
            for n in range(30):
                auditlog.append(engines[k % 2], f"actor-{k}", "test.append", {"n": n})

        threads = [threading.Thread(target=append, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert auditlog.verify(engines[0]) is None
        seqs = [e["seq"] for e in auditlog.entries(engines[1], limit=1000)]
        assert seqs == list(range(120, 0, -1))
        for engine in engines:
            engine.dispose()
