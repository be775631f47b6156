"""`gridtokenx audit` and `gridtokenx retention` open a site the same way (cli/audit.py):
the same refusal, exit 2, for a directory without a deployment or a keystore that does not
open; nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridtokenx.cli import app

COMMANDS = (["audit"], ["retention", "--days", "30"])


@pytest.mark.parametrize("command", COMMANDS)
def test_no_deployment_is_a_message(command: list[str], tmp_path: Path) -> None:
    done = CliRunner().invoke(app, [*command, "--data", str(tmp_path)])
    assert (done.exit_code, done.stdout) == (2, "")
    assert (
        done.stderr == f"error: no ledger deployment in {tmp_path} (deployment.json is missing)\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_a_keystore_without_its_secret_is_a_message(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GTX_KEYSTORE_KEY", "GTX_KEYSTORE_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "deployment.json").write_text("{}")
    done = CliRunner().invoke(app, [*command, "--data", str(tmp_path)])
    assert (done.exit_code, done.stdout) == (2, "")
    assert done.stderr == (
        "error: no_secret: set GTX_KEYSTORE_PASSPHRASE (or GTX_KEYSTORE_KEY) to open the keystore\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deployment.json"]
