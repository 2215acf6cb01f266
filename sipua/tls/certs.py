"""Reading certificates and keys, and describing them to people.

Everything here works on `cryptography` objects (pyOpenSSL is only for connections). Input may be
PEM (one or several certificates) or DER (exactly one); the format is detected from the content,
never from the file name, because `.cer` and `.crt` files come in both. Every error is a
`CertificateError` whose message names the file (`source`) and says what is wrong with it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final, TypeAlias, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
)
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from sipua.errors import CertificateError, StoreError
from sipua.storage import MAX_FILE_BYTES, read_bounded

#: File name endings accepted for trusted (CA) certificates.
TRUSTED_EXTENSIONS: Final = (".pem", ".cer", ".crt", ".der")
#: File name endings accepted for the custom device certificate (certificate + key).
DEVICE_EXTENSIONS: Final = (".pem", ".cer")
#: At most this many certificates are read from one PEM bundle (bounds work on hostile input).
MAX_CERTIFICATES_PER_FILE: Final = 500

#: What certificate arguments accept: a parsed certificate, or PEM/DER bytes.
CertificateInput: TypeAlias = bytes | x509.Certificate

#: The private keys sipua can use for TLS (what pyOpenSSL's `use_privatekey` accepts).
PrivateKey: TypeAlias = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)

_T = TypeVar("_T")

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
_PEM_CERT_LABELS: Final = (b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE")


@dataclass(frozen=True, slots=True, kw_only=True)
class PemBlock:
    """One `-----BEGIN label-----` block of a PEM file, with its exact bytes."""

    label: str
    data: bytes


def pem_blocks(data: bytes) -> list[PemBlock]:
    """Splits PEM text into its blocks (certificates, keys...), ignoring text between them."""
    return [
        PemBlock(label=match.group(1).decode("ascii"), data=match.group(0) + b"\n")
        for match in _PEM_BLOCK.finditer(data)
    ]


def _is_pem(data: bytes) -> bool:
    return b"-----BEGIN " in data


def load_certificates(data: bytes, *, source: str) -> list[x509.Certificate]:
    """Parses one DER certificate or a PEM text with one or more certificates.

    Args:
        data: the file contents.
        source: what to call the input in error messages (usually the file name).

    Returns:
        The certificates in file order (at least one).

    Raises:
        CertificateError: the input is empty, a private key, or not a certificate.
    """
    if not data.strip():
        raise CertificateError(f"{source} is empty; expected a PEM or DER certificate")
    if _is_pem(data):
        blocks = pem_blocks(data)
        cert_blocks = [b for b in blocks if b.label.encode() in _PEM_CERT_LABELS]
        if not cert_blocks:
            if any("PRIVATE KEY" in b.label for b in blocks):
                raise CertificateError(
                    f"{source} holds a private key, not a certificate; import the certificate "
                    "file instead (never share a private key)"
                )
            labels = ", ".join(sorted({b.label for b in blocks})) or "no complete PEM block"
            raise CertificateError(f"{source} holds no certificate (found: {labels})")
        if len(cert_blocks) > MAX_CERTIFICATES_PER_FILE:
            raise CertificateError(
                f"{source} holds {len(cert_blocks)} certificates; at most "
                f"{MAX_CERTIFICATES_PER_FILE} are read from one file"
            )
        certs = []
        for index, block in enumerate(cert_blocks, start=1):
            try:
                cert = _quiet(partial(x509.load_pem_x509_certificate, block.data))
            except _MALFORMED as exc:
                raise CertificateError(
                    f"{source}: certificate #{index} is not a valid X.509 certificate ({exc})"
                ) from exc
            certs.append(ensure_well_formed(cert, source=f"{source}: certificate #{index}"))
        return certs
    try:
        cert = _quiet(partial(x509.load_der_x509_certificate, data))
    except _MALFORMED:
        pass
    else:
        return [ensure_well_formed(cert, source=source)]
    if _looks_like_der_private_key(data):
        raise CertificateError(
            f"{source} holds a private key, not a certificate; import the certificate file "
            "instead (never share a private key)"
        )
    raise CertificateError(f"{source} is not a certificate (neither PEM nor DER X.509)")


# What cryptography raises for a certificate it cannot decode. Some of it only surfaces when a
# field is read: the outer DER parses eagerly, names, extensions and keys lazily.
_MALFORMED: Final = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def ensure_well_formed(cert: x509.Certificate, *, source: str) -> x509.Certificate:
    """Reads every field sipua later relies on, so a malformed certificate fails here, once.

    cryptography decodes subject, issuer, extensions and the public key lazily; without this, a
    certificate from a peer could load fine and then raise deep inside identity or path checks.

    Raises:
        CertificateError: a field cannot be decoded; the message names `source` and the field.
    """
    field = "subject"
    try:
        with quiet_deprecations():
            cert.subject.rfc4514_string()
            field = "issuer"
            cert.issuer.rfc4514_string()
            field = "extensions"
            for extension in cert.extensions:
                _ = extension.value
            field = "public key"
            cert.public_key()
    except _MALFORMED as exc:
        raise CertificateError(
            f"{source} is malformed: its {field} cannot be read ({exc})"
        ) from exc
    return cert


def _quiet(load: Callable[[], _T]) -> _T:
    with quiet_deprecations():
        return load()


@contextlib.contextmanager
def quiet_deprecations() -> Iterator[None]:
    """Silences cryptography's deprecation warnings about old certificates.

    Old certificates in the wild (and in OS bundles) trip them, lazily, when a field is read
    (e.g. a non-positive serial number). They are still usable, and a peer's odd certificate
    must not turn into a warning (or, under `-W error`, an exception) in sipua's own code.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


