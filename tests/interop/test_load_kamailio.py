"""`sipua load` against the project's Kamailio over real TLS, with digest auth (small counts)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.peers import Kamailio, TestPki

pytestmark = pytest.mark.interop

USERS = {f"load{i:02d}": "load-secret" for i in range(20)}


@pytest.fixture(scope="module")
def registrar(tmp_path_factory: pytest.TempPathFactory, test_pki: TestPki) -> Iterator[Kamailio]:
    with Kamailio(tmp_path_factory.mktemp("kamailio-load"), pki=test_pki, users=USERS) as kam:
        yield kam


def load(kam: Kamailio, tmp_path: Path, *extra: str) -> tuple[int, dict[str, object], str]:
    (tmp_path / "pw").write_text("load-secret\n")
    report = tmp_path / "report.json"
    argv = [
        sys.executable, "-m", "sipua", "load", "--users", "load{00..19}",
        "--domain", kam.domain, "--password-file", str(tmp_path / "pw"),
        "--proxy", f"{kam.ip}:{kam.tls_port}", "--trusted-cert", str(kam.ca_pem),
        "--ca-type", "custom", "--data-dir", str(tmp_path / "data"), "--progress", "0",
        "--json", str(report), *extra,
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)
    document = json.loads(report.read_text()) if report.exists() else {}
    return result.returncode, document, result.stdout + result.stderr


def test_every_account_registers_over_its_own_tls_connection(
    registrar: Kamailio, tmp_path: Path
) -> None:
    code, report, output = load(registrar, tmp_path, "--concurrency", "5")
    assert code == 0, output
    assert report["succeeded"] == len(USERS)
    assert report["failed"] == {"total": 0, "by_reason": {}}
    assert report["mode"] == "connection-per-account"
    assert float(report["registrations_per_s"]) > 0  # type: ignore[arg-type]


def test_reuse_connection_registers_more_than_there_are_accounts(
    registrar: Kamailio, tmp_path: Path
) -> None:
    code, report, output = load(registrar, tmp_path, "--reuse-connection", "--count", "60")
    assert code == 0, output
    assert report["succeeded"] == 60
    assert report["mode"] == "reuse-connection"


def test_hold_keeps_every_account_registered(registrar: Kamailio, tmp_path: Path) -> None:
    code, report, output = load(registrar, tmp_path, "--hold", "1", "--rate", "200")
    assert code == 0, output
    assert report["held"] == len(USERS)
    assert report["rss_per_held_kib"] is not None


def test_wrong_password_is_counted_as_auth(registrar: Kamailio, tmp_path: Path) -> None:
    (tmp_path / "accounts.csv").write_text("username,password\nload00,wrong\nload01,\n")
    (tmp_path / "pw").write_text("load-secret\n")
    argv = [
        sys.executable, "-m", "sipua", "load", "--accounts", str(tmp_path / "accounts.csv"),
        "--domain", registrar.domain, "--password-file", str(tmp_path / "pw"),
        "--proxy", f"{registrar.ip}:{registrar.tls_port}",
        "--trusted-cert", str(registrar.ca_pem), "--ca-type", "custom",
        "--data-dir", str(tmp_path / "data"), "--progress", "0",
        "--json", str(tmp_path / "report.json"),
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)
    report = json.loads((tmp_path / "report.json").read_text())
    # Kamailio answers wrong credentials with 403 (config/kamailio/kamailio.cfg, REGISTRAR).
    assert report["succeeded"] == 1, result.stdout + result.stderr
    assert report["failed"]["total"] == 1
    assert result.returncode == 4
