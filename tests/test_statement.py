"""A household's statement (docs/statement.md), from a real run: meters' signed readings
through the hub (ingest, batch, outbox over HTTP) to the platform (co-signed mints, burns),
orders placed over the API, the epoch cleared and settled on the embedded ledger. The
statement verifies offline and against the chain; one altered reading, amount or proof
fails, naming it, with its own exit code."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databases import database
from nacl.signing import SigningKey
from platform_site import EPOCH_S, Clock, Site, fund, served, signup
from typer.testing import CliRunner

from gridtokenx.cli import app
from gridtokenx.hub import batches
from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.outbox import Outbox
from gridtokenx.hub.rules import MeterStatus, RuleConfig
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.ledger.embedded import ChainReader
from gridtokenx.statement import chain
from gridtokenx.statement.build import build
from gridtokenx.statement.verify import EXIT_CODES, verify
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import READING_DOMAIN, Reading, decode, encode
from gridtokenx.wire.topics import reading_topic

HUB_TOKEN = "hub-token-" + "z" * 20
ADMIN_H = {"Authorization": "Bearer admin-" + "a" * 30}
PV, HOME = SigningKey(b"\x11" * 32), SigningKey(b"\x22" * 32)
PRICE = 3_250_000  # uTHB per kWh


def feed(
    store: HubStore, meter_id: str, key: SigningKey, rows: list[tuple[int, int, int]], now: int
) -> None:
    """Signed readings (seq, import, export) of one meter, ingested by the hub at `now`."""
    hub = Ingestor(store, RuleConfig(), clock=lambda: now)
    messages = []
    for seq, imported, exported in rows:
        r = Reading(
            meter_id, seq, now - 5_000 + seq * 900, imported, exported, 900, 2300, 0, 1000, 5000
        )
        messages.append((reading_topic(meter_id), envelope.seal(encode(r), READING_DOMAIN, key)))
    decisions = hub.ingest(messages)
    assert all(d.accepted for d in decisions), [d.reason for d in decisions]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Two households through hub and platform (its books on SQLite or PostgreSQL): a PV
    home sells to a consuming home."""
    tmp = tmp_path_factory.mktemp("statement")
    with database(request.param, tmp) as url:
        yield from _run(tmp, None if request.param == "sqlite" else url)


def _run(tmp: Path, books_url: str | None) -> Iterator[dict[str, Any]]:
    mp = pytest.MonkeyPatch()
    mp.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    mp.delenv("SOLANA_RPC_URL", raising=False)
    clock = Clock()
    site = Site(tmp / "platform", books_url, clock)
    seller = signup(site.client, "pv@x.org")
    buyer = signup(site.client, "home@x.org", "consumer")
    fund(site, buyer, thb=50_000_000)
    store = HubStore(connect(f"sqlite:///{tmp / 'hub.db'}"))
    hub_key = batches.hub_key(tmp / "hub.key")
    for meter_id, key, user in (("pv-1", PV, seller), ("home-1", HOME, buyer)):
        store.add_meter(meter_id, bytes(key.verify_key), status=MeterStatus.APPROVED)
        r = site.client.post(
            "/api/v1/admin/meters",
            headers=ADMIN_H,
            json={
                "meter_id": meter_id,
                "public_key": bytes(key.verify_key).hex(),
                "owner": user["wallet"],
            },
        )
        assert r.status_code == 201, r.text
    r = site.client.post(
        "/api/v1/admin/hubs",
        headers=ADMIN_H,
        json={"hub_id": "hub-1", "public_key": bytes(hub_key.verify_key).hex(), "token": HUB_TOKEN},
    )
    assert r.status_code == 201, r.text
    first = site.trading.current_epoch()
    with served(site.app) as url:
        outbox = Outbox(store, hub_key, url, HUB_TOKEN)
        now = int(clock.now) + 300
        feed(store, "pv-1", PV, [(1, 100, 1_000), (2, 101, 2_000), (3, 102, 3_000)], now)
        feed(store, "home-1", HOME, [(1, 500, 0), (2, 900, 0), (3, 1_300, 0)], now)
        batches.build(store, "hub-1", first, now + 1, hub_key)
        assert outbox.run_once()["submitted"] == 1
        sell = {"side": "sell", "quantity_wh": 1_500, "price": PRICE}
        buy = {"side": "buy", "quantity_wh": 1_200, "price": PRICE}
        assert (
            site.client.post("/api/v1/orders", headers=seller["auth"], json=sell).status_code == 201
        )
        assert (
            site.client.post("/api/v1/orders", headers=buyer["auth"], json=buy).status_code == 201
        )
        clock.now += EPOCH_S
        assert site.trading.close_epoch() == first
        now = int(clock.now) + 300
        feed(store, "pv-1", PV, [(4, 103, 4_000), (5, 104, 5_000)], now)
        feed(store, "home-1", HOME, [(4, 1_700, 0), (5, 2_000, 0)], now)
        batches.build(store, "hub-1", first + 1, now + 1, hub_key)
        assert outbox.run_once()["submitted"] == 1
    day = dt.datetime.fromtimestamp(first * EPOCH_S, dt.UTC).date().isoformat()
    dep = site.platform.dep
    mints = (str(dep.grx.address), str(dep.thb.address))
    statements = {
        name: build(site.platform.books, site.platform.ledger, mints, u["user_id"], day, day)
        for name, u in (("seller", seller), ("buyer", buyer))
    }
    yield {
        "site": site,
        "url": books_url,
        "first": first,
        "day": day,
        "users": (seller, buyer),
        **statements,
    }
    site.close()
    mp.undo()


