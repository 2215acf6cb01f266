"""What the two certificate stores share: their directory, its lock, and the entries they list.

Both stores live under `<data_dir>/certs/` (directory mode 0700). Every change rewrites one file
with `storage.atomic_write`, so a crash leaves the old state or the new one, and every
read-modify-write (import, remove) or create-if-missing runs under `storage.exclusive_lock` on
the directory and re-reads there (`StoreDirectory.locked`), so concurrent sipua processes
neither lose each other's changes nor create two device CAs. A corrupt file (or one corrupt
entry of `trusted.pem`) is reported in `problems` and skipped; it does not stop the rest of
the store loading. A running user agent's reload reads `trusted.pem` strictly instead
(`TrustedStore.custom(strict=True)`): a damaged file fails the reload and the trust in use is
kept.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from cryptography import x509

from sipua import storage
from sipua.errors import StoreError
from sipua.settings.model import default_data_dir
from sipua.tls.certs import CertSummary

#: Shortest fingerprint prefix accepted as an id (shorter ones match too much by accident).
MIN_ID_PREFIX: Final = 4

StoredKind = Literal["default", "custom", "unique", "generic", "device-ca"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredCertificate:
    """One certificate known to the store.

    Attributes:
        role: "trusted" (a CA certificate sipua trusts) or "device" (one sipua presents).
        kind: "default" or "custom" for trusted ones; "unique", "generic", "custom" or
            "device-ca" for device ones.
        certificate: The certificate.
        summary: Subject, issuer, validity, fingerprint... for display.
        path: The file it is stored in (None for the OS bundle's certificates).
    """

    role: Literal["trusted", "device"]
    kind: StoredKind
    certificate: x509.Certificate = field(repr=False)
    summary: CertSummary
    path: Path | None = None

    @classmethod
    def of(
        cls,
        cert: x509.Certificate,
        *,
        role: Literal["trusted", "device"],
        kind: StoredKind,
        path: Path | None = None,
    ) -> StoredCertificate:
        """Wraps `cert` with its summary."""
        return cls(role=role, kind=kind, certificate=cert, summary=CertSummary.of(cert), path=path)

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint (64 lowercase hex digits): the certificate's id."""
        return self.summary.fingerprint

    @property
    def name(self) -> str:
        """A short human name (the subject CN)."""
        return self.summary.name

    @property
    def type(self) -> Literal["default", "custom"]:
        """The phone's "type" column: built-in ("default") or user-imported ("custom")."""
        return "custom" if self.kind == "custom" else "default"

    def as_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {"role": self.role, "kind": self.kind, "type": self.type, **self.summary.as_json()}


class StoreDirectory:
    """The `certs` directory both stores use, its lock, and the problems met reading it.

    Args:
        path: The directory (`<data_dir>/certs`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Problems met while reading the stores (corrupt files, skipped entries).
        self.problems: list[str] = []
        # The file lock is per open file, so one process must not take it twice: the thread
        # lock and depth make `locked` reentrant within this process.
        self._thread_lock = threading.RLock()
        self._lock_depth = 0

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serializes a read-modify-write of the store with other threads and processes."""
        with self._thread_lock:
            if self._lock_depth:
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            with storage.exclusive_lock(self.path):
                self._lock_depth = 1
                try:
                    yield
                finally:
                    self._lock_depth = 0

    def problem(self, message: str) -> None:
        """Records a problem once."""
        if message not in self.problems:
            self.problems.append(message)


def cert_command(data_dir: Path, *words: str) -> str:
    """A `sipua cert` command line to suggest for the store under `data_dir`.

    It carries `--data-dir DIR` unless `data_dir` is the default one, so the command a user
    copies changes this store, not the default one.
    """
    flags: tuple[str, ...] = ()
    if data_dir.absolute() != default_data_dir().absolute():
        flags = ("--data-dir", str(data_dir.absolute()))
    return shlex.join(("sipua", "cert", words[0], *flags, *words[1:]))


def select(candidates: list[StoredCertificate], ident: str, *, what: str) -> StoredCertificate:
    """The one candidate whose fingerprint starts with `ident`, or whose name is `ident`.

    Raises:
        StoreError: none matches, or several do.
    """
    wanted = ident.strip().lower().replace(":", "")
    matches: list[StoredCertificate] = []
    if len(wanted) >= MIN_ID_PREFIX and all(c in "0123456789abcdef" for c in wanted):
        matches = [c for c in candidates if c.fingerprint.startswith(wanted)]
    if not matches:
        matches = [c for c in candidates if c.name.lower() == ident.strip().lower()]
    unique = {c.fingerprint: c for c in matches}
    if not unique:
        raise StoreError(
            f"no {what} matches {ident!r}; give a SHA-256 fingerprint (or its first "
            f"{MIN_ID_PREFIX}+ hex digits) or the name shown by `sipua cert list`"
        )
    if len(unique) > 1:
        shown = ", ".join(f"{c.name} ({c.fingerprint[:12]})" for c in unique.values())
        raise StoreError(f"{ident!r} matches several certificates: {shown}; give more digits")
    return matches[0]


def check_not_writable_by_others(path: Path) -> None:
    """Refuses a trust file (or its directory) that someone other than this user could write.

    Whoever can write trusted.pem (or known-keys) decides whom sipua trusts, so it must be
    this user's alone.

    Raises:
        StoreError: `path` is owned by another user, or group- or world-writable.
    """
    try:
        info = path.stat()
    except OSError as exc:
        raise StoreError(f"cannot check {path}: {exc.strerror or exc}") from exc
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid():
        raise StoreError(
            f"refusing to trust certificates from {path}: it is owned by user id {info.st_uid}, "
            f"not by you ({os.geteuid()}), so another user decides what sipua trusts; check its "
            f"content, then run `chown $(id -u) {path}`"
        )
    if mode & 0o022:
        raise StoreError(
            f"refusing to trust certificates from {path}: its mode is {mode:04o}, so other users "
            f"can change what sipua trusts; check its content, then run `chmod go-w {path}`"
        )
