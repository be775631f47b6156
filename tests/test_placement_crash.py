"""A placement killed at each of its instants (a real `platform run`, SIGKILL at a named
crash point, see `gridtokenx.crashpoints`): `gridtokenx audit` is clean right after the
kill, and after a restart the escrow is either refunded or the order is open, never both
and never neither."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from platform_process import PlatformProcess, audit

THB = 10_000_000
ORDER = {"side": "buy", "quantity_wh": 1_000, "price": 4_000_000}  # escrows 4,000,000 uTHB


def audited(data: Path) -> dict[str, object]:
    done = audit(data)
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize(
    ("point", "escrow_landed"), [("order.intent", False), ("order.escrowed", True)]
)
def test_a_placement_killed_midway_leaves_the_books_and_chain_agreeing(
    tmp_path: Path, point: str, escrow_landed: bool
) -> None:
    data = tmp_path / "platform"
    first = PlatformProcess(data, crash_at=point).wait_ready()
    try:
        user = first.signup("crash@example.org")
        first.top_up(user, THB)
        with pytest.raises(httpx.HTTPError):  # the process dies under the request
            first.client.post("/api/v1/orders", headers=user["auth"], json=ORDER)
        first.process.wait(timeout=30)
    finally:
        first.kill()
    assert first.process.returncode == -9
    # right after the kill: the intent is counted as held exactly when its transfer landed
    report = audited(data)
    assert report["ok"] is True and report["failures"] == [], report

    second = PlatformProcess(data, name="restarted").wait_ready()
    try:
        wallet = second.wallet(user)
        # the escrow came back (or never left) and there is no order: refunded, not both
        assert wallet["thb_micro"] == THB
        assert second.orders(user) == []
        memos = [m for t in wallet["transactions"] for m in t["memos"]]
        assert any(m.startswith("gtx1 escrow ") for m in memos) is escrow_landed
        assert any(m.startswith("gtx1 refund ") for m in memos) is escrow_landed
        # and the market works on: the same order placed again is open with its escrow
        placed = second.client.post("/api/v1/orders", headers=user["auth"], json=ORDER)
        assert placed.status_code == 201, placed.text
        assert placed.json()["status"] == "open"
        assert second.wallet(user)["thb_micro"] == THB - 4_000_000
    finally:
        second.stop()
    report = audited(data)
    assert report["ok"] is True and report["failures"] == [], report


def test_a_placement_killed_after_its_order_row_keeps_the_order_open(tmp_path: Path) -> None:
    """Killed (-9) once the order is acknowledged: it stays open with its escrow. Day-long
    epochs: with 15-minute ones a run that straddled an epoch's end saw the restart close
    the order's epoch (as it should), and the order was no longer open."""
    data = tmp_path / "platform"
    first = PlatformProcess(data, epoch_s=86400.0).wait_ready()
    try:
        user = first.signup("kept@example.org")
        first.top_up(user, THB)
        placed = first.client.post("/api/v1/orders", headers=user["auth"], json=ORDER)
        assert placed.status_code == 201, placed.text
    finally:
        first.kill()
    report = audited(data)
    assert report["ok"] is True and report["failures"] == [], report
    second = PlatformProcess(data, name="restarted", epoch_s=86400.0).wait_ready()
    try:
        assert [o["order_id"] for o in second.orders(user)] == [placed.json()["order_id"]]
        assert second.orders(user)[0]["status"] == "open"
        assert second.wallet(user)["thb_micro"] == THB - 4_000_000
    finally:
        second.stop()
