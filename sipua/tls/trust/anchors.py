"""The "default" trusted certificates: the operating system's CA bundle.

A desk phone ships a fixed list of built-in CAs; a software UA's analogue is the CA bundle the
operating system maintains (Debian's `ca-certificates`). It is found through
`ssl.get_default_verify_paths()` (which honours `$SSL_CERT_FILE`), falling back to the well-known
Debian/Ubuntu, Fedora/RHEL and Alpine paths, read once, and cached for the life of the process:
every handshake consults it, and parsing ~150 certificates takes milliseconds that a handshake
should not pay.

Unparseable entries are skipped and counted in `problems`, never fatal: one odd root must not
take all of TLS down.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography import x509

from sipua.errors import CertificateError, StoreError
from sipua.storage import read_bounded
from sipua.tls.certs import load_certificates, pem_blocks

_FALLBACK_BUNDLES: Final = (
    Path("/etc/ssl/certs/ca-certificates.crt"),  # Debian, Ubuntu, Alpine
    Path("/etc/pki/tls/certs/ca-bundle.crt"),  # Fedora, RHEL
    Path("/etc/ssl/cert.pem"),  # macOS, BSDs
)
#: A system bundle is a few hundred KB; anything above this is not one.
MAX_BUNDLE_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemBundle:
    """The parsed OS bundle: where it came from, its certificates, and what could not be read."""

    path: Path | None
    certificates: tuple[x509.Certificate, ...]
    problems: tuple[str, ...] = field(default=())


def find_bundle_path() -> Path | None:
    """Returns the OS CA bundle file, or None if the system has none."""
    paths = ssl.get_default_verify_paths()
    candidates = [Path(p) for p in (paths.cafile, paths.openssl_cafile) if p]
    candidates.extend(_FALLBACK_BUNDLES)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def load_bundle(path: Path | None) -> SystemBundle:
    """Parses a PEM bundle, skipping (and reporting) entries that are not certificates."""
    if path is None:
        return SystemBundle(
            path=None,
            certificates=(),
            problems=("no operating-system CA bundle found; install ca-certificates",),
        )
    try:
        data = read_bounded(path, limit=MAX_BUNDLE_BYTES)
    except StoreError as exc:
        return SystemBundle(path=path, certificates=(), problems=(str(exc),))
    certs: list[x509.Certificate] = []
    problems: list[str] = []
    for index, block in enumerate(pem_blocks(data), start=1):
        if "CERTIFICATE" not in block.label:
            continue
        try:
            certs.extend(load_certificates(block.data, source=f"{path} entry #{index}"))
        except CertificateError as exc:
            problems.append(str(exc))
    return SystemBundle(path=path, certificates=tuple(certs), problems=tuple(problems))


_lock = threading.Lock()
_cached: SystemBundle | None = None


def system_bundle() -> SystemBundle:
    """The OS bundle, loaded on first use and cached."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = load_bundle(find_bundle_path())
        return _cached
