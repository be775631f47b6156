"""The repository's rules: no stdlib shadowing, every package installed, hub independence."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORTIONS = ("platform", "gateway-hub", "simulator", "programs")


def test_nothing_top_level_shadows_the_standard_library() -> None:
    for portion in PORTIONS:
        base = ROOT / portion
        if not base.exists():
            continue
        for child in base.iterdir():
            if child.name.startswith((".", "_")) or child.suffix not in ("", ".py"):
                continue
            assert child.stem not in sys.stdlib_module_names, child
    # and from the repository root, `import platform` is still the standard library's
    done = subprocess.run(
        [sys.executable, "-c", "import platform; print(platform.system())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.strip(), done.stderr


def test_every_package_directory_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = dict(config["package-dir"])
    assert set(listed) == set(config["packages"])
    found = {}
    for portion in PORTIONS:
        for init in (ROOT / portion).glob("gridtokenx/**/__init__.py"):
            rel = init.parent.relative_to(ROOT / portion)
            found[".".join(rel.parts)] = str(init.parent.relative_to(ROOT))
    found["gridtokenx"] = "platform/gridtokenx"
    assert found == listed


def imports_of(directory: Path) -> set[str]:
    return imports_of_files(list(directory.rglob("*.py")))


def imports_of_files(paths: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
    return names


def test_gateway_hub_code_never_imports_the_platform() -> None:
    platform_modules = {
        "gridtokenx."
        + ".".join(p.relative_to(ROOT / "platform" / "gridtokenx").with_suffix("").parts)
        for p in (ROOT / "platform" / "gridtokenx").rglob("*.py")
    } | {"gridtokenx.market"}
    for name in imports_of(ROOT / "gateway-hub"):
        assert not any(name == m or name.startswith(m + ".") for m in platform_modules), name


def test_services_and_adapters_import_no_web_framework() -> None:
    base = ROOT / "platform" / "gridtokenx"
    for package in ("services", "adapters"):
        for name in imports_of(base / package):
            assert name.split(".")[0] not in {"fastapi", "starlette"}, (package, name)
            assert not name.startswith("gridtokenx.api"), (package, name)


def test_adapters_import_no_use_case() -> None:
    """Dependencies point inwards: services/ use the adapters, never the other way round."""
    for name in imports_of(ROOT / "platform" / "gridtokenx" / "adapters"):
        assert not name.startswith("gridtokenx.services"), name


def test_the_layers_hold_the_market_modules() -> None:
    """File names say what they hold: the tables, the books, events, rate limits and the
    grid view are adapters; the exchange, the market's use cases, the site and the unit of
    work are services. Nothing of theirs is left at the top level (no shims)."""
    base = ROOT / "platform" / "gridtokenx"
    adapters = {"tables", "books", "auth_tables", "events", "ratelimit", "gridview"}
    services = {"exchange", "trading", "placing", "epochs", "market_base", "site", "uow"}
    services |= {"orders", "suspension"}
    assert {p.stem for p in (base / "adapters").glob("*.py")} >= adapters
    assert {p.stem for p in (base / "services").glob("*.py")} >= services
    for name in adapters | services | {"service"}:
        assert not (base / f"{name}.py").exists(), name
    used_by = {
        path.stem
        for path in (base / "services").glob("*.py")
        if "gridtokenx.services.uow" in imports_of_files([path])
    }
    assert used_by >= {"placing", "epochs", "exchange"}  # placement's flush, the epoch close


# what touches the world: files, processes, the network, databases, clocks, threads, logs
IO_MODULES = {
    "os", "pathlib", "shutil", "tempfile", "glob", "socket", "ssl", "select", "selectors",
    "subprocess", "signal", "threading", "multiprocessing", "concurrent", "asyncio", "time",
    "logging", "sqlite3", "urllib", "http", "sqlalchemy", "psycopg", "alembic", "redis",
    "httpx", "requests", "paho", "amqtt", "serial", "solana", "solders", "spl", "fastapi",
    "starlette", "uvicorn", "typer",
}  # fmt: skip


def test_the_market_engine_imports_no_io() -> None:
    """gridtokenx.market is pure: orders in, outcomes out (its CSV reader parses text it is
    given); it imports nothing that does I/O, and of the platform only the integer units
    and the error hierarchy, which import no I/O either."""
    base = ROOT / "platform" / "gridtokenx"
    market = base / "market"
    pure = {"gridtokenx.units", "gridtokenx.errors"}
    for name in imports_of(market) | imports_of_files([base / "units.py", base / "errors.py"]):
        assert name.split(".")[0] not in IO_MODULES, name
        if name.startswith("gridtokenx"):
            assert name.startswith("gridtokenx.market") or name in pure, name
    for path in [*market.rglob("*.py"), base / "units.py", base / "errors.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"open", "print", "input"}, (path, node.func.id)


def test_only_the_command_line_modules_import_typer() -> None:
    """The platform's commands live in gridtokenx/cli/ (one module per group), the hub's in
    its *cli modules; nothing else parses a command line."""
    found = set()
    for portion in PORTIONS:
        for path in (ROOT / portion).rglob("*.py"):
            if "typer" in {n.split(".")[0] for n in imports_of_files([path])}:
                found.add(str(path.relative_to(ROOT)))
    cli_package = {
        str(p.relative_to(ROOT)) for p in (ROOT / "platform" / "gridtokenx" / "cli").glob("*.py")
    }
    hub = ROOT / "gateway-hub" / "gridtokenx" / "hub"
    hub_cli = {str((hub / f"{n}.py").relative_to(ROOT)) for n in ("cli", "cli_common")}
    hub_cli |= {str(p.relative_to(ROOT)) for p in hub.glob("*_cli.py")}
    hub_cli.add(str((hub / "backupcli.py").relative_to(ROOT)))
    assert found <= cli_package | hub_cli, sorted(found - cli_package - hub_cli)
    assert "platform/gridtokenx/cli/__init__.py" in found  # the rule sees the imports
    assert not (ROOT / "platform" / "gridtokenx" / "cli.py").exists()


def test_no_test_module_imports_another() -> None:
    """What several test modules share lives in tests/conftest.py (fixtures) or a helper
    module beside it (platform_site.py, outbox_site.py, mqtt_auth.py, ...), never in a
    test module: each module's tests are found in one file."""
    tests = ROOT / "tests"
    modules = {p.stem for p in tests.glob("test_*.py")}
    for path in tests.glob("*.py"):
        imported = {n.split(".")[0] for n in imports_of_files([path])}
        assert not imported & modules, (path.name, sorted(imported & modules))


def test_every_data_file_of_a_package_is_installed() -> None:
    """A non-editable install (a wheel, the Docker image) carries only what package-data
    names: each page template, script and migration template is matched by a pattern of its
    package (or of "*"), which setuptools reads relative to the package's directory."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    directories = {name: ROOT / path for name, path in config["package-dir"].items()}
    data = config["package-data"]
    tracked = subprocess.run(
        ["git", "ls-files", *PORTIONS], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    checked = 0
    for rel in tracked:
        path = ROOT / rel
        if path.suffix == ".py" or path.name == "README.md":
            continue
        owners = [n for n, d in directories.items() if d in path.parents]
        assert owners, rel  # a data file outside every package is never installed
        package = max(owners, key=lambda n: len(str(directories[n])))  # the innermost
        base = directories[package]
        patterns = [*data.get("*", []), *data.get(package, [])]
        assert any(path in set(base.glob(p)) for p in patterns), (rel, package)
        checked += 1
    assert checked >= 14  # templates, live.js, the migration templates
