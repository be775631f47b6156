"""`gridtokenx platform run --fronts N`: front processes on the public port, the core
behind its Unix sockets (real processes, SQLite, the embedded ledger)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from platform_process import ADMIN_H, PlatformProcess
from platform_site import Site
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from gridtokenx.api.fronts import MAX_FRAME, frame, read_frame
from gridtokenx.api.limits import ClientAddress
from gridtokenx.cli.fronts import socket_paths


def wait_for(p: PlatformProcess, text: str, count: int = 1) -> None:
    deadline = time.monotonic() + 60
    while p.output().count(text) < count:
        assert time.monotonic() < deadline, p.output()[-2000:]
        time.sleep(0.1)


def a_fresh_minute(need_s: float = 20.0) -> None:
    """Wait, if need be, until `need_s` seconds are left in this minute: the core's rate
    limit has fixed one-minute windows, and a test that counts requests against it must not
    straddle two of them (a real process: its clock cannot be stopped)."""
    left = 60 - time.time() % 60
    if left < need_s:
        time.sleep(left + 0.05)


def sockets(data: Path) -> tuple[list[Path], list[Path]]:
    """The core sockets and the placement sockets in a data directory."""
    return sorted(data.glob("core-*.sock")), sorted(data.glob("place-*.sock"))


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture
def core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PlatformProcess]:
    monkeypatch.setenv("GTX_LIMIT_PER_USER", "6")  # the core's limit, whatever front
    monkeypatch.setenv("GTX_LOG_FORMAT", "text")
    p = PlatformProcess(tmp_path / "data", extra=("--fronts", "2")).wait_ready()
    wait_for(p, "2 front processes")  # both up (one front answers /ready before the other)
    yield p
    p.stop()


def household(base: str, email: str) -> tuple[str, str]:
    """(user id, access token) of a new household with 10 THB, through the fronts."""
    with httpx.Client(base_url=base, timeout=60) as c:
        user = c.post("/api/v1/auth/register", json={"email": email, "password": "long password"})
        assert user.status_code == 201, user.text
        uid = user.json()["user_id"]
        topup = {"user_id": uid, "micro_thb": 10_000_000, "reference": f"t-{email.split('@')[0]}"}
        r = c.post("/api/v1/admin/topup", headers=ADMIN_H, json=topup)
        assert r.status_code == 200, r.text
        login = c.post("/api/v1/auth/login", json={"email": email, "password": "long password"})
        return uid, str(login.json()["access_token"])


def post_order(base: str, token: str, body: dict[str, object], **headers: str) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=60) as c:  # a new connection: any front
        return c.post(
            "/api/v1/orders", json=body, headers={"Authorization": f"Bearer {token}", **headers}
        )


def test_fronts_place_orders_and_forward_the_rest_with_the_cores_limits(
    core: PlatformProcess,
) -> None:
    assert core.output().count("ready on 127.0.0.1") == 2
    health = core.client.get("/health")  # the front's own liveness
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = core.client.get("/ready")  # forwarded: the core's dependencies
    assert (ready.status_code, ready.json()["checks"]["database"]) == (200, "ok")
    uid, token = household(core.url, "f1@example.org")
    buy = {"side": "buy", "quantity_wh": 1000, "price": 3_000_000}
    a_fresh_minute()  # the 6 a minute below are counted in one window
    placed = post_order(core.url, token, buy)  # the fast path: the placement socket
    assert placed.status_code == 201, placed.text
    row = placed.json()
    assert (row["user_id"], row["side"], row["quantity_wh"], row["price"], row["status"]) == (
        uid,
        "buy",
        1000,
        3_000_000,
        "open",
    )
    # refusals come back as the core gives them: the fast path's and the route's
    broke = post_order(core.url, token, {**buy, "quantity_wh": 5_000})
    assert (broke.status_code, broke.json()["code"]) == (422, "insufficient_funds")
    bad = post_order(core.url, token, {**buy, "quantity_wh": 0})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
    first = post_order(core.url, token, buy, **{"Idempotency-Key": "k-1"})
    again = post_order(core.url, token, buy, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["order_id"] == again.json()["order_id"]
    # the per-user limit (6 a minute) is the core's: 5 requests above, 1 left, whatever front
    answers = [post_order(core.url, token, buy).status_code for _ in range(4)]
    assert answers == [201, 429, 429, 429]
    with httpx.Client(base_url=core.url, timeout=60) as c:  # forwarded: listed by the core
        listed = c.get("/api/v1/orders", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 429  # still this minute's limit: the same count
    assert listed.json()["code"] == "rate_limited"


def test_a_spoofed_forwarded_for_through_a_front_is_not_believed() -> None:
    addresses = ClientAddress(())
    # the core sees the client's own header, then the front's peer appended
    assert addresses.of("-", "6.6.6.6, 127.0.0.1", front=True) == "127.0.0.1"
    assert addresses.of("-", "127.0.0.1", front=True) == "127.0.0.1"
    behind = ClientAddress(("10.0.0.0/8",))  # the fronts behind a trusted reverse proxy
    assert behind.of("-", "6.6.6.6, 198.51.100.7, 10.0.0.2", front=True) == "198.51.100.7"
    assert addresses.of("203.0.113.9", "6.6.6.6") == "203.0.113.9"  # TCP: no front


def test_websockets_are_relayed_and_a_bad_token_is_closed_as_by_the_core(
    core: PlatformProcess,
) -> None:
    _uid, token = household(core.url, "f2@example.org")
    ws_url = core.url.replace("http://", "ws://")
    with connect(f"{ws_url}/ws?token={token}") as ws:
        ws.send(json.dumps({"subscribe": ["account"]}))
        assert json.loads(ws.recv(timeout=30)) == {"type": "subscribed", "data": ["account"]}
        placed = post_order(
            core.url, token, {"side": "buy", "quantity_wh": 500, "price": 2_000_000}
        )
        assert placed.status_code == 201
        event = json.loads(ws.recv(timeout=30))
        assert (event["type"], event["data"]["order_id"]) == ("order", placed.json()["order_id"])
    with connect(f"{ws_url}/ws?token=nonsense") as ws, pytest.raises(ConnectionClosed):
        ws.recv(timeout=30)
    assert (ws.close_code, ws.close_reason) == (4401, "bad_token")


def test_a_killed_front_is_restarted_and_the_fronts_end_with_the_core(
    core: PlatformProcess,
) -> None:
    fronts = children(core.process.pid)
    assert len(fronts) == 2
    os.kill(fronts[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while "front 0 exited" not in core.output() and "front 1 exited" not in core.output():
        assert time.monotonic() < deadline, core.output()[-2000:]
        time.sleep(0.2)
    wait_for(core, "ready on 127.0.0.1", 3)
    assert sorted(children(core.process.pid)) != sorted(fronts)
    _uid, token = household(core.url, "f3@example.org")
    buy = {"side": "buy", "quantity_wh": 100, "price": 2_000_000}
    assert [post_order(core.url, token, buy).status_code for _ in range(4)] == [201] * 4
    now = children(core.process.pid)
    (core_socket,), (placement_socket,) = sockets(core.data)
    assert len(list(core.data.glob("core-*.lock"))) == 1
    assert oct(core_socket.stat().st_mode & 0o777) == "0o600"
    assert oct(placement_socket.stat().st_mode & 0o777) == "0o600"
    core.stop()
    for pid in now:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )
    assert sockets(core.data) == ([], [])
    assert list(core.data.glob("core-*.lock")) == []


def test_each_core_names_its_sockets_and_removes_only_those_of_dead_cores(
    tmp_path: Path,
) -> None:
    """Two cores on one data directory (two instances on one volume) each keep their own
    sockets; a core's start removes what a killed core left (its lock is free), never a
    live core's (its lock is held: nothing connects to its sockets to find out)."""
    import fcntl

    live = tmp_path / "core-live.lock"
    held = os.open(live, os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)  # a live core holds its lock
    (tmp_path / "core-dead.lock").touch()  # a killed core's: nobody holds it
    for name in ("core-live.sock", "place-live.sock", "core-dead.sock", "place-dead.sock"):
        bound = socket.socket(socket.AF_UNIX)
        bound.bind(str(tmp_path / name))  # bound, not listening: as a core starting up
        bound.close()
    try:
        core_path, placement_path, lock = socket_paths(tmp_path)
        other = socket_paths(tmp_path)  # a second core starting beside it
    finally:
        os.close(held)
    token = core_path.name.removeprefix("core-").removesuffix(".sock")
    other_token = other[0].name.removeprefix("core-").removesuffix(".sock")
    assert token != other_token and placement_path.name == f"place-{token}.sock"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            "core-live.lock",
            "core-live.sock",
            "place-live.sock",
            f"core-{token}.lock",
            f"core-{other_token}.lock",
        ]
    )
    assert oct((tmp_path / f"core-{token}.lock").stat().st_mode & 0o777) == "0o600"
    third = socket_paths(tmp_path)  # both new cores alive: their locks are kept
    assert (tmp_path / f"core-{token}.lock").exists()
    for fd in (lock, other[2], third[2]):
        os.close(fd)


