"""The certificate store: trusted CAs and sipua's own device certificates, on disk.

Theory of operation. The store mirrors a desk phone's two certificate lists:

- **Trusted certificates** (CA certificates): the *default* ones are the operating system's CA
  bundle (read-only, see `sipua.tls.trust.anchors`); up to `MAX_CUSTOM_TRUSTED` *custom* ones
  are imported by the user. `trusted(accepted_ca)` gives the anchors for the "CA certificates"
  setting.
- **Device certificates** (server certificates, also used as the client certificate): a
  *unique* certificate per MAC address and a *generic* one, both issued by a device CA created
  on first use (see `issuing.py`), and at most one *custom* certificate with its key, imported
  by the user; a new import replaces the old one. `device_identity("default")` picks unique,
  else generic; `device_identity("generic")` the generic one whatever the MAC address (for a
  deployment that wants one certificate for all its devices); `device_identity("custom")` the
  imported one.

Layout under `<data_dir>/certs/` (directory mode 0700)::

    trusted.pem               custom trusted certificates, one PEM block each
    device-ca.pem             device CA key + certificate          (0600)
    device-<mac>.pem          unique device key + certificate      (0600)
    device-generic.pem        generic device key + certificate     (0600)
    device-custom.pem         custom key + certificate + chain     (0600)

Every change rewrites one file with `storage.atomic_write`, so a crash leaves the old state or
the new one, and every read-modify-write (import, remove) or create-if-missing (the device CA,
the device certificates) runs under `storage.exclusive_lock` on the directory and re-reads
there, so concurrent sipua processes neither lose each other's imports nor create two device
CAs: a key and its certificate always share a file, and an import of several trusted
certificates is one rewrite of `trusted.pem`. Files holding keys are refused if their group or
others can read them. A corrupt file (or one corrupt entry of `trusted.pem`) is reported in
`problems` and skipped; it does not stop the rest of the store loading.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from sipua import storage
from sipua.errors import CertificateError, StoreError
from sipua.tls.certs import (
    DEVICE_EXTENSIONS,
    CertSummary,
    PrivateKey,
    certificate_pem,
    check_extension,
    fingerprint,
    key_matches,
    load_certificate_file,
    load_certificates,
    load_private_key,
    pem_blocks,
    private_key_pem,
    read_input_file,
)
from sipua.tls.stores import issuing as device
from sipua.tls.trust.anchors import SystemBundle, system_bundle
from sipua.tls.trust.policy import ACCEPTED_CA_VALUES, AcceptedCa

#: Custom trusted certificates the store holds at most (the phone's limit).
MAX_CUSTOM_TRUSTED: Final = 10
#: Shortest fingerprint prefix accepted as an id (shorter ones match too much by accident).
MIN_ID_PREFIX: Final = 4
KEY_EXTENSIONS: Final = (".pem", ".key", ".cer", ".der")

DeviceKind = Literal["unique", "generic", "custom"]
DeviceChoice = Literal["default", "generic", "custom"]
StoredKind = Literal["default", "custom", "unique", "generic", "device-ca"]

_TRUSTED_FILE: Final = "trusted.pem"
_CA_FILE: Final = "device-ca.pem"
_GENERIC_FILE: Final = "device-generic.pem"
_CUSTOM_FILE: Final = "device-custom.pem"


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


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceIdentity:
    """The certificate and key sipua presents, as TLS server and as TLS client.

    Attributes:
        kind: "unique" (per MAC), "generic", or "custom" (imported).
        certificate: The leaf certificate.
        chain: Certificates to send above the leaf (the device CA, or the imported chain).
        private_key: The leaf's private key (never shown in reprs or logs).
    """

    kind: DeviceKind
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    private_key: PrivateKey = field(repr=False)


@dataclass(frozen=True, slots=True)
class _TrustedEntry:
    block: bytes  # the PEM block exactly as stored
    stored: StoredCertificate | None  # None: the entry is unreadable


@dataclass(frozen=True, slots=True)
class _KeyedFile:
    key: PrivateKey
    certs: list[x509.Certificate]


class CertStore:
    """Trusted and device certificates persisted under `data_dir` (see the module docstring).

    Args:
        data_dir: sipua's data directory (`storage.default_data_dir()` in production).
        system: The default trusted certificates; None means the OS bundle (tests inject one).
    """

    def __init__(self, data_dir: Path, *, system: SystemBundle | None = None) -> None:
        self.data_dir = data_dir
        self.directory = data_dir / "certs"
        self._system = system
        #: Problems met while reading the store (corrupt files, skipped entries).
        self.problems: list[str] = []
        # The file lock is per open file, so one process must not take it twice: the thread
        # lock and depth make `_locked` reentrant within this process.
        self._thread_lock = threading.RLock()
        self._lock_depth = 0

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serializes a read-modify-write of the store with other threads and processes."""
        with self._thread_lock:
            if self._lock_depth:
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            with storage.exclusive_lock(self.directory):
                self._lock_depth = 1
                try:
                    yield
                finally:
                    self._lock_depth = 0

    # -- trusted certificates ---------------------------------------------------------------

    @property
    def system(self) -> SystemBundle:
        """The default trusted certificates (the OS CA bundle, loaded lazily and cached)."""
        if self._system is None:
            self._system = system_bundle()
        return self._system

    def default_trusted(self) -> list[StoredCertificate]:
        """The default (built-in) trusted certificates."""
        return [
            StoredCertificate.of(c, role="trusted", kind="default")
            for c in self.system.certificates
        ]

    def custom_trusted(self) -> list[StoredCertificate]:
        """The imported trusted certificates, in import order; corrupt entries go to `problems`.

        Only the first `MAX_CUSTOM_TRUSTED` readable ones count; more (a file edited by hand)
        is reported in `problems`.
        """
        try:
            entries = self._trusted_entries()
        except StoreError as exc:
            self._problem(str(exc))
            return []
        readable = [e.stored for e in entries if e.stored is not None]
        if len(readable) > MAX_CUSTOM_TRUSTED:
            self._problem(
                f"{self._trusted_path} holds {len(readable)} trusted certificates; only the first "
                f"{MAX_CUSTOM_TRUSTED} are used: remove some with `sipua cert remove-trusted ID`"
            )
        return readable[:MAX_CUSTOM_TRUSTED]

    def _trusted_entries(self) -> list[_TrustedEntry]:
        """Every PEM block of trusted.pem, readable or not, with its exact bytes.

        Raises:
            StoreError: the file exists but cannot be read, or someone else could have written
                it or its directory (then it is not trusted at all).
        """
        path = self._trusted_path
        if not path.exists():
            return []
        _check_not_writable_by_others(self.directory)
        _check_not_writable_by_others(path)
        data = storage.read_bounded(path)
        blocks = pem_blocks(data)
        if not blocks and data.strip():
            # Not PEM at all: one unreadable entry, kept as it is by a removal.
            self._problem(f"{path} holds no PEM certificate; its content is ignored")
            return [_TrustedEntry(block=data, stored=None)]
        entries: list[_TrustedEntry] = []
        for index, block in enumerate(blocks, start=1):
            try:
                (cert,) = load_certificates(block.data, source=f"{path} entry #{index}")
            except (CertificateError, ValueError) as exc:
                self._problem(f"{exc}; the entry is skipped (re-import the certificate)")
                entries.append(_TrustedEntry(block=block.data, stored=None))
                continue
            stored = StoredCertificate.of(cert, role="trusted", kind="custom", path=path)
            entries.append(_TrustedEntry(block=block.data, stored=stored))
        return entries

    def trusted(self, accepted_ca: AcceptedCa = "all") -> list[x509.Certificate]:
        """The trust anchors for a "CA certificates" setting: default, custom or all.

        Raises:
            ValueError: `accepted_ca` is not one of "default", "custom", "all".
        """
        if accepted_ca not in ACCEPTED_CA_VALUES:
            raise ValueError(f"accepted_ca must be one of {', '.join(ACCEPTED_CA_VALUES)}")
        anchors: list[x509.Certificate] = []
        if accepted_ca in ("default", "all"):
            anchors.extend(self.system.certificates)
        if accepted_ca in ("custom", "all"):
            anchors.extend(s.certificate for s in self.custom_trusted())
        return anchors

    def import_trusted(self, path: Path) -> list[StoredCertificate]:
        """Imports the certificate(s) of a .pem/.cer/.crt/.der file as custom trusted ones.

        All or nothing: if any certificate of the file is refused, none is imported.

        Returns:
            The imported certificates.

        Raises:
            CertificateError: the file is unreadable, empty, of the wrong type, a private key, or
                not a certificate.
            StoreError: a certificate is already trusted, or the import would exceed
                `MAX_CUSTOM_TRUSTED`.
        """
        new = load_certificate_file(path)
        with self._locked():
            return self._import_trusted(path, new)

    def _import_trusted(self, path: Path, new: list[x509.Certificate]) -> list[StoredCertificate]:
        entries = self._trusted_entries()
        unreadable = [str(i) for i, e in enumerate(entries, start=1) if e.stored is None]
        if unreadable:
            # Rewriting would have to drop or keep entries sipua cannot vouch for; the user
            # decides.
            raise StoreError(
                f"{path}: nothing was imported because {self._trusted_path} has unreadable "
                f"entries (#{', #'.join(unreadable)}); delete them from the file (or remove the "
                "file and import the certificates again), then retry"
            )
        existing = [e.stored for e in entries if e.stored is not None]
        known = {s.fingerprint: s for s in existing}
        for cert in new:
            fp = fingerprint(cert)
            if fp in known:
                raise StoreError(
                    f"{path}: certificate {known[fp].name!r} (SHA-256 {fp[:16]}...) is already "
                    "trusted; nothing was imported"
                )
            known[fp] = StoredCertificate.of(cert, role="trusted", kind="custom")
        if len(existing) + len(new) > MAX_CUSTOM_TRUSTED:
            raise StoreError(
                f"{path}: importing {len(new)} certificate(s) would make "
                f"{len(existing) + len(new)} custom trusted certificates; at most "
                f"{MAX_CUSTOM_TRUSTED} are allowed. Remove some with "
                "`sipua cert remove-trusted ID` first"
            )
        self._write_trusted(
            [*(e.block for e in entries), *(certificate_pem(c) for c in new)],
            [*(e.stored.certificate for e in entries if e.stored is not None), *new],
        )
        return [
            StoredCertificate.of(c, role="trusted", kind="custom", path=self._trusted_path)
            for c in new
        ]

    def remove_trusted(self, ident: str) -> StoredCertificate:
        """Removes one custom trusted certificate by fingerprint (or unique prefix) or name.

        Raises:
            StoreError: no custom trusted certificate matches, or several do.
        """
        with self._locked():
            entries = self._trusted_entries()
            existing = [e.stored for e in entries if e.stored is not None]
            victim = _select(existing, ident, what="custom trusted certificate")
            # Every other entry is kept byte for byte, unreadable ones and any beyond the limit
            # included: removing one certificate must not lose others.
            kept = [e for e in entries if e.stored is None or e.stored is not victim]
            self._write_trusted(
                [e.block for e in kept],
                [e.stored.certificate for e in kept if e.stored is not None],
            )
            return victim

    @property
    def _trusted_path(self) -> Path:
        return self.directory / _TRUSTED_FILE

    def _write_trusted(self, blocks: list[bytes], certs: list[x509.Certificate]) -> None:
        # `blocks` are written as they are; the readable ones (`certs`) get a comment line.
        storage.ensure_private_dir(self.directory)
        comments = {certificate_pem(c): b"# " + _comment(c) + b"\n" for c in certs}
        text = b"".join(comments.get(block, b"") + block for block in blocks)
        storage.atomic_write(self._trusted_path, text, mode=storage.PUBLIC_FILE_MODE)

    # -- device certificates ----------------------------------------------------------------

    def device_ca(self, *, now: dt.datetime | None = None) -> StoredCertificate:
        """The device CA certificate, created (with its key) on first use.

        Raises:
            StoreError: the CA file exists but is unreadable, corrupt or readable by others.
        """
        with self._locked():
            cert, _ = self._device_ca(now=_now(now))
        return StoredCertificate.of(cert, role="device", kind="device-ca", path=self._ca_path)

    @property
    def _ca_path(self) -> Path:
        return self.directory / _CA_FILE

    def _device_ca(
        self, *, now: dt.datetime
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        # Called with the store locked: two first starts must not create two device CAs.
        path = self._ca_path
        if path.exists():
            stored = self._read_keyed(path)
            if stored is None:
                raise StoreError(
                    f"the device CA file {path} is corrupt; remove it to create a new device CA "
                    "(registrars that trust the old one must then trust the new one: "
                    "`sipua cert export-ca`)"
                )
            key = stored.key
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise StoreError(f"the device CA file {path} does not hold an EC key; remove it")
            return stored.certs[0], key
        cert, key = device.new_device_ca(now)
        self._write_keyed(path, key, [cert])
        return cert, key

    def device_identity(
        self,
        choice: DeviceChoice = "default",
        mac: str | None = None,
        *,
        now: dt.datetime | None = None,
    ) -> DeviceIdentity:
        """The certificate and key sipua presents.

        Args:
            choice: "default" = the unique certificate for the MAC address, else the generic
                one (issued on first use, re-issued near expiry); "generic" = the generic one
                even when a MAC address is known; "custom" = the imported one.
            mac: The configured MAC address; None = this machine's, if it has one.
            now: The current time (tests pin it).

        Raises:
            StoreError: "custom" but none was imported, or a store file cannot be used.
            ConfigError: `mac` is not a MAC address.
        """
        moment = _now(now)
        if choice == "custom":
            return self._custom_identity()
        if choice not in ("default", "generic"):
            raise ValueError(
                f"device certificate choice must be 'default', 'generic' or 'custom': {choice!r}"
            )
        if choice == "generic":
            resolved = None
        else:
            resolved = device.normalize_mac(mac) if mac is not None else device.machine_mac()
        with self._locked():
            return self._issued_identity(resolved, moment)

    def _issued_identity(self, resolved: str | None, moment: dt.datetime) -> DeviceIdentity:
        ca_cert, ca_key = self._device_ca(now=moment)
        if resolved is not None:
            path, kind = self.directory / f"device-{resolved}.pem", "unique"
        else:
            path, kind = self.directory / _GENERIC_FILE, "generic"
        stored = self._read_keyed(path) if path.exists() else None
        if (
            stored is None
            or stored.certs[0].issuer != ca_cert.subject
            or device.needs_renewal(stored.certs[0], moment)
        ):
            cert, key = device.issue_device_certificate(ca_cert, ca_key, mac=resolved, now=moment)
            self._write_keyed(path, key, [cert])
            stored = _KeyedFile(key, [cert])
        return DeviceIdentity(
            kind="unique" if kind == "unique" else "generic",
            certificate=stored.certs[0],
            chain=(ca_cert,),
            private_key=stored.key,
        )

    def _custom_identity(self) -> DeviceIdentity:
        path = self.directory / _CUSTOM_FILE
        if not path.exists():
            raise StoreError(
                "no custom device certificate has been imported; import one with "
                "`sipua cert import-device CERT [--key KEY]` or use the default device "
                "certificate"
            )
        stored = self._read_keyed(path)
        if stored is None:
            raise StoreError(
                f"the custom device certificate file {path} is corrupt; import it again"
            )
        return DeviceIdentity(
            kind="custom",
            certificate=stored.certs[0],
            chain=tuple(stored.certs[1:]),
            private_key=stored.key,
        )

    def import_device(
        self, cert_path: Path, key_path: Path | None = None, *, passphrase: bytes | None = None
    ) -> StoredCertificate:
        """Imports the custom device certificate and its key, replacing any earlier one.

        Args:
            cert_path: A .pem/.cer file with the certificate (and its chain, and possibly the key).
            key_path: A separate key file, if the key is not in `cert_path`.
            passphrase: The passphrase of an encrypted key.

        Raises:
            CertificateError: wrong extension, no certificate, no key, an encrypted key without
                a passphrase, or a key that does not belong to the certificate.
        """
        check_extension(cert_path, DEVICE_EXTENSIONS)
        data = read_input_file(cert_path)
        certs = load_certificates(data, source=str(cert_path))
        if key_path is not None:
            check_extension(key_path, KEY_EXTENSIONS)
            key = load_private_key(
                read_input_file(key_path), source=str(key_path), passphrase=passphrase
            )
        elif b"PRIVATE KEY" in data:
            key = load_private_key(data, source=str(cert_path), passphrase=passphrase)
        else:
            raise CertificateError(
                f"{cert_path} holds no private key; a device certificate needs its key: put it "
                "in the same file or pass --key KEY"
            )
        leaf = next((c for c in certs if key_matches(c, key)), None)
        if leaf is None:
            raise CertificateError(
                f"the private key does not match the certificate in {cert_path} (public keys "
                "differ); pick the key file that was created with this certificate"
            )
        chain = [c for c in certs if c is not leaf]
        path = self.directory / _CUSTOM_FILE
        with self._locked():
            self._write_keyed(path, key, [leaf, *chain])
        return StoredCertificate.of(leaf, role="device", kind="custom", path=path)

    def remove_device(self) -> StoredCertificate | None:
        """Removes the custom device certificate, whatever state its file is in.

        The file is not parsed to be removed: a corrupt file, or one others can read (whose key
        must be replaced), is exactly what a user needs to remove.

        Returns:
            The removed certificate, or None when its file held no readable certificate.

        Raises:
            StoreError: none was imported, or the file cannot be removed.
        """
        path = self.directory / _CUSTOM_FILE
        with self._locked():
            if not path.exists():
                raise StoreError(
                    "no custom device certificate has been imported, so there is nothing to remove"
                )
            removed = _certificate_of(path)
            storage.remove_file(path)
        if removed is None:
            return None
        return StoredCertificate.of(removed, role="device", kind="custom")

    def device_certificates(self) -> list[StoredCertificate]:
        """The device certificates on disk (device CA, unique, generic, custom), without issuing."""
        if not self.directory.is_dir():
            return []
        found: list[StoredCertificate] = []
        for path in sorted(self.directory.glob("device-*.pem")):
            if storage.is_temporary(path):
                continue
            stored = self._read_keyed(path)
            if stored is None:
                continue
            kind: StoredKind
            if path.name == _CA_FILE:
                kind = "device-ca"
            elif path.name == _CUSTOM_FILE:
                kind = "custom"
            elif path.name == _GENERIC_FILE:
                kind = "generic"
            else:
                kind = "unique"
            found.append(StoredCertificate.of(stored.certs[0], role="device", kind=kind, path=path))
        return found

    def find(self, ident: str) -> StoredCertificate:
        """Finds a certificate by fingerprint (or unique prefix) or name, in all lists.

        Raises:
            StoreError: nothing matches, or several certificates do.
        """
        everything = [*self.custom_trusted(), *self.device_certificates(), *self.default_trusted()]
        return _select(everything, ident, what="certificate")

    # -- files with keys --------------------------------------------------------------------

    def _write_keyed(self, path: Path, key: PrivateKey, certs: list[x509.Certificate]) -> None:
        storage.ensure_private_dir(self.directory)
        data = private_key_pem(key) + b"".join(certificate_pem(c) for c in certs)
        storage.atomic_write(path, data, mode=storage.PRIVATE_FILE_MODE)

    def _read_keyed(self, path: Path) -> _KeyedFile | None:
        """Reads a key + certificates file; None (and a problem) if it is corrupt.

        Raises:
            StoreError: the file is readable by others (that is not "corrupt": the user must act).
        """
        data = storage.read_private(path)
        try:
            key = load_private_key(data, source=str(path))
            certs = load_certificates(data, source=str(path))
        except CertificateError as exc:
            self._problem(f"{exc}; the file is skipped")
            return None
        if not key_matches(certs[0], key):
            self._problem(f"{path}: the key does not match the certificate; the file is skipped")
            return None
        return _KeyedFile(key, certs)

    def _problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)


def _check_not_writable_by_others(path: Path) -> None:
    """Refuses a trust file (or its directory) that someone other than this user could write.

    Whoever can write trusted.pem decides whom sipua trusts, so it must be this user's alone.

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


def _certificate_of(path: Path) -> x509.Certificate | None:
    # Best effort, for the summary only: the certificate, never the key (the file's mode may
    # make the key unusable, not the certificate).
    try:
        certs = load_certificates(storage.read_bounded(path), source=str(path))
    except (StoreError, CertificateError, ValueError):
        return None
    return certs[0]


def _now(now: dt.datetime | None) -> dt.datetime:
    return dt.datetime.now(dt.UTC) if now is None else now


def _comment(cert: x509.Certificate) -> bytes:
    summary = CertSummary.of(cert)
    # Only for people reading the file; PEM parsers skip text between blocks.
    text = f"{summary.name} sha256={summary.fingerprint}"
    return text.encode("ascii", "replace").replace(b"\n", b" ")


def _select(candidates: list[StoredCertificate], ident: str, *, what: str) -> StoredCertificate:
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