def test_a_sellers_statement_verifies_with_every_amount(run: dict[str, Any]) -> None:
    doc, first = run["seller"], run["first"]
    assert verify(doc) == []
    e0, e1 = doc["epochs"]
    assert (e0["epoch"], e1["epoch"]) == (first, first + 1)
    assert [len(e["readings"]) for e in (e0, e1)] == [3, 2]
    # the first batch: export 1,000 -> 3,000 minted from its first register, 2 Wh burned
    assert (e0["export_wh"], e0["import_wh"], e0["minted_wh"], e0["burned_wh"]) == (
        2_000,
        2,
        2_000,
        2,
    )
    # the second from where the first ended: 3,000 -> 5,000, import 102 -> 104
    assert (e1["export_wh"], e1["import_wh"], e1["minted_wh"], e1["burned_wh"]) == (
        2_000,
        2,
        2_000,
        2,
    )
    (trade,) = e0["trades"]
    # 1,200 Wh at 3.25 THB/kWh: 3,900,000 uTHB; the fee and wheeling by the market's config
    assert (trade["side"], trade["wh"], trade["price"], trade["energy_value"]) == (
        "sell",
        1_200,
        PRICE,
        3_900_000,
    )
    assert trade["fee"] == 3_900_000 * trade["fee_bps"] // 10_000
    assert (e0["sold_wh"], e0["received_uthb"]) == (1_200, 3_900_000 - trade["fee"])
    assert e0["settlement"]["transactions"]
    (refund,) = e0["refunds"]  # 300 Wh unsold come back from escrow
    assert (refund["asset"], refund["amount"]) == ("grx", 300)


def test_a_buyers_statement_verifies_and_its_burns_follow_its_grx(run: dict[str, Any]) -> None:
    doc = run["buyer"]
    assert verify(doc) == []
    e0, e1 = doc["epochs"]
    assert (e0["import_wh"], e0["minted_wh"], e0["burned_wh"]) == (800, 0, 0)  # no GRX yet
    (trade,) = e0["trades"]
    assert (trade["side"], e0["bought_wh"], e0["paid_uthb"]) == ("buy", 1_200, trade["buyer_paid"])
    assert trade["buyer_paid"] == trade["energy_value"] + trade["wheeling"]
    # the 1,200 Wh bought are burned against the next 700 Wh imported
    assert (e1["import_wh"], e1["burned_wh"]) == (700, 700)


