"""A bounded schemathesis run over the platform's OpenAPI document with every check: no 5xx,
every status and content type documented, answers match their schemas, valid requests are
accepted and invalid ones rejected. It runs as a signed-in admin (who may also trade), so it
reaches past the token checks."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from gridtokenx.accounts import Accounts
from gridtokenx.api.app import create_app
from gridtokenx.keynames import user_key
from gridtokenx.market.config import NO_BREAKER, MarketConfig
from gridtokenx.services.site import Platform
from gridtokenx.services.trading import Trading

_data = Path(tempfile.mkdtemp(prefix="gtx-fuzz-"))
_saved = os.environ.get("GTX_KEYSTORE_KEY")
os.environ["GTX_KEYSTORE_KEY"] = os.urandom(32).hex()  # only while the platform opens
try:
    _platform = Platform(_data)
finally:
    if _saved is None:
        del os.environ["GTX_KEYSTORE_KEY"]
    else:
        os.environ["GTX_KEYSTORE_KEY"] = _saved
_accounts = Accounts(_platform.books, b"f" * 32)
_app = create_app(
    _platform,
    "admin-" + "f" * 30,
    Trading(_platform, MarketConfig(breaker_bps=NO_BREAKER), 900.0),
    _accounts,
    limits_per_minute=(10**9, 10**9),  # fuzz deep, not the rate limiter
)
_wallet = _platform.keys.ensure(user_key("fuzz-admin")).pubkey()
_accounts.register("fuzz@example.org", "correct horse 1", "admin", _wallet, user_id="fuzz-admin")
_platform.dep.open_wallet(_wallet)
_platform.dep.top_up(_wallet, 10**12, "fuzz")
AUTH = {
    "Authorization": f"Bearer {_accounts.login('fuzz@example.org', 'correct horse 1').access_token}"
}

# A schema cannot say every rule: a base58 string that is not 32 bytes, a price outside the
# band an admin set at run time, more than the wallet holds. Such refusals of schema-valid
# requests are 422 with their own code (409 when they clash with state), so 422 counts as
# an answer to valid data too; every other check runs as shipped.
CONFIG = SchemathesisConfig.from_str(
    """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"""
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app, config=CONFIG)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_contract(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH)
