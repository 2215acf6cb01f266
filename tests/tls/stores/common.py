"""Helpers shared by the certificate store tests."""

from __future__ import annotations

import stat
from pathlib import Path

from sipua.tls.stores.store import CertStore
from sipua.tls.trust.anchors import SystemBundle
from tests.support.certs import make_ca

SYSTEM_ROOT = make_ca("Store System Root")
MAC = "00:15:65:AA:BB:CC"


def store_at(tmp_path: Path) -> CertStore:
    """A store under `tmp_path` whose default set is `SYSTEM_ROOT` alone."""
    bundle = SystemBundle(path=None, certificates=(SYSTEM_ROOT.cert,))
    return CertStore(tmp_path / "data", system=bundle)


def write_file(tmp_path: Path, name: str, data: bytes) -> Path:
    """Writes `data` to `tmp_path/name` and returns the path."""
    path = tmp_path / name
    path.write_bytes(data)
    return path


def mode_of(path: Path) -> int:
    """The permission bits of `path`."""
    return stat.S_IMODE(path.stat().st_mode)
