"""docker-compose.yml describes the production topology, and `docker compose config`
validates it where Docker Compose exists."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_has_the_production_topology() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"mosquitto", "postgres", "redis", "solana", "hub", "platform"} <= set(services)
    assert services["hub"]["environment"]["HUB_PLATFORM_URL"] == "http://platform:8090"
    assert services["platform"]["environment"]["SOLANA_RPC_URL"].startswith("http://solana")
    for name in ("hub", "platform"):
        assert services[name]["command"][0] in ("gridtokenx", "gridtokenx-hub")
    # no secret is written in the file itself
    text = (ROOT / "docker-compose.yml").read_text().lower()
    assert "password:" not in text.replace("postgres_password", "")
    assert (ROOT / "Dockerfile").exists()


def test_docker_compose_config_validates() -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "compose", "version"], capture_output=True).returncode
    ):
        pytest.skip("Docker Compose is not installed here (docker compose config needs it)")
    secrets = ROOT / "secrets"
    made = not secrets.exists()
    secrets.mkdir(exist_ok=True)
    for name in ("postgres_password.txt", "platform.env", "hub.env"):
        (secrets / name).touch()
    try:
        done = subprocess.run(
            [docker, "compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    finally:
        if made:
            shutil.rmtree(secrets)
