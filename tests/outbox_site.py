"""A hub and the platform served over real HTTP in this process, for the outbox's tests and
the others that need a hub's batches co-signed (test_metrics, test_retention): the
constants, the server, and readings fed through the hub's rules. The fixture `served_hub`
(tests/conftest.py) wires them."""

from __future__ import annotations

import threading
import time

import uvicorn
from nacl.signing import SigningKey
from services import free_port

from gridtokenx.api.app import create_app
from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.rules import RuleConfig
from gridtokenx.hub.store import HubStore
from gridtokenx.services.site import Platform
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic

NOW = 1_767_225_600
METERS = {f"m{k}": SigningKey(bytes([k + 1]) * 32) for k in range(3)}
ADMIN, HUB_TOKEN = "admin-token-" + "x" * 20, "hub-token-" + "y" * 20


class Server:
    """The platform served over real HTTP on 127.0.0.1, in this process."""

    def __init__(self, platform: Platform) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            create_app(platform, ADMIN), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def feed(store: HubStore, seqs: range, received_at: int) -> None:
    hub = Ingestor(store, RuleConfig(), clock=lambda: received_at)
    messages = []
    for seq in seqs:
        for meter_id, key in METERS.items():
            r = Reading(
                meter_id,
                seq,
                NOW - 3600 + seq * 900,
                100 + seq,
                1_000 * seq,
                900,
                2300,
                0,
                1000,
                5000,
            )
            messages.append(
                (reading_topic(meter_id), envelope.seal(encode(r), READING_DOMAIN, key))
            )
    assert all(d.accepted for d in hub.ingest(messages))