def test_the_statement_holds_against_the_chain(run: dict[str, Any]) -> None:
    reader = chain.from_chain(ChainReader(run["site"].platform.data / "chain"))
    assert chain.check(run["seller"], reader) == []
    assert chain.check(run["buyer"], reader) == []
    doc = copy.deepcopy(run["buyer"])
    doc["epochs"][1]["burns"][0]["wh"] -= 1  # a burn the chain did not make
    doc["epochs"][1]["burned_wh"] -= 1
    assert verify(doc) == []  # consistent on paper ...
    (failure,) = chain.check(doc, reader)  # ... but not on the chain
    assert (failure.code, failure.item) == (
        "ledger_mismatch",
        f"epoch {run['first'] + 1} burn home-1:1300-2000",
    )


def test_the_statement_holds_against_an_rpc_node(run: dict[str, Any], tmp_path: Path) -> None:
    """The same checks through JSON-RPC `getTransaction` (the node is tests/rpc_server.py
    over LiteSVM, holding the run's chain replayed: what it fakes is the network)."""
    from rpc_server import RpcServer
    from solders.litesvm import LiteSVM
    from solders.transaction_metadata import FailedTransactionMetadata

    from gridtokenx.ledger.embedded import FAUCET_LAMPORTS

    server = RpcServer()
    try:
        server.svm = LiteSVM().with_blockhash_check(False)
        history = ChainReader(run["site"].platform.data / "chain").history()
        server.svm.airdrop(history[0].tx.message.account_keys[0], FAUCET_LAMPORTS)
        for slot, entry in enumerate(history, 2):
            server.svm.expire_blockhash()
            assert not isinstance(server.svm.send_transaction(entry.tx), FailedTransactionMetadata)
            server.txs.append((entry.tx, slot))
        assert chain.check(run["buyer"], chain.from_rpc(server.url)) == []
        out = tmp_path / "s.json"
        out.write_text(json.dumps(run["seller"]))
        done = CliRunner().invoke(app, ["verify", str(out), "--rpc", server.url])
        assert done.exit_code == 0, done.output
        doc = copy.deepcopy(run["seller"])
        doc["epochs"][0]["mints"][0]["transaction"] = doc["epochs"][0]["burns"][0]["transaction"]
        out.write_text(json.dumps(doc))
        done = CliRunner().invoke(app, ["verify", str(out), "--rpc", server.url])
        assert done.exit_code == EXIT_CODES["ledger_mismatch"] == 10
        first = run["first"]
        assert f"ledger_mismatch epoch {first} mint pv-1:1000-3000" in done.output
    finally:
        server.close()


def _reencoded(item: dict[str, Any], **change: int) -> None:
    r = decode(bytes.fromhex(item["raw"]))
    fields = {f: getattr(r, f) for f in r.__dataclass_fields__}
    item["raw"] = encode(Reading(**{**fields, **change})).hex()


def test_an_altered_reading_fails_naming_it(run: dict[str, Any]) -> None:
    doc = copy.deepcopy(run["seller"])
    _reencoded(doc["epochs"][0]["readings"][1], export_wh=2_500)
    (failure, *_) = verify(doc)
    assert (failure.code, failure.item) == ("bad_meter_signature", "reading pv-1/2")


def test_an_altered_amount_fails_naming_it(run: dict[str, Any]) -> None:
    first = run["first"]
    doc = copy.deepcopy(run["seller"])
    doc["epochs"][0]["trades"][0]["fee"] += 1
    trade_id = doc["epochs"][0]["trades"][0]["trade_id"]
    (failure, *_) = verify(doc)
    assert (failure.code, failure.item) == ("amount_mismatch", f"epoch {first} trade {trade_id}")
    doc = copy.deepcopy(run["seller"])
    doc["epochs"][1]["minted_wh"] += 1
    assert [(f.code, f.item) for f in verify(doc)] == [
        ("amount_mismatch", f"epoch {first + 1} minted_wh")
    ]
    doc = copy.deepcopy(run["seller"])
    doc["epochs"][0]["mints"][0]["to_wh"] = 3_100
    doc["epochs"][0]["mints"][0]["wh"] = 2_100
    doc["epochs"][0]["minted_wh"] = 2_100
    (failure, *_) = verify(doc)
    assert (failure.code, failure.item) == ("amount_mismatch", f"epoch {first} mint pv-1:1000-3100")


