"""The hub's outbox to the chain through the platform over HTTP: the hub and the platform
each re-verify and sign, the mint lands once, and neither a restart of the outbox nor a
crash after the chain accepted a batch submits it twice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from outbox_site import HUB_TOKEN, NOW, feed
from services import free_port
from solders.keypair import Keypair
from sqlalchemy import select, update

from gridtokenx.hub import batches, schema
from gridtokenx.hub.outbox import Outbox
from gridtokenx.hub.store import HubStore


def states(store: HubStore) -> list[tuple[int, str, int]]:
    b = schema.batches
    with store.engine.connect() as c:
        return [
            (r.epoch, r.state, r.attempts)
            for r in c.execute(select(b.c.epoch, b.c.state, b.c.attempts).order_by(b.c.epoch))
        ]


def test_batches_reach_the_chain_once_through_the_platform(served_hub: dict[str, Any]) -> None:
    store, key, platform, server, owners = (
        served_hub[k] for k in ("store", "key", "platform", "server", "owners")
    )
    feed(store, range(1, 4), NOW)
    batches.build(store, "hub-001", 1, NOW + 1, key)
    outbox = Outbox(store, key, server.url, HUB_TOKEN)
    result = outbox.run_once()
    b = schema.batches
    with store.engine.connect() as c:
        error = c.execute(select(b.c.last_error)).scalar_one()
    assert result["submitted"] == 1, error
    grx = platform.dep.grx
    assert [grx.balance(o) for o in owners.values()] == [2_000] * 3  # export 1000 -> 3000
    b = schema.batches
    with store.engine.connect() as c:
        txs = json.loads(c.execute(select(b.c.chain_txs)).scalar_one())
    assert len(txs) == 2  # the batch record (hub-signed memo) and one mint transaction
    # the hub's key is one of the multisig's signers: the mint carries its signature
    landed = {entry.signature: entry for entry in platform.ledger.history()}
    hub_pub = Keypair.from_seed(bytes(key)).pubkey()
    assert all(hub_pub in landed[t].tx.message.account_keys for t in txs)
    # the household page shows the GRX earned and links each batch's proof on the chain
    assert batches.on_chain(store, "m0") == (2_000, [{"epoch": 1, "transactions": txs}])
    from fastapi.testclient import TestClient

    from gridtokenx.hub.web import HubContext, household_link
    from gridtokenx.hub.web import create_app as hub_app

    hub_web = TestClient(hub_app(HubContext(store, platform_url=server.url)))
    page = hub_web.get(household_link(store, "m0")).text
    assert "2.000 GRX" in page and f"{server.url}/explorer/tx/{txs[0]}" in page
    # a restart that lost the hub's record of the submission: the batch goes again, and
    # the platform answers with what already landed; nothing is minted twice
    with store.engine.begin() as c:
        c.execute(update(b).values(state="pending", chain_txs=None))
    assert outbox.run_once()["submitted"] == 1
    with store.engine.connect() as c:
        assert json.loads(c.execute(select(b.c.chain_txs)).scalar_one()) == txs
    assert grx.supply() == 6_000


def test_crash_between_the_chain_and_the_hub_and_an_outage_lose_nothing(
    served_hub: dict[str, Any],
) -> None:
    store, key, platform, server, _owners = (
        served_hub[k] for k in ("store", "key", "platform", "server", "owners")
    )
    feed(store, range(1, 3), NOW)
    batches.build(store, "hub-001", 1, NOW + 1, key)
    feed(store, range(3, 5), NOW + 900)
    batches.build(store, "hub-001", 2, NOW + 901, key)
    unreachable = Outbox(store, key, f"http://127.0.0.1:{free_port()}", HUB_TOKEN, timeout=2)
    assert unreachable.run_once() == {"submitted": 0, "refused": 0, "pending": 1}
    assert [s for _, s, _ in states(store)] == ["pending", "pending"]
    # the platform sends the first batch's transactions, then the hub dies before it records
    outbox = Outbox(store, key, server.url, HUB_TOKEN)
    real = outbox._mark

    def die_on_submitted(batch_id: int, **values: object) -> None:
        if values.get("state") == "submitted":
            raise KeyboardInterrupt("power cut")
        real(batch_id, **values)

    outbox._mark = die_on_submitted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        outbox.run_once()
    grx = platform.dep.grx
    assert grx.supply() == 3 * 1_000  # epoch 1 landed: 1000 -> 2000 per meter
    restarted = Outbox(store, key, server.url, HUB_TOKEN)
    assert restarted.run_once() == {"submitted": 2, "refused": 0, "pending": 0}
    assert grx.supply() == 3 * 3_000  # 1000 -> 4000: each Wh once
    assert [s for _, s, _ in states(store)] == ["submitted", "submitted"]


def test_platform_refuses_a_forged_reading_and_a_wrong_token(served_hub: dict[str, Any]) -> None:
    store, key, platform, server = (served_hub[k] for k in ("store", "key", "platform", "server"))
    feed(store, range(1, 3), NOW)
    batches.build(store, "hub-001", 1, NOW + 1, key)
    assert Outbox(store, key, server.url, "wrong-token-" + "z" * 20).run_once()["pending"] == 1
    r = schema.readings
    with store.engine.begin() as c:  # someone alters a stored signature on the gateway
        c.execute(update(r).where(r.c.meter_id == "m0", r.c.seq == 1).values(signature=b"\1" * 64))
    assert Outbox(store, key, server.url, HUB_TOKEN).run_once()["refused"] == 1
    b = schema.batches
    with store.engine.connect() as c:
        assert c.execute(select(b.c.last_error)).scalar_one() == "platform_refused:bad_signature"
    assert platform.dep.grx.supply() == 0
