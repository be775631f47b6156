"""docker-compose.yml, the production topology: validated by Debian's `docker-compose config`
(installed by the Makefile as root; a skip locally and a failure in CI without it), its
mounts present, the Caddyfile validated by Caddy when installed, Prometheus scraping what
the stack runs, and Grafana provisioned."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from services import unavailable

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
SECRET_FILES = (
    "postgres_password.txt",
    "grafana_admin_password.txt",
    "platform.env",
    "hub.env",
)


def compose() -> dict:  # type: ignore[type-arg]
    doc: dict = yaml.safe_load(COMPOSE.read_text())  # type: ignore[type-arg]
    return doc


def test_compose_has_the_production_topology() -> None:
    services = compose()["services"]
    assert set(services) == {
        "mosquitto",
        "postgres",
        "redis",
        "solana",
        "platform-1",
        "platform-2",
        "hub",
        "proxy",
        "prometheus",
        "grafana",
    }
    for name in ("platform-1", "platform-2"):
        platform = services[name]
        assert platform["command"][:3] == ["gridtokenx", "platform", "run"]
        # one front each: the two share the data volume, each core names its own sockets
        assert platform["command"][-2:] == ["--fronts", "1"]
        assert platform["environment"]["SOLANA_RPC_URL"] == "http://solana:8899"
        assert platform["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert "ports" not in platform  # reached through the TLS proxy only
    # both campaign to be the market sequencer (one is elected; the other takes over)
    assert services["platform-1"]["command"] == services["platform-2"]["command"]
    assert "--no-scheduler" not in services["platform-2"]["command"]
    assert services["hub"]["environment"]["HUB_PLATFORM_URL"] == "http://proxy:8000"
    assert services["hub"]["command"][0] == "gridtokenx-hub"
    assert services["proxy"]["ports"] == ["80:80", "443:443"]
    assert "./deploy/mosquitto:/mosquitto/config:ro" in services["mosquitto"]["volumes"]
    assert services["mosquitto"]["ports"] == ["1883:1883", "8883:8883"]
    # no secret is written in the file itself: they are files in ./secrets/
    for name, service in services.items():
        for key in service.get("environment", {}):
            if re.search("PASSWORD|TOKEN|PASSPHRASE|SECRET|KEY", key):
                assert key.endswith("_FILE"), f"{name} sets {key} in docker-compose.yml"
        for env_file in service.get("env_file", []):
            assert env_file.startswith("./secrets/")
    assert set(compose()["secrets"]) == {"postgres_password", "grafana_admin_password"}
    assert (ROOT / "Dockerfile").exists()


def test_every_mounted_file_of_ours_exists() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            # deploy/mosquitto/ is the firmware's (broker configuration and ACL)
            if source.startswith("./") and not source.startswith("./deploy/mosquitto"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        unavailable("docker-compose is not installed (make install installs Debian's as root)")
        return
    # a copy of the repository's compose file with the secret files it names, empty
    (tmp_path / "secrets").mkdir()
    for name in SECRET_FILES:
        (tmp_path / "secrets" / name).touch()
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    (tmp_path / "Dockerfile").touch()
    done = subprocess.run(
        [docker_compose, "config", "-q"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    resolved = subprocess.run(
        [docker_compose, "config", "--services"], cwd=tmp_path, capture_output=True, text=True
    )
    assert sorted(resolved.stdout.split()) == sorted(compose()["services"])
    # and a broken file is refused, so the check can fail
    broken = COMPOSE.read_text().replace("    image: redis:7\n", "    image: [redis, 7]\n")
    (tmp_path / "docker-compose.yml").write_text(broken)
    refused = subprocess.run(
        [docker_compose, "config", "-q"], cwd=tmp_path, capture_output=True, text=True
    )
    assert refused.returncode != 0


def test_the_caddyfile_validates(tmp_path: Path) -> None:
    caddy = shutil.which("caddy")
    if caddy is None:
        unavailable("caddy is not installed (make install installs Debian's as root)")
        return
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    done = subprocess.run(
        [caddy, "validate", "--adapter", "caddyfile", "--config", "deploy/caddy/Caddyfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Valid configuration" in done.stdout + done.stderr


def test_prometheus_scrapes_the_services_of_the_stack() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert targets == {"platform": ["platform-1:8090", "platform-2:8090"], "hub": ["hub:8080"]}
    services = compose()["services"]
    for name, port in (t.split(":") for ts in targets.values() for t in ts):
        assert port in services[name]["expose"]


def test_grafana_is_provisioned_with_prometheus_and_the_dashboards() -> None:
    base = ROOT / "deploy/grafana"
    source = yaml.safe_load((base / "provisioning/datasources/prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((base / "provisioning/dashboards/gridtokenx.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert sorted(p.name for p in (base / "dashboards").glob("*.json")) == ["gridtokenx.json"]