def test_an_altered_proof_fails_naming_it(run: dict[str, Any]) -> None:
    first = run["first"]
    doc = copy.deepcopy(run["seller"])
    path = doc["epochs"][1]["readings"][0]["path"]
    path[0] = "00" * 32
    (failure, *_) = verify(doc)
    assert (failure.code, failure.item) == ("bad_inclusion_proof", "reading pv-1/4")
    doc = copy.deepcopy(run["seller"])
    doc["epochs"][0]["trades"][0]["path"][0] = "11" * 32
    (failure, *_) = verify(doc)
    trade_id = doc["epochs"][0]["trades"][0]["trade_id"]
    assert (failure.code, failure.item) == (
        "bad_inclusion_proof",
        f"epoch {first} trade {trade_id}",
    )
    doc = copy.deepcopy(run["seller"])
    tag = f"hub-1/{first}"
    signature = bytearray.fromhex(doc["batches"][tag]["hub_signature"])
    signature[0] ^= 1
    doc["batches"][tag]["hub_signature"] = signature.hex()
    (failure, *_) = verify(doc)
    assert (failure.code, failure.item) == ("bad_hub_signature", f"batch {tag}")


def test_a_pinned_key_that_differs_fails(run: dict[str, Any]) -> None:
    (failure, *_) = verify(run["seller"], {"pv-1": bytes(HOME.verify_key)})
    assert (failure.code, failure.item) == ("key_mismatch", "meter pv-1")
    assert verify(run["seller"], {"pv-1": bytes(PV.verify_key)}) == []


def test_the_commands_write_and_verify_with_an_exit_code_per_failure(
    run: dict[str, Any], tmp_path: Path
) -> None:
    site, (seller, _) = run["site"], run["users"]
    out = tmp_path / "statement.json"
    cli = CliRunner()
    done = cli.invoke(
        app,
        [
            "statement",
            "--user",
            seller["user_id"],
            "--from",
            run["day"],
            "--to",
            run["day"],
            "--out",
            str(out),
            "--data",
            str(site.platform.data),
            *(["--database", run["url"]] if run["url"] else []),
        ],
    )
    assert done.exit_code == 0, done.output
    assert out.stat().st_mode & 0o777 == 0o600
    assert json.loads(out.read_text()) == run["seller"]
    data = str(site.platform.data)
    done = cli.invoke(
        app, ["verify", str(out), "--data", data, "--key", f"pv-1={bytes(PV.verify_key).hex()}"]
    )
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert (summary["ok"], summary["ledger_checked"], summary["minted_wh"]) == (True, True, 4_000)
    doc = json.loads(out.read_text())
    _reencoded(doc["epochs"][0]["readings"][0], import_wh=99)
    out.write_text(json.dumps(doc))
    done = cli.invoke(app, ["verify", str(out)])
    assert done.exit_code == EXIT_CODES["bad_meter_signature"] == 4
    assert "bad_meter_signature reading pv-1/1" in done.output
    out.write_text("{not json")
    done = cli.invoke(app, ["verify", str(out)])
    assert done.exit_code == EXIT_CODES["malformed_statement"] == 2


def test_a_period_is_bounded_and_a_user_must_exist(run: dict[str, Any]) -> None:
    from gridtokenx.errors import InvalidInput, NotFound

    p = run["site"].platform
    mints = (str(p.dep.grx.address), str(p.dep.thb.address))
    with pytest.raises(InvalidInput) as err:
        build(p.books, p.ledger, mints, run["users"][0]["user_id"], "2026-01-01", "2026-12-31")
    assert err.value.code == "period_too_long"
    with pytest.raises(NotFound) as missing:
        build(p.books, p.ledger, mints, "nobody", run["day"], run["day"])
    assert missing.value.code == "unknown_user"


