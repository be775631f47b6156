"""No 5xx from the hub's web app on any input (issue 13, item 6): a bounded schemathesis
run over its OpenAPI schema, and a hypothesis test putting any value (integers far beyond
64 bits, odd text) into every route's path, with and without the installer token."""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import schemathesis
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from schemathesis.checks import not_a_server_error

from gridtokenx.hub import batches
from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.rules import MeterStatus, RuleConfig
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.hub.web import HubContext, create_app
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic

TOKEN = "fuzz-installer-token"
_key = SigningKey(bytes([3]) * 32)
_store = HubStore(connect(f"sqlite:///{Path(tempfile.mkdtemp(prefix='gtx-hub-fuzz-'))}/hub.db"))
_store.add_meter("m1", bytes(_key.verify_key), household="H1", status=MeterStatus.APPROVED)
_now = int(time.time())
Ingestor(_store, RuleConfig(), clock=lambda: _now).ingest(
    [
        (
            reading_topic("m1"),
            envelope.seal(
                encode(
                    Reading("m1", k, _now - 900 * (5 - k), 100 * k, 0, 900, 2300, 1, 1000, 5000)
                ),
                READING_DOMAIN,
                _key,
            ),
        )
        for k in range(1, 5)
    ]
)
batches.build(_store, "hub-fuzz", 1, _now + 1, SigningKey.generate())
_app = create_app(HubContext(_store, "hub-fuzz", installer_token=TOKEN))
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_hub_route_answers_5xx(case: schemathesis.Case) -> None:
    case.validate_response(case.call(), checks=(not_a_server_error,))
    installer = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    case.validate_response(installer, checks=(not_a_server_error,))


_client = TestClient(_app, raise_server_exceptions=False)
_routes = [(r.path, sorted(r.methods)) for r in _app.routes if isinstance(r, APIRoute)]
_value = st.one_of(
    st.integers(-(2**80), 2**80).map(str),  # beyond int64 both ways: the proof's old 500
    st.sampled_from(["m1", "0", "9223372036854775807", "9223372036854775808", "%00", ".."]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/?#"), max_size=80),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(_routes), st.lists(_value, min_size=3, max_size=3), st.booleans())
@example(("/api/proof/{meter_id}/{seq}", ["GET"]), ["m1", str(2**63), ""], True)  # the finding
def test_any_path_value_on_any_route_is_not_a_5xx(
    route: tuple[str, list[str]], values: list[str], as_installer: bool
) -> None:
    path, methods = route
    for name, value in zip(re.findall(r"\{(\w+)\}", path), values, strict=False):
        path = path.replace("{" + name + "}", quote(value, safe=""))
    headers = {"Authorization": f"Bearer {TOKEN}"} if as_installer else {}
    for method in methods:
        response = _client.request(method, path, headers=headers)
        assert response.status_code < 500, (method, path, response.text)
        if response.status_code >= 400:
            assert set(response.json()) == {"code", "message"}, response.text
