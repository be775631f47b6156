"""The hub's command groups share one `--database` option, one way to open the store and
one coded error (gridtokenx/hub/cli_common.py): the same messages and exit code from each."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gridtokenx.hub.cli import app

NOWHERE = "postgresql+psycopg://nobody@127.0.0.1:1/none"  # no server listens on port 1


def test_an_unreachable_database_is_one_message_in_every_group() -> None:
    runner = CliRunner()
    for args in (["feeder", "show"], ["firmware", "list"], ["feeder", "release", "7"]):
        done = runner.invoke(app, [*args, "--database", NOWHERE])
        assert done.exit_code == 2, (args, done.output)
        assert done.stderr.startswith(f"error: cannot open the hub database {NOWHERE}: "), args
        assert "Traceback" not in done.output


def test_a_coded_refusal_is_code_and_message(tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    bad_key = runner.invoke(
        app,
        ["firmware", "publish", str(tmp_path / "u.gtxu"), "--release-key", "zz", "--database", url],
    )
    assert (bad_key.exit_code, bad_key.stderr) == (
        2,
        "error: invalid_release_key: the release key is 64 hex characters (32 bytes)\n",
    )
    no_meter = runner.invoke(app, ["feeder", "set", "nobody", "--database", url])
    assert (no_meter.exit_code, no_meter.stderr, no_meter.stdout) == (
        2,
        "error: unknown_meter: meter 'nobody' is not registered\n",
        "",
    )