def test_the_account_page_and_the_api_download_the_households_own_statement(
    run: dict[str, Any],
) -> None:
    site, (seller, buyer) = run["site"], run["users"]
    query = {"from": run["day"], "to": run["day"]}
    r = site.client.get("/api/v1/statement", params=query, headers=seller["auth"])
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == (
        f'attachment; filename="statement-{run["day"]}-{run["day"]}.json"'
    )
    assert r.json() == run["seller"] and verify(r.json()) == []
    assert site.client.get("/api/v1/statement", params=query).status_code == 401
    bad = site.client.get(
        "/api/v1/statement", params={"from": "2026-1-1", "to": run["day"]}, headers=seller["auth"]
    )
    assert bad.status_code == 422
    long = {"from": "2026-01-01", "to": "2026-12-31"}
    r = site.client.get("/api/v1/statement", params=long, headers=seller["auth"])
    assert (r.status_code, r.json()["code"]) == (422, "period_too_long")
    site.client.cookies.set("gtx_access", buyer["access_token"])
    try:
        page = site.client.get("/me").text
        assert 'action="/me/statement"' in page and f'value="{run["day"]}"' in page
        r = site.client.get("/me/statement", params=query)
        assert r.status_code == 200 and r.json() == run["buyer"]
    finally:
        site.client.cookies.clear()


def _first(doc: dict[str, Any]) -> tuple[str, str]:
    """The first failure's code and item."""
    failure = verify(doc)[0]
    return failure.code, failure.item


VECTOR = Path(__file__).resolve().parents[1] / "docs" / "vectors" / "statement-v1.json"


def test_the_documented_vector_verifies_and_each_alteration_is_named() -> None:
    doc = json.loads(VECTOR.read_text())
    assert verify(doc) == []
    e0, e1 = doc["epochs"]
    assert [(e["epoch"], e["export_wh"], e["minted_wh"], e["burned_wh"]) for e in (e0, e1)] == [
        (1_988_888, 2_000, 2_000, 2),
        (1_988_889, 2_000, 2_000, 2),
    ]
    t = e0["trades"][0]
    assert (t["energy_value"], t["fee"], t["seller_net"], e0["received_uthb"]) == (
        3_900_000,
        39_000,
        3_861_000,
        3_861_000,
    )
    altered = copy.deepcopy(doc)
    _reencoded(altered["epochs"][1]["readings"][1], export_wh=5_001)
    assert _first(altered) == (
        "bad_meter_signature",
        "reading pv-1/5",
    )
    altered = copy.deepcopy(doc)
    altered["epochs"][0]["trades"][0]["seller_net"] += 1
    altered["epochs"][0]["received_uthb"] += 1
    assert _first(altered) == (
        "amount_mismatch",
        "epoch 1988888 trade 1988888-0",
    )
    altered = copy.deepcopy(doc)
    altered["epochs"][0]["refunds"][0]["amount"] = 301
    assert [(f.code, f.item) for f in verify(altered)] == [
        (
            "bad_inclusion_proof",
            "epoch 1988888 refund " + doc["epochs"][0]["refunds"][0]["order_id"],
        )
    ]
    altered = copy.deepcopy(doc)
    altered["batches"]["hub-1/1988889"]["hub_signature"] = "00" * 64
    assert _first(altered) == (
        "bad_hub_signature",
        "batch hub-1/1988889",
    )
    altered = copy.deepcopy(doc)
    del altered["epochs"][0]["readings"][1]  # a reading left out of the statement
    assert _first(altered) == (
        "header_mismatch",
        "readings of pv-1 in batch hub-1/1988888",
    )


