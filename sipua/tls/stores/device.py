"""sipua's own certificates, which it presents as TLS server and as TLS client.

As on a desk phone: a *unique* certificate per MAC address and a *generic* one, both issued by a
device CA created on first use (see `issuing.py`), and at most one *custom* certificate with its
key, imported by the user; a new import replaces the old one. `identity("default")` picks
unique, else generic; `identity("generic")` the generic one whatever the MAC address (for a
deployment that wants one certificate for all its devices); `identity("custom")` the imported
one.

Files under `<data_dir>/certs/`, each holding a key with its certificate(s), mode 0600, and
refused if group or others can read them::

    device-ca.pem             device CA key + certificate
    device-<mac>.pem          unique device key + certificate
    device-generic.pem        generic device key + certificate
    device-custom.pem         custom key + certificate + chain

A key and its certificate always share a file, and creating the device CA or a device
certificate runs under the directory lock, so two first starts do not create two device CAs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from sipua import storage
from sipua.errors import CertificateError, StoreError
from sipua.tls.certs import (
    DEVICE_EXTENSIONS,
    PrivateKey,
    certificate_pem,
    check_extension,
    key_matches,
    load_certificates,
    load_private_key,
    private_key_pem,
    read_input_file,
)
from sipua.tls.stores import issuing
from sipua.tls.stores.files import StoredCertificate, StoreDirectory, StoredKind

KEY_EXTENSIONS: Final = (".pem", ".key", ".cer", ".der")

DeviceKind = Literal["unique", "generic", "custom"]
DeviceChoice = Literal["default", "generic", "custom"]

_CA_FILE: Final = "device-ca.pem"
_GENERIC_FILE: Final = "device-generic.pem"
_CUSTOM_FILE: Final = "device-custom.pem"


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
class _KeyedFile:
    key: PrivateKey
    certs: list[x509.Certificate]


class DeviceStore:
    """The device CA and the device certificates on disk.

    Args:
        directory: The store directory (shared with the trusted store).
    """

    def __init__(self, directory: StoreDirectory) -> None:
        self._dir = directory

    def ca(self, *, now: dt.datetime | None = None) -> StoredCertificate:
        """The device CA certificate, created (with its key) on first use.

        Raises:
            StoreError: the CA file exists but is unreadable, corrupt or readable by others.
        """
        with self._dir.locked():
            cert, _ = self._device_ca(now=_now(now))
        return StoredCertificate.of(cert, role="device", kind="device-ca", path=self.ca_path)

    @property
    def ca_path(self) -> Path:
        """The device CA's file (its key and certificate)."""
        return self._dir.path / _CA_FILE

    def _device_ca(
        self, *, now: dt.datetime
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        # Called with the store locked: two first starts must not create two device CAs.
        path = self.ca_path
        if path.exists():
            stored = self._read_keyed(path)
            if stored is None:
                raise StoreError(_corrupt(path))
            key = stored.key
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise StoreError(f"the device CA file {path} does not hold an EC key; remove it")
            return stored.certs[0], key
        cert, key = issuing.new_device_ca(now)
        self._write_keyed(path, key, [cert])
        return cert, key

    def identity(
        self,
        choice: DeviceChoice = "default",
        mac: str | None = None,
        *,
        now: dt.datetime | None = None,
    ) -> DeviceIdentity:
        """The certificate and key sipua presents.

        Args:
            choice: "default" = the unique certificate for the MAC address, else the generic
                one (issued on first use, re-issued near expiry unless it already ends with
                the device CA, `issuing.needs_renewal`); "generic" = the generic one
                even when a MAC address is known; "custom" = the imported one.
            mac: The configured MAC address; None = this machine's, if it has one.
            now: The current time (tests pin it).

        Raises:
            StoreError: "custom" but none was imported, or a store file cannot be used.
            CertificateError: the device CA has ended ("default" and "generic"); the message
                says how to get a new one.
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
            resolved = issuing.normalize_mac(mac) if mac is not None else issuing.machine_mac()
        with self._dir.locked():
            return self._issued_identity(resolved, moment)

    def _issued_identity(self, resolved: str | None, moment: dt.datetime) -> DeviceIdentity:
        ca_cert, ca_key = self._device_ca(now=moment)
        if ca_cert.not_valid_after_utc <= moment:
            # Nothing it issues could be used, and issuing would fail: say what to do instead.
            name = StoredCertificate.of(ca_cert, role="device", kind="device-ca").name
            raise CertificateError(
                f"the device CA {name!r} ended on "
                f"{ca_cert.not_valid_after_utc:%Y-%m-%d %H:%M UTC}, so the device certificates "
                f"it issues can no longer be used or renewed: {new_device_ca_advice(self.ca_path)}"
            )
        if resolved is not None:
            path, kind = self._dir.path / f"device-{resolved}.pem", "unique"
        else:
            path, kind = self._dir.path / _GENERIC_FILE, "generic"
        stored = self._read_keyed(path) if path.exists() else None
        if (
            stored is None
            or stored.certs[0].issuer != ca_cert.subject
            or issuing.needs_renewal(stored.certs[0], ca_cert, moment)
        ):
            cert, key = issuing.issue_device_certificate(ca_cert, ca_key, mac=resolved, now=moment)
            self._write_keyed(path, key, [cert])
            stored = _KeyedFile(key, [cert])
        return DeviceIdentity(
            kind="unique" if kind == "unique" else "generic",
            certificate=stored.certs[0],
            chain=(ca_cert,),
            private_key=stored.key,
        )

    def _custom_identity(self) -> DeviceIdentity:
        path = self._dir.path / _CUSTOM_FILE
        if not path.exists():
            raise StoreError(
                "no custom device certificate has been imported; import one with "
                "`sipua cert import-device CERT [--key KEY]` or use the default device "
                "certificate"
            )
        stored = self._read_keyed(path)
        if stored is None:
            raise StoreError(_corrupt(path))
        return DeviceIdentity(
            kind="custom",
            certificate=stored.certs[0],
            chain=tuple(stored.certs[1:]),
            private_key=stored.key,
        )

    def import_files(
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
        key_data = None
        if key_path is not None:
            check_extension(key_path, KEY_EXTENSIONS)
            key_data = read_input_file(key_path, expected="a private key")
        return self.import_data(
            read_input_file(cert_path),
            source=str(cert_path),
            key_data=key_data,
            key_source=str(key_path),
            passphrase=passphrase,
        )

    def import_data(
        self,
        data: bytes,
        *,
        source: str,
        key_data: bytes | None = None,
        key_source: str = "",
        passphrase: bytes | None = None,
    ) -> StoredCertificate:
        """Imports a custom device certificate and its key from bytes (a file, a download).

        Everything is checked before anything is stored; the old custom certificate is
        replaced atomically, or kept on any failure.

        Raises:
            CertificateError: no certificate, no key, an encrypted key without a passphrase,
                or a key that does not belong to the certificate; `source` is named.
        """
        key, leaf, chain = parse_device_bundle(
            data, source=source, key_data=key_data, key_source=key_source, passphrase=passphrase
        )
        path = self._dir.path / _CUSTOM_FILE
        with self._dir.locked():
            self._write_keyed(path, key, [leaf, *chain])
        return StoredCertificate.of(leaf, role="device", kind="custom", path=path)

    def has_custom(self) -> bool:
        """Whether a custom device certificate file exists (readable or not)."""
        return (self._dir.path / _CUSTOM_FILE).exists()

    def custom_fingerprint(self) -> str | None:
        """The fingerprint of the custom device certificate, None if none is readable."""
        path = self._dir.path / _CUSTOM_FILE
        cert = _certificate_of(path) if path.exists() else None
        return (
            None
            if cert is None
            else StoredCertificate.of(cert, role="device", kind="custom").fingerprint
        )

    def remove(self) -> StoredCertificate | None:
        """Removes the custom device certificate, whatever state its file is in.

        The file is not parsed to be removed: a corrupt file, or one others can read (whose key
        must be replaced), is exactly what a user needs to remove.

        Returns:
            The removed certificate, or None when its file held no readable certificate.

        Raises:
            StoreError: none was imported, or the file cannot be removed.
        """
        path = self._dir.path / _CUSTOM_FILE
        with self._dir.locked():
            if not path.exists():
                raise StoreError(
                    "no custom device certificate has been imported, so there is nothing to remove"
                )
            removed = _certificate_of(path)
            storage.remove_file(path)
        if removed is None:
            return None
        return StoredCertificate.of(removed, role="device", kind="custom")

    def certificates(self) -> list[StoredCertificate]:
        """The device certificates on disk (device CA, unique, generic, custom), without issuing."""
        if not self._dir.path.is_dir():
            return []
        found: list[StoredCertificate] = []
        for path in sorted(self._dir.path.glob("device-*.pem")):
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

    def _write_keyed(self, path: Path, key: PrivateKey, certs: list[x509.Certificate]) -> None:
        storage.ensure_private_dir(self._dir.path)
        data = private_key_pem(key) + b"".join(certificate_pem(c) for c in certs)
        storage.atomic_write(path, data, mode=storage.PRIVATE_FILE_MODE)

    def _read_keyed(self, path: Path) -> _KeyedFile | None:
        """Reads a key + certificates file; None (and a problem) if it is corrupt.

        sipua wrote the file, so whatever is wrong with it (truncated, edited, a key that does
        not match) is reported as the store file being corrupt, with what to do about it, never
        with the advice meant for a file a user imports.

        Raises:
            StoreError: the file is readable by others (that is not "corrupt": the user must act).
        """
        data = storage.read_private(path)
        try:
            key = load_private_key(data, source=str(path))
            certs = load_certificates(data, source=str(path))
        except CertificateError:
            self._dir.problem(_corrupt(path))
            return None
        if not key_matches(certs[0], key):
            self._dir.problem(_corrupt(path, "its key does not match its certificate"))
            return None
        return _KeyedFile(key, certs)


def parse_device_bundle(
    data: bytes,
    *,
    source: str,
    key_data: bytes | None = None,
    key_source: str = "",
    passphrase: bytes | None = None,
) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]]:
    """The key, the leaf it belongs to, and the rest of the chain, from a device bundle.

    Peer input (an imported file, a download): only `CertificateError` escapes.

    Raises:
        CertificateError: no certificate, no key, an encrypted key without a passphrase, or a
            key that matches none of the certificates; `source` is named.
    """
    certs = load_certificates(data, source=source)
    if key_data is not None:
        key = load_private_key(key_data, source=key_source, passphrase=passphrase)
    elif b"PRIVATE KEY" in data:
        key = load_private_key(data, source=source, passphrase=passphrase)
    else:
        raise CertificateError(
            f"{source} holds no private key; a device certificate needs its key: put it "
            "in the same file or pass --key KEY"
        )
    leaf = next((c for c in certs if key_matches(c, key)), None)
    if leaf is None:
        raise CertificateError(
            f"the private key does not match the certificate in {source} (public keys "
            "differ); pick the key file that was created with this certificate"
        )
    chain = [c for c in certs if c is not leaf]
    return key, leaf, chain


def new_device_ca_advice(ca_path: Path) -> str:
    """What to do when the device CA ends: the one way to a new device CA."""
    return (
        f"remove {ca_path} and sipua makes a new device CA (and device certificates from it) "
        "at its next start or certificate check; then give registrars that verify clients the "
        "new one (`sipua cert export-ca`). Or present a device certificate of your own "
        "(`sipua cert import-device CERT`, device certificate setting 'custom')"
    )


def _corrupt(path: Path, why: str | None = None) -> str:
    """The message for a corrupt device store file: which file, and what the user can do."""
    detail = f" ({why})" if why else ""
    if path.name == _CA_FILE:
        return (
            f"the device CA file {path} is corrupt{detail}; remove it to create a new device CA "
            "(registrars that trust the old one must then trust the new one: "
            "`sipua cert export-ca`)"
        )
    if path.name == _CUSTOM_FILE:
        return (
            f"the custom device certificate file {path} is corrupt{detail}; import the "
            "certificate again, or remove it with `sipua cert remove-device`"
        )
    return (
        f"the device certificate file {path} is corrupt{detail}; sipua issues a new one when "
        "it is next used"
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
