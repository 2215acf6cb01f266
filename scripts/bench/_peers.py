"""Shared helpers of the benchmarks: a Kamailio sized for load, and running `sipua load`.

`tests/interop/peers.Kamailio` starts Kamailio with 8 MB of private (pkg) memory. That holds
about 2,600 htable users and a few thousand connections; beyond it Kamailio fails to start
("could not allocate private memory from pkg pool"). `BenchKamailio` raises it.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.interop.peers import Kamailio, KamailioPorts, PeerError  # noqa: E402

PASSWORD = "load-secret"
#: Users the htable can be given at start with `BenchKamailio` (pkg memory bound).
MAX_USERS = 2500


class BenchKamailio(Kamailio):
    """Kamailio with more private memory per process (-M) than the test default."""

    pkg_mb = 64

    def argv(self) -> list[str]:
        argv = super().argv()
        argv[argv.index("-M") + 1] = str(self.pkg_mb)
        return argv


@contextlib.contextmanager
def bench_kamailio(
    run_dir: Path, *, tcp_children: int = 1, **options: Any
) -> Iterator[BenchKamailio]:
    """A started `BenchKamailio`, retried with fresh ports (three attempts): ports are picked
    free but not held, and on a shared machine one can be taken before Kamailio binds it.
    `tcp_children`: Kamailio's TCP/TLS worker processes (the project's config has one)."""
    for attempt in range(3):
        ports = KamailioPorts.pick()
        while len({ports.tcp, ports.tls, ports.mtls}) < 3:  # picked free, one at a time
            ports = KamailioPorts.pick()
        kam = BenchKamailio(run_dir / f"try-{attempt}", ports=ports, **options)
        if tcp_children != 1:
            config = kam.config_path.read_text()
            if "tcp_children=1" not in config:
                raise RuntimeError("the Kamailio config no longer says tcp_children=1")
            kam.config_path.write_text(
                config.replace("tcp_children=1", f"tcp_children={tcp_children}")
            )
        try:
            kam.start()
        except PeerError:
            kam.stop()
            if attempt == 2:
                raise
            continue
        try:
            yield kam
        finally:
            kam.stop()
        return


def users(count: int) -> dict[str, str]:
    """load0000 ... with one password."""
    return {f"load{i:04d}": PASSWORD for i in range(min(count, MAX_USERS))}


def sipua_load(kam: Kamailio, work: Path, *extra: str, timeout: float = 600) -> dict[str, Any]:
    """Runs `sipua load` against `kam` and returns its JSON report."""
    (work / "pw").write_text(PASSWORD + "\n")
    report = work / "report.json"
    report.unlink(missing_ok=True)
    last = min(len(kam.users), MAX_USERS) - 1
    argv = [
        sys.executable, "-m", "sipua", "load", "--users", f"load{{0000..{last:04d}}}",
        "--domain", kam.domain, "--password-file", str(work / "pw"),
        "--proxy", f"{kam.ip}:{kam.tls_port}", "--trusted-cert", str(kam.ca_pem),
        "--ca-type", "custom", "--data-dir", str(work / "data"), "--progress", "0",
        "--json", str(report), *extra,
    ]  # fmt: skip
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )
    if not report.exists():
        raise RuntimeError(f"sipua load wrote no report:\n{result.stdout}\n{result.stderr}")
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def spread(values: list[float]) -> str:
    """median (min-max) of a list."""
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def workdir() -> Path:
    """A fresh temporary directory for one bench run."""
    return Path(tempfile.mkdtemp(prefix="sipua-bench-"))
