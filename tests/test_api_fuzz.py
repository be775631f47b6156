"""A bounded schemathesis run over the platform's OpenAPI schema: whatever the input, no
endpoint answers with a 5xx."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from gridtokenx.accounts import Accounts
from gridtokenx.api.app import create_app
from gridtokenx.market.config import NO_BREAKER, MarketConfig
from gridtokenx.service import Platform
from gridtokenx.trading import Trading

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
_app = create_app(
    _platform,
    "admin-" + "f" * 30,
    Trading(_platform, MarketConfig(breaker_bps=NO_BREAKER), 900.0),
    Accounts(_platform.books, b"f" * 32),
    limits_per_minute=(10**9, 10**9),  # fuzz deep, not the rate limiter
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_endpoint_answers_5xx(case: schemathesis.Case) -> None:
    response = case.call()
    case.validate_response(response, checks=(not_a_server_error,))
