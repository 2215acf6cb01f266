"""The interop matrix (docs/interop.md), written from a test run's results, never by hand.

`tests/interop/conftest.py` records the outcome of every interop test; at the end of a run with
`SIPUA_INTEROP_MATRIX=PATH` set (`scripts/test` sets it when it runs the whole suite) this module
writes the peers with the versions they report and, per test module (its docstring's first line
as the heading), each scenario (the test's name, parameters included) with its result. Durations
are left out on purpose: the file changes only when a result or a version does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.interop.peers import PeerError, built_peer

VERSION_TIMEOUT_S: Final = 10.0
_RESULT: Final = {"passed": "✅ passed", "failed": "❌ failed", "skipped": "⏭ skipped"}


@dataclass(frozen=True, slots=True)
class Scenario:
    """One interop test's outcome."""

    module: str
    heading: str
    name: str
    outcome: str


def _first_line(command: Sequence[str], pattern: str) -> str:
    try:
        proc = subprocess.run(
            list(command), capture_output=True, text=True, timeout=VERSION_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    found = re.search(pattern, proc.stdout + proc.stderr)
    return found.group(1) if found else "unknown"


def _tool(name: str, *args: str, pattern: str) -> Callable[[], str]:
    def version() -> str:
        if shutil.which(name) is None:
            return "not installed"
        return _first_line([name, *args], pattern)

    return version


def _built(name: str, binary: str, *args: str, pattern: str) -> Callable[[], str]:
    def version() -> str:
        try:
            prefix = built_peer(name)
        except PeerError:
            return "not built"
        return _first_line([str(prefix / binary), *args], pattern)

    return version


#: Each peer and how to ask it for its version.
PEER_VERSIONS: Final[Mapping[str, Callable[[], str]]] = {
    "Kamailio": _tool("kamailio", "-v", pattern=r"version: kamailio (\S+)"),
    "Asterisk": _built("asterisk", "sbin/asterisk", "-V", pattern=r"Asterisk (\S+)"),
    "pjsua (pjproject)": _built(
        "pjsua", "bin/pjsua", "--version", pattern=r"PJ_VERSION\s*:\s*(\S+)"
    ),
    "SIPp": _tool("sipp", "-v", pattern=r"SIPp v?([\w.]+)"),
    "baresip": _tool("baresip", "-h", pattern=r"baresip v?(\S+)"),
    "OpenSSL": _tool("openssl", "version", pattern=r"OpenSSL (\S+)"),
}


def render(scenarios: Sequence[Scenario], versions: Mapping[str, str]) -> str:
    """The markdown of docs/interop.md."""
    lines = [
        "# Interop matrix",
        "",
        "Written by the interop test run (`SIPUA_INTEROP_MATRIX=docs/interop.md`, set by",
        "`scripts/test` when it runs the whole suite) from its results; do not edit by hand.",
        "Every scenario is a test in `tests/interop/` against the real peer on 127.0.0.1.",
        "",
        "| peer | version |",
        "|---|---|",
        *(f"| {peer} | {version} |" for peer, version in versions.items()),
    ]
    passed = sum(s.outcome == "passed" for s in scenarios)
    lines += ["", f"{passed} of {len(scenarios)} scenarios passed.", ""]
    modules: dict[str, list[Scenario]] = {}
    for scenario in scenarios:
        modules.setdefault(scenario.module, []).append(scenario)
    for module, items in sorted(modules.items()):
        lines += [f"## {items[0].heading}", "", f"`{module}`", "", "| scenario | result |"]
        lines.append("|---|---|")
        for item in sorted(items, key=lambda s: s.name):
            lines.append(f"| {item.name} | {_RESULT.get(item.outcome, item.outcome)} |")
        lines.append("")
    return "\n".join(lines)


def write(path: Path, scenarios: Sequence[Scenario]) -> None:
    """Asks every peer for its version and writes the matrix to `path`."""
    versions = {peer: version() for peer, version in PEER_VERSIONS.items()}
    path.write_text(render(scenarios, versions))


def scenario_name(test_name: str) -> str:
    """`test_call_from_x[rewrite-contact-yes]` -> `call from x [rewrite-contact-yes]`."""
    base, _, params = test_name.partition("[")
    words = base.removeprefix("test_").replace("_", " ")
    return f"{words} [{params}" if params else words
