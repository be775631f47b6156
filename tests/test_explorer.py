"""`/explorer/tx/{signature}`: a hub batch's transaction traced to its signed readings and a
settlement to its epoch's trades, each read by primary key (never a pass over every batch,
reading or trade stored), an epoch's trades shown a bounded page at a time."""

from __future__ import annotations

import re

import pytest
from nacl.signing import SigningKey
from platform_site import Site, signup, submit, trade
from solders.pubkey import Pubkey
from sqlalchemy import event

from gridtokenx.adapters import books
from gridtokenx.api.pages import explorer
from gridtokenx.ledger.backend import note
from gridtokenx.ledger.oracle import BATCH
from gridtokenx.ledger.settlement import SETTLE

TRACED = ("ledger_batches", "ledger_batch_readings", "ledger_meters", "ledger_trades")


@pytest.fixture
def site(sqlite_site: Site) -> Site:
    return sqlite_site


def reads(site: Site, path: str) -> tuple[str, list[str]]:
    """The page at `path`, and the statements it sent that read the traced tables."""
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        if any(f"FROM {t}" in statement for t in TRACED):
            seen.append(" ".join(statement.split()))

    event.listen(site.platform.books, "before_cursor_execute", record)
    try:
        r = site.client.get(path)
    finally:
        event.remove(site.platform.books, "before_cursor_execute", record)
    assert r.status_code == 200, r.text
    return r.text, seen


def test_a_batch_is_traced_to_its_readings_by_key(site: Site) -> None:
    platform = site.platform
    owner = signup(site.client, "solar@x.org")
    hub, meter, other = SigningKey(b"h" * 32), SigningKey(b"m" * 32), SigningKey(b"o" * 32)
    platform.register_hub("hub-1", bytes(hub.verify_key), "t" * 30)
    platform.register_meter("m-1", bytes(meter.verify_key), Pubkey.from_string(owner["wallet"]))
    platform.register_meter("m-2", bytes(other.verify_key), Pubkey.from_string(owner["wallet"]))
    submit(platform, hub, meter, 1, [0, 4_000, 9_000])
    submit(platform, hub, meter, 2, [12_000])  # another batch: not on the first's page
    batch = next(
        e
        for e in platform.ledger.history()
        if any(m.startswith(f"{BATCH} hub-1/1 ") for m in e.memos)
    )
    html, statements = reads(site, f"/explorer/tx/{batch.signature}")
    assert "Traced to hub batch hub-1/1" in html
    assert '<span class="ok" id="verified">verified</span>' in html
    rows = re.findall(
        r"<tr><td>(m-\d)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td><span class=\"(\w+)\"",
        html,
    )
    assert rows == [
        ("m-1", "10", "0", "0", "ok"),
        ("m-1", "11", "4000", "0", "ok"),
        ("m-1", "12", "9000", "0", "ok"),
    ]
    assert statements and all(" WHERE " in s for s in statements), statements


def test_a_settlement_shows_its_epochs_first_trades_by_key(site: Site) -> None:
    trades = [
        trade(epoch, k, "F" * 44, "N" * 44)
        for epoch, n in ((8, 3), (9, explorer.TRADES_SHOWN + 5))
        for k in range(n)
    ]
    books.add_rows(site.platform.books, books.trades, trades)
    signature = site.platform.ledger.send([note(f"{SETTLE} 9 {'ab' * 32} 0")], [])
    html, statements = reads(site, f"/explorer/tx/{signature}")
    assert "Traced to the cleared trades of epoch" in html
    table = html[html.index('<table id="epoch-trades">') :]
    table = table[: table.index("</table>")]
    shown = re.findall(r"<tr><td>(\d+-\d+)</td>", table)
    ninth = sorted(t["trade_id"] for t in trades if t["epoch"] == 9)
    assert shown == ninth[: explorer.TRADES_SHOWN]  # by id, as text
    assert f"The first {explorer.TRADES_SHOWN} trades of this epoch, by id." in html
    assert statements and all(" WHERE " in s for s in statements), statements


def test_the_explorer_pages_read_no_pass_over_the_chains_history(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    signup(site.client, "reader@x.org")  # its wallet's funding: transactions on the chain
    ledger = site.platform.ledger
    history = ledger.history()
    newest = [e.signature for e in history[::-1]]

    def scanned(self: object, start: int = 0) -> list[object]:
        raise AssertionError("a pass over the whole history")

    monkeypatch.setattr(type(ledger), "history", scanned)
    index = site.client.get("/explorer")
    assert index.status_code == 200
    shown = re.findall(r'href="/explorer/tx/([1-9A-HJ-NP-Za-km-z]+)"', index.text)
    assert shown == newest[:30]
    tx = site.client.get(f"/explorer/tx/{history[0].signature}")
    assert tx.status_code == 200 and history[0].signature in tx.text
    unknown = site.client.get(f"/explorer/tx/{'1' * 88}")
    assert unknown.status_code == 200 and "1" * 88 in unknown.text


def test_a_batch_is_reviewed_with_its_own_meters_and_hub_read_by_key(site: Site) -> None:
    """Receiving and co-signing a batch reads the registry rows of the batch's meters and
    hub only, never the whole registry (a site's thousands of meters)."""
    platform = site.platform
    owner = signup(site.client, "kw@x.org")
    hub, meter = SigningKey(b"h" * 32), SigningKey(b"m" * 32)
    platform.register_hub("hub-1", bytes(hub.verify_key), "t" * 30)
    platform.register_hub("hub-2", bytes(SigningKey(b"g" * 32).verify_key), "u" * 30)
    wallet = Pubkey.from_string(owner["wallet"])
    platform.register_meter("m-1", bytes(meter.verify_key), wallet)
    for k in range(2, 6):  # other meters of the site: not read for this batch
        platform.register_meter(f"m-{k}", bytes(SigningKey(bytes([k]) * 32).verify_key), wallet)
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "FROM ledger_meters" in statement or "FROM ledger_hubs" in statement:
            seen.append(" ".join(statement.split()))

    event.listen(platform.books, "before_cursor_execute", record)
    try:
        submit(platform, hub, meter, 1, [0, 4_000])
    finally:
        event.remove(platform.books, "before_cursor_execute", record)
    assert seen, "the batch read no registry rows"
    for statement in seen:
        assert re.search(r"WHERE ledger_(meters\.meter_id IN|hubs\.hub_id =)", statement), statement
    minted = [m for m in platform.ledger.memo_index() if m.startswith("gtx1 mint hub-1/1 ")]
    assert len(minted) == 1 and "m-1:" in minted[0]