def test_a_mint_or_burn_of_an_unproved_meter_or_missing_fields_is_named() -> None:
    """Mints and burns are read alike (one reader): a meter without proved readings is an
    amount mismatch; of two missing fields, a burn names its `wh` first, a mint its memo
    (its `wh` is checked only once its range holds)."""
    doc = json.loads(VECTOR.read_text())
    for kind, item, total in (
        ("mints", "mint ghost:1000-3000", "minted_wh"),
        ("burns", "burn ghost:100-102", "burned_wh"),
    ):
        altered = copy.deepcopy(doc)
        altered["epochs"][0][kind][0]["meter_id"] = "ghost"
        assert [(f.code, f.item, f.message) for f in verify(altered)] == [
            ("amount_mismatch", f"epoch 1988888 {item}", "no proved readings of this meter"),
            ("amount_mismatch", f"epoch 1988888 {total}", "recomputed 0"),
        ]
    for kind, item, missing in (
        ("mints", "mint pv-1:1000-3000", "'memo'"),
        ("burns", "burn pv-1:100-102", "'wh'"),
    ):
        altered = copy.deepcopy(doc)
        del altered["epochs"][0][kind][0]["wh"], altered["epochs"][0][kind][0]["memo"]
        assert [(f.code, f.item, f.message) for f in verify(altered)] == [
            ("malformed_statement", f"epoch 1988888 {item}", f"missing {missing}")
        ]


def _paths(x: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
    for k, v in items:
        yield from _paths(v, (*at, k))


VECTOR_PATHS = list(_paths(json.loads(VECTOR.read_text())))[1:]
JUNK = [None, "x", -1, [], {}, 2**70, "zz", 1.5, True, "00" * 32, [1], {"a": 1}, 1e300]


def test_any_field_replaced_by_junk_is_a_named_failure_never_a_crash() -> None:
    """Every field of the vector, replaced by each kind of junk in turn (all of them, so the
    test is the same on every run)."""
    text = VECTOR.read_text()
    for at in VECTOR_PATHS:
        for junk in JUNK:
            doc = json.loads(text)
            parent = doc
            for k in at[:-1]:
                parent = parent[k]
            old, parent[at[-1]] = parent[at[-1]], junk
            failures = verify(doc)
            assert all(f.code in EXIT_CODES for f in failures)
            if (
                at[-1] in ("user_id", "grx_account", "thb_account", "transaction", "record")
                or at[-2:-1] == ("transactions",)
                or (at[-1] in ("refunds", "transactions") and junk == [])
            ):
                continue  # not checked offline (the ledger check looks at them)
            if junk != old:
                assert failures, (at, junk)


def test_an_epoch_outside_its_period_is_named() -> None:
    doc = json.loads(VECTOR.read_text())
    doc["period"]["to"] = doc["period"]["from"] = "2026-09-20"
    assert _first(doc) == ("period_mismatch", "period")
    doc = json.loads(VECTOR.read_text())
    doc["epochs"][1]["starts_at"] += 900
    assert _first(doc) == ("period_mismatch", "epoch 1988889")


def test_the_verifier_runs_without_the_platform() -> None:
    """What `verify` loads: the wire modules, the rounding rule, PyNaCl; no database, web
    framework or ledger client (it runs offline on a household's computer)."""
    import subprocess
    import sys

    code = (
        "import sys, gridtokenx.statement.verify; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'fastapi', 'solders', 'solana', 'spl', 'httpx') "
        "or m.startswith('gridtokenx')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(
        [
            "gridtokenx",
            "gridtokenx.statement",
            "gridtokenx.statement.verify",
            "gridtokenx.units",
            "gridtokenx.wire",
            "gridtokenx.wire.batch",
            "gridtokenx.wire.cbor",
            "gridtokenx.wire.envelope",
            "gridtokenx.wire.errors",
            "gridtokenx.wire.merkle",
            "gridtokenx.wire.reading",
        ]
    )


def test_a_statement_finds_its_mints_and_burns_by_the_memos_index(
    run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building a statement reads its batches' mints and its epochs' burns through the
    ledger's index of memos (`tagged`), never a pass over the whole chain."""
    site, (seller, _buyer) = run["site"], run["users"]
    ledger = site.platform.ledger

    def scanned(self: object, start: int = 0) -> list[object]:
        raise AssertionError("a pass over the whole history")

    monkeypatch.setattr(type(ledger), "history", scanned)
    dep = site.platform.dep
    mints = (str(dep.grx.address), str(dep.thb.address))
    again = build(site.platform.books, ledger, mints, seller["user_id"], run["day"], run["day"])
    assert again == run["seller"]
