"""The configurable KYC step (`platform run --kyc-url URL`): an adapter that asks a KYC
service about a new sign-up and says whether it passed.

The service gets `POST URL` with `{"user_id", "email", "wallet"}` and answers 200 with
`{"passed": true|false, "reference": "..."}`. A sign-up whose check passes is approved at
once (its accounts thawed through the same co-signed approval as an operator's, recorded
`by kyc`, and audited `kyc.user_approve`); any other answer, or no answer, leaves it pending
for an operator (audited `kyc.pending` with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

KYC_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class KycResult:
    passed: bool
    reason: str  # "passed", "kyc_failed", "kyc_unavailable", "kyc_malformed"
    reference: str = ""


@dataclass(frozen=True)
class KycCheck:
    url: str
    timeout_s: float = KYC_TIMEOUT_S

    def check(self, user_id: str, email: str, wallet: str) -> KycResult:
        body = {"user_id": user_id, "email": email, "wallet": wallet}
        try:
            response = httpx.post(self.url, json=body, timeout=self.timeout_s)
        except httpx.HTTPError:
            return KycResult(False, "kyc_unavailable")
        if response.status_code != 200:
            return KycResult(False, "kyc_unavailable", f"HTTP {response.status_code}")
        try:
            doc: Any = response.json()
        except ValueError:
            return KycResult(False, "kyc_malformed")
        if not isinstance(doc, dict) or not isinstance(doc.get("passed"), bool):
            return KycResult(False, "kyc_malformed")
        reference = str(doc.get("reference", ""))[:200]
        if doc["passed"] is not True:
            return KycResult(False, "kyc_failed", reference)
        return KycResult(True, "passed", reference)
