"""The configurable KYC step (`platform run --kyc-url URL`): an adapter that asks a KYC
service about a new sign-up and says whether it passed.

The service gets `POST URL` with `{"user_id", "email", "wallet"}` and answers 200 with
`{"passed": true|false, "reference": "..."}`. A sign-up whose check passes is approved at
once (its accounts thawed through the same co-signed approval as an operator's, recorded
`by kyc`, and audited `kyc.user_approve`); any other answer, or no answer, leaves it pending
for an operator (audited `kyc.pending` with the reason). The whole exchange has one
deadline (`timeout_s`, not per read), the answer a size cap, and at most
`KYC_CONCURRENCY` checks run at once (an unauthenticated sign-up cannot hold the workers).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

KYC_TIMEOUT_S = 10.0  # the whole exchange: connect, send, every byte of the answer
KYC_MAX_BYTES = 16_384  # a longer answer is malformed
KYC_CONCURRENCY = 4  # checks in flight at once; a sign-up beyond them stays pending
_SLOTS = threading.BoundedSemaphore(KYC_CONCURRENCY)


@dataclass(frozen=True)
class KycResult:
    passed: bool
    # "passed", "kyc_failed", "kyc_unavailable", "kyc_malformed", "kyc_busy"
    reason: str
    reference: str = ""


@dataclass(frozen=True)
class KycCheck:
    url: str
    timeout_s: float = KYC_TIMEOUT_S
    max_bytes: int = KYC_MAX_BYTES

    def check(self, user_id: str, email: str, wallet: str) -> KycResult:
        """The service's verdict within `timeout_s` in all (a trickling server included);
        no answer in time, too long an answer, or too many checks in flight: not passed."""
        if not _SLOTS.acquire(blocking=False):
            return KycResult(False, "kyc_busy")
        body = {"user_id": user_id, "email": email, "wallet": wallet}
        deadline = time.monotonic() + self.timeout_s
        box: list[KycResult] = []

        def run() -> None:
            try:
                box.append(self._ask(body, deadline))
            except Exception:  # any failure of the exchange: no verdict
                box.append(KycResult(False, "kyc_unavailable"))
            finally:
                _SLOTS.release()

        worker = threading.Thread(target=run, name="kyc-check", daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        return box[0] if box else KycResult(False, "kyc_unavailable", "no answer in time")

    def _ask(self, body: dict[str, str], deadline: float) -> KycResult:
        """One POST, its answer read in chunks up to `max_bytes` and until `deadline`
        (the thread stops reading at either; redirects are not followed)."""
        try:
            with (
                httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client,
                client.stream("POST", self.url, json=body) as response,
            ):
                if response.status_code != 200:
                    return KycResult(False, "kyc_unavailable", f"HTTP {response.status_code}")
                raw = bytearray()
                for chunk in response.iter_bytes():
                    raw += chunk
                    if len(raw) > self.max_bytes:
                        return KycResult(False, "kyc_malformed", "answer too long")
                    if time.monotonic() > deadline:
                        return KycResult(False, "kyc_unavailable", "no answer in time")
        except httpx.HTTPError:
            return KycResult(False, "kyc_unavailable")
        try:
            doc: Any = json.loads(bytes(raw))
        except ValueError:
            return KycResult(False, "kyc_malformed")
        if not isinstance(doc, dict) or not isinstance(doc.get("passed"), bool):
            return KycResult(False, "kyc_malformed")
        reference = str(doc.get("reference", ""))[:200]
        if doc["passed"] is not True:
            return KycResult(False, "kyc_failed", reference)
        return KycResult(True, "passed", reference)