def _looks_like_der_private_key(data: bytes) -> bool:
    try:
        serialization.load_der_private_key(data, password=None)
    except TypeError:
        return True  # an encrypted key: still a key
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def check_extension(path: Path, allowed: Sequence[str]) -> None:
    """Refuses a file whose name does not end with one of `allowed` (case-insensitive).

    Raises:
        CertificateError: the extension is not in `allowed`.
    """
    if path.suffix.lower() not in allowed:
        raise CertificateError(
            f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
            f"use one of {', '.join(allowed)}"
        )


def read_input_file(path: Path, *, expected: str = "a certificate") -> bytes:
    """Reads a user-supplied certificate or key file (at most `MAX_FILE_BYTES`).

    Args:
        path: The file.
        expected: What it should hold, for the message about an empty file ("a private key").

    Raises:
        CertificateError: the file is missing, unreadable, empty or too large.
    """
    try:
        data = read_bounded(path, limit=MAX_FILE_BYTES)
    except StoreError as exc:
        raise CertificateError(str(exc)) from exc
    if not data.strip():
        raise CertificateError(f"{path} is empty; expected {expected}")
    return data


def load_certificate_file(
    path: Path, *, allowed: Sequence[str] = TRUSTED_EXTENSIONS
) -> list[x509.Certificate]:
    """Reads the certificates in a `.pem/.cer/.crt/.der` file.

    Raises:
        CertificateError: wrong extension, unreadable, empty, or not a certificate.
    """
    check_extension(path, allowed)
    return load_certificates(read_input_file(path), source=str(path))


def as_certificates(values: Iterable[CertificateInput], *, source: str) -> list[x509.Certificate]:
    """Flattens certificates and PEM/DER bytes (a PEM item may hold several) into one list."""
    result: list[x509.Certificate] = []
    for index, value in enumerate(values, start=1):
        if isinstance(value, x509.Certificate):
            result.append(ensure_well_formed(value, source=f"{source} #{index}"))
        else:
            result.extend(load_certificates(value, source=f"{source} #{index}"))
    return result


def load_private_key(data: bytes, *, source: str, passphrase: bytes | None = None) -> PrivateKey:
    """Parses the first private key in PEM text, or a DER private key.

    Raises:
        CertificateError: no key, an encrypted key without (or with a wrong) passphrase, or a
            key type that cannot sign certificates / TLS handshakes.
    """
    if _is_pem(data):
        key_blocks = [b for b in pem_blocks(data) if "PRIVATE KEY" in b.label]
        if not key_blocks:
            raise CertificateError(f"{source} holds no private key")
        encoded = key_blocks[0].data
        encrypted = key_blocks[0].label == "ENCRYPTED PRIVATE KEY" or b"ENCRYPTED" in encoded
        loader = serialization.load_pem_private_key
    else:
        encoded, encrypted, loader = data, False, serialization.load_der_private_key
    # An empty passphrase decrypts nothing (cryptography takes it as none given): it is no
    # passphrase, and a message about it must not call an encrypted key unencrypted.
    given = passphrase or None
    if encrypted and given is None:
        raise CertificateError(_needs_passphrase(source, passphrase))
    try:
        key = loader(encoded, password=given)
    except TypeError as exc:
        # cryptography raises TypeError for "encrypted but no password" and the reverse.
        if given is None:
            raise CertificateError(_needs_passphrase(source, passphrase)) from exc
        raise CertificateError(f"{source}: the private key is not encrypted") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        hint = "wrong passphrase or " if given is not None else ""
        raise CertificateError(
            f"{source}: cannot read the private key ({hint}not a valid key)"
        ) from exc
    if not isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey
        | dsa.DSAPrivateKey,
    ):
        raise CertificateError(f"{source}: unsupported private key type {type(key).__name__}")
    return key