def test_the_placement_socket_drops_an_oversized_frame_and_refuses_a_bad_one(
    core: PlatformProcess,
) -> None:
    path = str(sockets(core.data)[1][0])

    async def exchange() -> tuple[dict[str, object] | None, bytes]:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(frame({"id": 7, "user_id": "u", "order": {"side": "sell", "price": -1}}))
        answer = await read_frame(reader)
        writer.write((MAX_FRAME + 1).to_bytes(4, "big"))  # then nothing more is read
        rest = await reader.read()
        writer.close()
        return answer, rest

    answer, rest = asyncio.run(exchange())
    assert answer is not None
    assert (answer["id"], answer["status"]) == (7, 422)
    assert json.loads(str(answer["body"]))["code"] == "invalid_request"
    assert rest == b""  # the connection dropped
    assert "a frame of 65537 bytes" in core.output()
    assert not core.client.get("/health").is_error  # the core and its fronts still serve


def test_a_fronts_orders_of_one_turn_go_in_one_write_and_none_after_its_socket_is_lost(
    tmp_path: Path,
) -> None:
    """The front's end of the placement socket against a stand-in for the core's end (a
    Unix socket server in this test, recording what it reads)."""
    from gridtokenx.api.front import Placements

    path = str(tmp_path / "place.sock")
    reads: list[list[int]] = []  # the orders ("n") of each read

    async def core_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(MAX_FRAME):
            got = []
            while data:
                size = int.from_bytes(data[:4], "big")
                got.append(json.loads(data[4 : 4 + size]))
                data = data[4 + size :]
            reads.append([g["n"] for g in got])
            writer.write(b"".join(frame({"id": g["id"], "row": {"n": g["n"]}}) for g in got))

    async def scenario() -> tuple[list[object], list[object]]:
        server = await asyncio.start_unix_server(core_end, path=path)
        placements = Placements(path)
        await placements.connect()
        first = await asyncio.gather(*(placements.place({"n": k}) for k in range(10)))
        # the connection lost while two orders wait for their write: both fail, unsent
        late = [asyncio.ensure_future(placements.place({"n": k})) for k in (10, 11)]
        await asyncio.sleep(0)  # both queued for the write
        assert placements._writer is not None
        placements._writer.close()
        second = await asyncio.gather(*late, return_exceptions=True)
        again = await placements.place({"n": 12})  # a new connection
        server.close()
        return [a["row"] for a in first] + [again["row"]], [repr(e) for e in second]

    answered, failed = asyncio.run(scenario())
    assert answered == [{"n": k} for k in range(10)] + [{"n": 12}]
    assert failed == ["ConnectionError('the placement socket closed')"] * 2
    assert reads == [list(range(10)), [12]]  # one write for ten orders; 10 and 11 never sent


