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
    names: set[str] = set()
    for path in directory.rglob("*.py"):
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
