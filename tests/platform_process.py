"""`gridtokenx platform run` as real processes for tests: start, wait until ready, kill,
and a small HTTP client for the calls the tests make (sign-up, top-up, orders)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from services import free_port

ADMIN = "admin-" + "b" * 30
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
KEY = "ab" * 32  # the keystore's sealing key for these tests' sites


class PlatformProcess:
    """One `platform run` on a free port, its output in `<data>/../<name>.log`."""

    def __init__(
        self,
        data: Path,
        name: str = "platform",
        database: str | None = None,
        epoch_s: float = 900.0,
        crash_at: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.data, self.name, self.port = data, name, free_port()
        self.log = data.parent / f"{name}.log"
        env = {**os.environ, "GTX_KEYSTORE_KEY": KEY, "GTX_ADMIN_TOKEN": ADMIN}
        env.pop("SOLANA_RPC_URL", None)
        env.pop("GTX_CRASH_AT", None)
        if crash_at:
            env["GTX_CRASH_AT"] = crash_at
        command = [
            sys.executable,
            "-m",
            "gridtokenx",
            "platform",
            "run",
            "--data",
            str(data),
            "--port",
            str(self.port),
            "--epoch-s",
            str(epoch_s),
            "--auto-approve",  # these households trade at once (approval: test_approval.py)
            *extra,
        ]
        if database:
            command += ["--database", database]
        self.process = subprocess.Popen(
            command, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, env=env
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def wait_ready(self, timeout: float = 120) -> PlatformProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.client.get("/ready").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready: {self.log.read_text()[-3000:]}")

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        """kill -9: no handler runs."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self.client.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.client.close()

    # -- the calls tests make -----------------------------------------------------------
    def signup(self, email: str) -> dict[str, Any]:
        body = {"email": email, "password": "correct horse 1", "role": "prosumer"}
        r = self.client.post("/api/v1/auth/register", json=body)
        assert r.status_code == 201, r.text
        login = {"email": email, "password": "correct horse 1"}
        tokens = self.client.post("/api/v1/auth/login", json=login).json()
        return {**r.json(), "auth": {"Authorization": f"Bearer {tokens['access_token']}"}}

    def top_up(self, user: dict[str, Any], micro_thb: int) -> None:
        body = {"user_id": user["user_id"], "micro_thb": micro_thb, "reference": f"t-{micro_thb}"}
        r = self.client.post("/api/v1/admin/topup", headers=ADMIN_H, json=body)
        assert r.status_code == 200, r.text

    def wallet(self, user: dict[str, Any]) -> dict[str, Any]:
        r = self.client.get("/api/v1/wallet", headers=user["auth"])
        assert r.status_code == 200, r.text
        return dict(r.json())

    def orders(self, user: dict[str, Any]) -> list[dict[str, Any]]:
        r = self.client.get("/api/v1/orders", headers=user["auth"])
        assert r.status_code == 200, r.text
        return list(r.json())


def audit(data: Path, database: str | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "gridtokenx", "audit", "--data", str(data)]
    if database:
        args += ["--database", database]
    env = {**os.environ, "GTX_KEYSTORE_KEY": KEY}
    env.pop("SOLANA_RPC_URL", None)
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


def mint_grx(data: Path, url: str, wallet: str, wh: int) -> None:
    """GRX for a seller as a hub's batch mints it (a meter's two signed readings, the
    batch in the books, the hub's and two oracles' signatures), done from this (the test's)
    process on the site's shared chain log: the instances see it at their next read."""
    from ledger_fixtures import reading, signed
    from nacl.signing import SigningKey
    from solders.keypair import Keypair
    from solders.pubkey import Pubkey

    from gridtokenx.adapters import books
    from gridtokenx.ledger.deployment import Deployment
    from gridtokenx.ledger.embedded import EmbeddedLedger
    from gridtokenx.ledger.keystore import Keystore
    from gridtokenx.ledger.oracle import Evidence, Marks, mint_batch, reviewing_signer
    from gridtokenx.wire import batch as wire_batch

    meter_id, meter, hub_signing = f"m-{wallet[:8]}", SigningKey.generate(), SigningKey.generate()
    readings = [signed(meter, reading(meter_id, s, 10, wh * (s - 1))) for s in (1, 2)]
    header = wire_batch.build("hub-1", 1, [raw for raw, _ in readings])
    encoded = wire_batch.encode_header(header)
    hub_signature = hub_signing.sign(wire_batch.BATCH_DOMAIN + encoded).signature
    by_raw = dict(readings)
    leaves = wire_batch.order_leaves([raw for raw, _ in readings])
    ev = Evidence(header, bytes(hub_signature), tuple((raw, by_raw[raw]) for _, raw in leaves))
    engine = books.connect(url)
    books.add_rows(
        engine,
        books.meters,
        [{"meter_id": meter_id, "public_key": bytes(meter.verify_key), "owner": wallet}],
    )
    books.add_rows(
        engine,
        books.batches,
        [
            {
                "hub_id": "hub-1",
                "epoch": 1,
                "root": header.root,
                "header": encoded,
                "hub_signature": bytes(hub_signature),
                "hub_key": bytes(hub_signing.verify_key),
            }
        ],
    )
    books.add_rows(
        engine,
        books.batch_readings,
        [
            {"hub_id": "hub-1", "epoch": 1, "idx": k, "raw": raw, "signature": sig}
            for k, (raw, sig) in enumerate(ev.readings)
        ],
    )
    engine.dispose()
    keys = Keystore(data / "keys.json", bytes.fromhex(KEY))
    ledger = EmbeddedLedger(data / "chain", keys.get("payer"))
    try:
        dep = Deployment.load(ledger, keys, data / "deployment.json")
        hub = Keypair.from_seed(bytes(hub_signing))
        signers = [hub, dep.oracle("oracle/platform"), dep.oracle("oracle/grid-operator")]
        mint_batch(
            ledger,
            dep.grx,
            dep.oracle_multisig,
            ev,
            {meter_id: Pubkey.from_string(wallet)},
            Marks("gtx1 mint"),
            {k.pubkey(): reviewing_signer(k, lambda: None) for k in signers},
        )
    finally:
        ledger.close()


def wait_for(what: str, check: Any, timeout: float = 180) -> Any:
    """Poll `check` until it returns something truthy (a wait, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout} s for {what}")
