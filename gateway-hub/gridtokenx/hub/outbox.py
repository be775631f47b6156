"""The outbox: the hub's batches submitted to the chain through the platform, over HTTP.

For each batch still `pending` (oldest epoch first):
1. POST it (header, hub signature, every reading and its meter signature) to the
   platform, which re-verifies it as co-signer and proposes the transactions to sign;
2. check each proposed transaction itself (`hub_check`: the record of this batch, or
   mints of exactly its meters' export up to this batch's registers) and sign it with the
   hub's oracle key (the same Ed25519 key that signed the batch);
3. POST the signatures; the platform adds its own and the grid operator's and sends.

Batches `held` by a failed feeder balance (hub/balances.py) are not submitted, nor is any
later one until the grid operator has released or rejected it.

The state lives in the hub's database: a crash or a lost connection at any step leaves the
batch `pending` and the next tick starts again from 1. The chain is the guard against
double submission: every transaction carries a memo the platform finds before sending,
and a batch already on-chain comes back `done` with its transactions.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass

import httpx
from nacl.signing import SigningKey
from solders.keypair import Keypair
from solders.message import Message
from sqlalchemy import func, select, update

from gridtokenx.hub import schema
from gridtokenx.hub.store import HubStore
from gridtokenx.ledger.oracle import Evidence, Refused, hub_check
from gridtokenx.wire import batch as wire_batch

log = logging.getLogger("gridtokenx.hub.outbox")


@dataclass
class Outbox:
    store: HubStore
    key: SigningKey
    platform_url: str
    token: str
    timeout: float = 30.0

    def evidence(self, batch_id: int) -> tuple[int, Evidence]:
        b, r = schema.batches, schema.readings
        with self.store.engine.connect() as c:
            row = c.execute(select(b).where(b.c.id == batch_id)).one()
            readings = c.execute(
                select(r.c.raw, r.c.signature)
                .where(r.c.batch_id == batch_id)
                .order_by(r.c.meter_id, r.c.seq)
            ).all()
        header = wire_batch.decode_header(bytes(row.header))
        return row.epoch, Evidence(
            header,
            bytes(row.signature),
            tuple((bytes(x.raw), bytes(x.signature)) for x in readings),
        )

    def pending(self) -> list[int]:
        """Pending batches in epoch order, up to the first `held` one (a failed feeder
        balance): the chain mints each meter's export since its last mint, so a later
        batch would mint the held epoch's energy too."""
        b = schema.batches
        with self.store.engine.connect() as c:
            held = c.execute(select(func.min(b.c.epoch)).where(b.c.state == "held")).scalar()
            query = select(b.c.id).where(b.c.state == "pending").order_by(b.c.epoch)
            if held is not None:
                query = query.where(b.c.epoch < held)
            return [row.id for row in c.execute(query)]

    def _mark(self, batch_id: int, **values: object) -> None:
        b = schema.batches
        with self.store.engine.begin() as c:
            attempts = c.execute(select(b.c.attempts).where(b.c.id == batch_id)).scalar_one()
            c.execute(update(b).where(b.c.id == batch_id).values(attempts=attempts + 1, **values))

    def submit_one(self, client: httpx.Client, batch_id: int) -> str:
        """One batch through the protocol; its new state (pending on any failure)."""
        epoch, evidence = self.evidence(batch_id)
        headers = {"Authorization": f"Bearer {self.token}"}
        body = {
            "epoch": epoch,
            "header": wire_batch.encode_header(evidence.header).hex(),
            "hub_signature": evidence.hub_signature.hex(),
            "readings": [[raw.hex(), sig.hex()] for raw, sig in evidence.readings],
        }
        try:
            answer = client.post("/api/v1/hub/batches", json=body, headers=headers)
            if answer.status_code == 200 and answer.json()["state"] == "sign":
                oracle_key = Keypair.from_seed(bytes(self.key))
                signatures = []
                for encoded in answer.json()["messages"]:
                    message = Message.from_bytes(base64.b64decode(encoded))
                    hub_check(message, evidence)
                    signatures.append(
                        base64.b64encode(bytes(oracle_key.sign_message(bytes(message)))).decode()
                    )
                answer = client.post(
                    f"/api/v1/hub/batches/{epoch}/signatures",
                    json={"signatures": signatures},
                    headers=headers,
                )
        except Refused as err:  # the platform proposed something this hub will not sign
            self._mark(batch_id, state="refused", last_error=f"hub_refused:{err.code}")
            return "refused"
        except httpx.HTTPError as err:
            self._mark(batch_id, last_error=f"unreachable:{type(err).__name__}")
            return "pending"
        if answer.status_code == 200 and answer.json()["state"] == "done":
            txs = answer.json()["transactions"]
            self._mark(
                batch_id,
                state="submitted",
                chain_txs=json.dumps(txs),
                submitted_ref=txs[-1] if txs else None,
                last_error=None,
            )
            return "submitted"
        try:
            code = str(answer.json().get("code", answer.status_code))
            detail = str(answer.json().get("message", ""))
        except ValueError:
            code, detail = str(answer.status_code), ""
        if answer.status_code in (400, 403, 422):
            self._mark(batch_id, state="refused", last_error=f"platform_refused:{code}")
            log.warning("batch %s refused by the platform: %s %s", batch_id, code, detail[:200])
            return "refused"
        self._mark(batch_id, last_error=f"platform:{code}")  # 5xx, 409 stale: retry
        return "pending"

    def run_once(self) -> dict[str, int]:
        """Submit every pending batch in epoch order, stopping at the first that fails."""
        counts = {"submitted": 0, "refused": 0, "pending": 0}
        with httpx.Client(base_url=self.platform_url, timeout=self.timeout) as client:
            for batch_id in self.pending():
                state = self.submit_one(client, batch_id)
                counts[state] += 1
                if state == "pending":
                    break  # keep epoch order: retry from here next time
        return counts
