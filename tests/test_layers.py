"""The dependency direction of docs/architecture.md, enforced.

`sipua/sip/` is the sans-IO core: it may import only the standard library and itself, and
never reads a clock or module-level randomness. Lower layers never import higher ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sipua"

# Standard-library modules the core may not use: I/O, clocks and global randomness.
CORE_BANNED_STDLIB = {
    "socket",
    "ssl",
    "asyncio",
    "select",
    "selectors",
    "time",
    "random",
    "logging",
}
CORE_BANNED_PREFIXES = ("trio", "OpenSSL", "cryptography", "dns", "structlog")

# Which sipua layers each layer must not import (lower layers never import higher ones).
LAYER_FORBIDDEN = {
    "sip": (
        "sipua.tls",
        "sipua.transport",
        "sipua.locate",
        "sipua.ua",
        "sipua.cli",
        "sipua.commands",
        "sipua.settings",
        "sipua.logs",
        "sipua.storage",
    ),
    "tls": (
        "sipua.transport",
        "sipua.locate",
        "sipua.ua",
        "sipua.cli",
        "sipua.commands",
        "sipua.provision",
    ),
    "provision": ("sipua.transport", "sipua.locate", "sipua.ua", "sipua.cli", "sipua.commands"),
    "transport": ("sipua.ua", "sipua.cli", "sipua.commands", "sipua.locate"),
    "locate": ("sipua.ua", "sipua.cli", "sipua.commands", "sipua.transport", "sipua.tls"),
    "ua": ("sipua.cli", "sipua.commands"),
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(LAYER_FORBIDDEN))
def test_layer_does_not_import_higher_layers(layer: str) -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in _modules(layer)
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in LAYER_FORBIDDEN[layer])
    ]
    assert offenders == []


def test_core_is_sans_io() -> None:
    offenders = []
    for path in _modules("sip"):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in CORE_BANNED_STDLIB or top.startswith(CORE_BANNED_PREFIXES):
                offenders.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert offenders == []


def test_the_checker_sees_a_banned_import(tmp_path: Path) -> None:
    # Guards the guard: a file importing trio must be reported by _imports.
    bad = tmp_path / "bad.py"
    bad.write_text("import trio\nfrom time import monotonic\n")
    assert _imports(bad) == ["trio", "time"]