def _needs_passphrase(source: str, passphrase: bytes | None) -> str:
    if passphrase is not None:
        return f"{source}: the private key is encrypted, and the passphrase given is empty"
    return (
        f"{source}: the private key is encrypted; give its passphrase, or decrypt it first "
        "(`openssl pkey -in KEY -out KEY.plain`)"
    )


def public_key_der(key: CertificatePublicKeyTypes) -> bytes:
    """The SubjectPublicKeyInfo DER of a public key (for equality checks)."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Tells whether `key` is the private half of `cert`'s public key."""
    return public_key_der(cert.public_key()) == public_key_der(key.public_key())


def certificate_pem(cert: x509.Certificate) -> bytes:
    """PEM text of one certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of a private key, for files written with mode 0600 only."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of the DER certificate, as 64 lowercase hex digits."""
    return cert.fingerprint(hashes.SHA256()).hex()


def display_name(cert: x509.Certificate) -> str:
    """A short human name: the subject's last CN, else the whole subject, else the serial."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if cns:
        value = cns[-1].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}"


def describe_key(key: CertificatePublicKeyTypes) -> str:
    """E.g. "EC secp256r1 (256 bits)", "RSA 2048 bits", "Ed25519"."""
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name} ({key.curve.key_size} bits)"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size} bits"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def signature_hash_name(cert: x509.Certificate) -> str:
    """The signature's hash ("sha256"...), "none" for EdDSA, or the algorithm OID if unknown."""
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return cert.signature_algorithm_oid.dotted_string
    return "none" if algorithm is None else algorithm.name


def subject_alt_names(cert: x509.Certificate) -> list[str]:
    """The subjectAltName entries as "DNS:x", "URI:x", "IP:x", "email:x" strings."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    result: list[str] = []
    for entry in san:
        if isinstance(entry, x509.DNSName):
            result.append(f"DNS:{entry.value}")
        elif isinstance(entry, x509.UniformResourceIdentifier):
            result.append(f"URI:{entry.value}")
        elif isinstance(entry, x509.IPAddress):
            result.append(f"IP:{entry.value}")
        elif isinstance(entry, x509.RFC822Name):
            result.append(f"email:{entry.value}")
        else:
            result.append(f"{type(entry).__name__}")
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class CertSummary:
    """What a person needs to recognise a certificate (used by `sipua cert` and status output)."""

    name: str
    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint: str
    serial: str
    key: str
    signature_hash: str
    subject_alt_names: tuple[str, ...]
    is_ca: bool
    self_signed: bool

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertSummary:
        """Summarises `cert`."""
        with quiet_deprecations():
            return cls._of(cert)

    @classmethod
    def _of(cls, cert: x509.Certificate) -> CertSummary:
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            is_ca = bc.ca
        except x509.ExtensionNotFound:
            is_ca = False
        return cls(
            name=display_name(cert),
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            fingerprint=fingerprint(cert),
            serial=f"{cert.serial_number:x}",
            key=describe_key(cert.public_key()),
            signature_hash=signature_hash_name(cert),
            subject_alt_names=tuple(subject_alt_names(cert)),
            is_ca=is_ca,
            self_signed=cert.issuer == cert.subject,
        )

    def as_json(self) -> dict[str, object]:
        """A JSON-ready dict (datetimes as ISO 8601 strings)."""
        return {
            "name": self.name,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "fingerprint_sha256": self.fingerprint,
            "serial": self.serial,
            "key": self.key,
            "signature_hash": self.signature_hash,
            "subject_alt_names": list(self.subject_alt_names),
            "is_ca": self.is_ca,
            "self_signed": self.self_signed,
        }
