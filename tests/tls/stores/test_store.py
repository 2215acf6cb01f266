"""`CertStore`: both stores on one directory: lookups across them, concurrent processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from sipua.errors import StoreError
from sipua.tls.stores.store import CertStore
from sipua.tls.trust.anchors import SystemBundle
from tests.support.certs import make_ca
from tests.tls.stores.common import MAC, store_at, write_file


def test_find_across_lists(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.devices.identity("default", MAC)
    assert store.find("sipua-001565aabbcc").kind == "unique"
    assert store.find("Store System Root").kind == "default"
    with pytest.raises(StoreError, match="no certificate matches"):
        store.find("nothing")


# -- concurrent processes --------------------------------------------------------------------

#: Run by each racing process: wait at a barrier (so all of them hit the store at once), then
#: do one store operation and print its result.
_RACER = """
import sys, time
from pathlib import Path
from sipua.tls.trust.anchors import SystemBundle
from sipua.tls.stores.store import CertStore
barrier, index, data, op, arg = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), *sys.argv[4:6]
(barrier / f"ready-{index}").touch()
deadline = time.monotonic() + 60
while not (barrier / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.001)
store = CertStore(data, system=SystemBundle(path=None, certificates=()))
if op == "import":
    print(store.trusted.import_file(Path(arg))[0].fingerprint)
else:
    print(store.devices.ca().fingerprint)
"""


def _race(tmp_path: Path, jobs: list[tuple[str, str]]) -> list[str]:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    data = tmp_path / "data"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(barrier), str(i), str(data), op, arg],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, (op, arg) in enumerate(jobs)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(barrier.glob("ready-*"))) < len(jobs) and time.monotonic() < deadline:
            time.sleep(0.01)
        (barrier / "go").touch()
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    return [out.strip() for out, _ in outputs]


def test_parallel_imports_are_all_kept(tmp_path: Path) -> None:
    cas = [make_ca(f"Parallel CA {i}") for i in range(8)]
    files = [write_file(tmp_path, f"ca{i}.pem", ca.pem) for i, ca in enumerate(cas)]
    printed = _race(tmp_path, [("import", str(f)) for f in files])
    assert sorted(printed) == sorted(ca.fingerprint for ca in cas)
    stored = CertStore(tmp_path / "data", system=SystemBundle(path=None, certificates=()))
    assert sorted(s.fingerprint for s in stored.trusted.custom()) == sorted(printed)


def test_parallel_first_starts_create_one_device_ca(tmp_path: Path) -> None:
    printed = _race(tmp_path, [("device-ca", "")] * 4)
    assert len(set(printed)) == 1, printed
    stored = CertStore(tmp_path / "data", system=SystemBundle(path=None, certificates=()))
    assert stored.devices.ca().fingerprint == printed[0]
