"""scripts/install-peers leaves the system's policy-rc.d as it found it.

The script runs for real against a temporary root (`DPKG_ROOT`, the root dpkg and invoke-rc.d
use) with stubs of `dpkg-query` (every package missing), `apt-get` (records what it was asked
and which policy-rc.d was in force while it installed) and `id` (root) first on PATH.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install-peers"

STUBS = {
    "dpkg-query": "#!/bin/sh\nexit 1\n",
    "id": "#!/bin/sh\necho 0\n",
    # While installing, run the policy-rc.d in force as invoke-rc.d would, and record its verdict.
    "apt-get": """#!/bin/sh
echo "apt-get $*" >>"$STUB_LOG"
if [ "$1" = install ]; then
    policy="$DPKG_ROOT/usr/sbin/policy-rc.d"
    if [ -x "$policy" ]; then
        "$policy" kamailio start
        echo "policy-rc.d kamailio start -> $?" >>"$STUB_LOG"
    else
        echo "no policy-rc.d" >>"$STUB_LOG"
    fi
fi
""",
}


def run_install_peers(
    root: Path, tmp_path: Path, *, install_exit: int = 0
) -> tuple[subprocess.CompletedProcess[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    failing = f'if [ "$1" = install ]; then exit {install_exit}; fi\n'
    stubs = {**STUBS, "apt-get": STUBS["apt-get"] + failing}
    for name, text in stubs.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "stub.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DPKG_ROOT": str(root),
        "STUB_LOG": str(log),
    }
    result = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    return result, log.read_text() if log.exists() else ""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "usr" / "sbin").mkdir(parents=True)
    return root


def test_an_existing_policy_is_kept_byte_for_byte(root: Path, tmp_path: Path) -> None:
    policy = root / "usr" / "sbin" / "policy-rc.d"
    original = b"#!/bin/sh\n# the image's own policy\nexit 104\n"
    policy.write_bytes(original)
    policy.chmod(0o750)
    before = policy.stat()
    result, log = run_install_peers(root, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "apt-get install" in log, log
    # The installation ran under the machine's own policy, and the policy is still there.
    assert "policy-rc.d kamailio start -> 104" in log, log
    assert policy.read_bytes() == original
    after = policy.stat()
    assert stat.S_IMODE(after.st_mode) == 0o750
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert f"keeping the existing {policy}" in result.stderr


def test_a_policy_it_created_denies_starts_and_is_removed(root: Path, tmp_path: Path) -> None:
    result, log = run_install_peers(root, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "policy-rc.d kamailio start -> 101" in log, log  # services did not start
    assert not (root / "usr" / "sbin" / "policy-rc.d").exists()
    assert sorted(p.name for p in (root / "usr" / "sbin").iterdir()) == []


def test_a_failed_install_still_removes_only_its_own_policy(root: Path, tmp_path: Path) -> None:
    result, log = run_install_peers(root, tmp_path, install_exit=100)
    assert result.returncode == 100, result.stderr
    assert "policy-rc.d kamailio start -> 101" in log, log
    assert not (root / "usr" / "sbin" / "policy-rc.d").exists()
