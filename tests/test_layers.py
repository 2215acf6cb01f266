"""The dependency direction of docs/architecture.md, enforced.

`sipua/sip/` is the sans-IO core: it may import only the standard library and itself, and
never reads a clock or module-level randomness. Lower layers never import higher ones. The UA
and the load engine reach the network through the transport layer, with one named exception:
the load engine's `sipua.load.raw_tls` (a TLS client on a raw non-blocking socket, for speed).
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
        "sipua.load",
    ),
    "tls": (
        # The TLS layer knows no SIP, not even the core's URI and address helpers: callers
        # name their peers (`open_tls_stream(peer=...)`).
        "sipua.sip",
        "sipua.transport",
        "sipua.locate",
        "sipua.ua",
        "sipua.load",
        "sipua.cli",
        "sipua.commands",
        "sipua.provision",
    ),
    "provision": (
        "sipua.transport",
        "sipua.locate",
        "sipua.ua",
        "sipua.load",
        "sipua.cli",
        "sipua.commands",
    ),
    "transport": ("sipua.ua", "sipua.load", "sipua.cli", "sipua.commands", "sipua.locate"),
    "locate": (
        "sipua.ua",
        "sipua.load",
        "sipua.cli",
        "sipua.commands",
        "sipua.transport",
        "sipua.tls",
    ),
    "ua": ("sipua.load", "sipua.cli", "sipua.commands"),
    "load": ("sipua.ua", "sipua.cli", "sipua.commands"),
}

# What skips the transport layer: sockets and readiness waits, and the TLS engine itself.
PAST_TRANSPORT_IMPORTS = (
    "socket",
    "ssl",
    "select",
    "selectors",
    "OpenSSL",
    "trio.socket",
    "sipua.tls.connection.engine",
)
PAST_TRANSPORT_ATTRIBUTES = (
    "trio.socket",
    "trio.lowlevel.wait_readable",
    "trio.lowlevel.wait_writable",
    "trio.lowlevel.notify_closing",
)
# The layers above the transport, and the one module allowed past it.
ABOVE_TRANSPORT = ("ua", "load")
RAW_INTERFACE = PACKAGE / "load" / "raw_tls.py"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _past_transport(path: Path) -> list[str]:
    """What in `path` reaches the network without the transport layer (runtime code only)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = [
        name
        for name in _imports(path)
        if any(name == p or name.startswith(p + ".") for p in PAST_TRANSPORT_IMPORTS)
        # `if TYPE_CHECKING:` imports of OpenSSL types are annotations, not I/O.
        and name not in _type_checking_imports(tree)
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted is not None and any(
                dotted == p or dotted.startswith(p + ".") for p in PAST_TRANSPORT_ATTRIBUTES
            ):
                found.append(dotted)
    return found


def _type_checking_imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _dotted(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            for inner in node.body:
                if isinstance(inner, ast.Import):
                    names.update(alias.name for alias in inner.names)
                elif isinstance(inner, ast.ImportFrom) and inner.module:
                    names.add(inner.module)
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


def test_only_the_load_engines_named_interface_skips_the_transport_layer() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)} uses {name}"
        for layer in ABOVE_TRANSPORT
        for path in _modules(layer)
        if path != RAW_INTERFACE
        for name in _past_transport(path)
    ]
    assert offenders == []
    # The interface exists and is what it claims to be (a renamed file must not pass silently).
    assert "socket" in _past_transport(RAW_INTERFACE)


def test_the_checker_sees_a_raw_socket(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from typing import TYPE_CHECKING\n"
        "import trio\n"
        "if TYPE_CHECKING:\n"
        "    from OpenSSL import SSL\n"
        "from sipua.tls.connection.engine import TlsEngine\n"
        "async def f(s):\n"
        "    await trio.lowlevel.wait_readable(s)\n"
    )
    assert _past_transport(bad) == ["sipua.tls.connection.engine", "trio.lowlevel.wait_readable"]