def test_a_stopping_core_refuses_a_fronts_placement_with_its_code(
    sqlite_site: Site, tmp_path: Path
) -> None:
    """A placement that reaches a core whose trading is closed (`Trading.close`, a stopping
    `platform run`) is answered 503 `stopping`, not dropped and not left waiting."""
    server = sqlite_site.app.state.placements
    sqlite_site.trading.close()
    path = tmp_path / "place.sock"

    async def exchange() -> dict[str, object] | None:
        await server.start(path)
        reader, writer = await asyncio.open_unix_connection(str(path))
        order = {"side": "buy", "quantity_wh": 100, "price": 2_000_000}
        writer.write(frame({"id": 3, "user_id": "u-1", "order": order}))
        answer = await read_frame(reader)
        writer.close()
        await server.close()
        return answer

    answer = asyncio.run(exchange())
    assert answer is not None
    assert (answer["id"], answer["status"]) == (3, 503)
    assert json.loads(str(answer["body"]))["code"] == "stopping"


def place_until_stopped(
    p: PlatformProcess, users: list[tuple[str, str]], stop: Callable[[], None]
) -> tuple[dict[str, list[str]], list[tuple[int, str]]]:
    """The households place orders (up to an epoch's 50 each, one at a time, in parallel)
    through `p`'s front; once 40 are acknowledged `stop` ends the core with orders in
    flight. Each household's acknowledged order ids, and the refusals seen."""
    import threading

    acknowledged: dict[str, list[str]] = {uid: [] for uid, _token in users}
    refused: list[tuple[int, str]] = []

    def fire(uid: str, token: str) -> None:
        with httpx.Client(base_url=p.url, timeout=60) as c:
            for k in range(50):
                try:
                    r = c.post(
                        "/api/v1/orders",
                        # 50 Wh at ~2 THB/kWh: an epoch's 50 fit in the household's 10 THB
                        json={"side": "buy", "quantity_wh": 50, "price": 2_000_000 + k},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                except httpx.HTTPError:
                    return  # the front stopped accepting, or went with its core
                if r.status_code != 201:
                    refused.append((r.status_code, r.json().get("code", "-")))
                    return
                acknowledged[uid].append(r.json()["order_id"])

    threads = [threading.Thread(target=fire, args=u) for u in users]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 60
    while sum(map(len, acknowledged.values())) < 40:
        assert time.monotonic() < deadline, refused
        time.sleep(0.01)
    stop()
    for th in threads:
        th.join(timeout=60)
    return acknowledged, refused


def orders_after_restart(data: Path, users: list[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """Each household's orders (id -> status) on the same data, from a new platform."""
    again = PlatformProcess(data, name="again").wait_ready()
    try:
        found = {}
        for uid, token in users:
            listed = again.client.get(
                "/api/v1/orders",
                params={"limit": 100},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert listed.status_code == 200, listed.text
            found[uid] = {o["order_id"]: o["status"] for o in listed.json()}
        return found
    finally:
        again.stop()


def test_the_core_killed_with_fronts_orders_in_flight_keeps_every_acknowledged_one(
    tmp_path: Path,
) -> None:
    """kill -9 of the core while its front has orders in flight: after a restart every
    order the client saw acknowledged (201) is there, open, its escrow held, and `gridtokenx
    audit` is clean (the cut-short ones refunded or never escrowed)."""
    from platform_process import audit

    data = tmp_path / "data"
    p = PlatformProcess(data, extra=("--fronts", "1")).wait_ready()
    wait_for(p, "1 front processes")
    users = [household(p.url, f"k{k}@example.org") for k in range(4)]
    taken, _refused = place_until_stopped(p, users, p.kill)  # kill -9, orders in flight
    assert 40 <= sum(map(len, taken.values())) < 200, taken
    found = orders_after_restart(data, users)
    for uid, _token in users:
        assert {i: found[uid].get(i) for i in taken[uid]} == {i: "open" for i in taken[uid]}
    report = audit(data)
    assert report.returncode == 0, report.stdout + report.stderr


def test_a_request_through_a_front_has_one_access_line(tmp_path: Path) -> None:
    """The front writes the access line of each request it answers or forwards; the core
    behind it keeps the request's id and writes none (one line per request, not two)."""
    p = PlatformProcess(tmp_path / "data", extra=("--fronts", "1")).wait_ready()
    try:
        wait_for(p, "1 front processes")
        _uid, token = household(p.url, "log@example.org")
        forwarded = p.client.get("/ready", headers={"X-Request-ID": "once-ready"})
        placed = post_order(
            p.url,
            token,
            {"side": "buy", "quantity_wh": 100, "price": 2_000_000},
            **{"X-Request-ID": "once-order"},
        )
        assert (forwarded.status_code, placed.status_code) == (200, 201)
        assert forwarded.headers["x-request-id"] == "once-ready"
        deadline = time.monotonic() + 30
        while '"once-order"' not in p.output() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        p.stop()
    lines = [json.loads(x) for x in p.output().splitlines() if x.startswith('{"ts"')]
    access = [
        (x["request_id"], x["path"], x["status"])
        for x in lines
        if x["logger"] == "gridtokenx.access" and x.get("request_id", "").startswith("once-")
    ]
    assert access == [("once-ready", "/ready", 200), ("once-order", "/api/v1/orders", 201)]


def test_a_forwarded_request_carries_the_fronts_request_id() -> None:
    """What the front sends the core: the client's headers, its address appended to
    X-Forwarded-For, and the id of the front's access line (replacing the client's)."""
    from gridtokenx.api.front import HOP, headers_for
    from gridtokenx.hub import logs

    scope = {
        "client": ("203.0.113.9", 5555),
        "headers": [
            (b"host", b"x"),
            (b"accept", b"*/*"),
            (b"x-request-id", b"client-given"),
            (b"x-forwarded-for", b"198.51.100.7"),
        ],
    }
    token = logs.request_id.set("front-made")
    try:
        sent = headers_for(scope, HOP)
    finally:
        logs.request_id.reset(token)
    assert sent == [  # Host is the forwarding client's own
        (b"accept", b"*/*"),
        (b"x-forwarded-for", b"198.51.100.7, 203.0.113.9"),
        (b"x-request-id", b"front-made"),
    ]


def test_a_platform_without_fronts_stops_cleanly_on_sigterm_with_orders_in_flight(
    tmp_path: Path,
) -> None:
    """uvicorn raises a caught SIGTERM again once it stops serving, which ended the process
    before its own shutdown (the market's stop, the ledger closed): `cli.common.serve`
    returns instead, so it stops cleanly, exit 0, every placed order acknowledged."""
    data = tmp_path / "data"
    p = PlatformProcess(data).wait_ready()
    users = [household(p.url, f"s{k}@example.org") for k in range(4)]
    taken, refused = place_until_stopped(p, users, p.stop)  # SIGTERM, orders in flight
    assert p.process.returncode == 0, p.output()[-3000:]
    assert "platform stopped cleanly" in p.output()
    assert p.output().count("platform: ready, API at") == 1
    assert refused == []
    found = orders_after_restart(data, users)
    for uid, _token in users:
        placed = sorted(i for i, status in found[uid].items() if status == "open")
        assert placed == sorted(taken[uid])


def test_a_stopped_core_answers_every_order_it_placed_through_its_front(tmp_path: Path) -> None:
    """SIGTERM to the core while a front has placements in flight: the front finishes its
    requests while the core still answers them, so every order that was placed reached its
    client as a 201 (after a restart, the open orders are exactly those acknowledged)."""
    data = tmp_path / "data"
    p = PlatformProcess(data, extra=("--fronts", "1")).wait_ready()
    wait_for(p, "1 front processes")
    users = [household(p.url, f"t{k}@example.org") for k in range(4)]
    taken, refused = place_until_stopped(p, users, p.stop)  # SIGTERM, orders in flight
    assert "platform stopped cleanly" in p.output()
    assert set(refused) <= {(503, "stopping")}, refused
    found = orders_after_restart(data, users)
    for uid, _token in users:
        placed = sorted(i for i, status in found[uid].items() if status == "open")
        assert placed == sorted(taken[uid])
