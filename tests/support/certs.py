"""Certificate factories for tests: CAs, intermediates and leaves with every flaw sipua checks.

Everything is built with `cryptography` at test time (no keys are committed). Typical use::

    root = make_ca()                                   # self-signed root, EC P-256
    inter = make_ca("Test Intermediate", issuer=root)  # intermediate signed by root
    leaf = make_leaf(inter, uris=["sip:example.com"])  # server+client EKU, valid now
    verify_chain([leaf.cert, inter.cert], name="example.com", trusted=[root.cert], ...)

Flaws are keyword arguments: `expired=True`, `not_yet_valid=True`, `key_kind="rsa-1024"`,
`signature_hash="sha1"` (needs an RSA issuer: cryptography refuses to make SHA-1 signatures, so
the factory signs the to-be-signed bytes itself), `ca=False` (an issuer with CA:FALSE),
`key_cert_sign=False`, `eku=("email",)`, `san=False` (CN only), `critical_unknown=True`; any
other extension through `extensions=[(x509.NameConstraints(...), True)]`, and exact names through
`subject=` / `issuer_name=` (string types, case, a key-rollover CA named like its issuer).

All times are relative to `NOW` unless `at` is given, so tests can pin the clock.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

KeyKind = Literal["ec-p256", "ec-p384", "ec-p192", "rsa-1024", "rsa-2048", "ed25519"]
SignatureHash = Literal["sha256", "sha384", "sha1", "md5"]
Eku = Literal["server", "client", "sip-domain", "email", "code-signing", "any"]

#: The reference "now" of the factories (tests pass `at=NOW` to `verify_chain`).
NOW: Final = dt.datetime.now(dt.UTC).replace(microsecond=0)
SIP_DOMAIN_OID: Final = ObjectIdentifier("1.3.6.1.5.5.7.3.20")

_EKU_OIDS: Final = {
    "server": ExtendedKeyUsageOID.SERVER_AUTH,
    "client": ExtendedKeyUsageOID.CLIENT_AUTH,
    "sip-domain": SIP_DOMAIN_OID,
    "email": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "code-signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}
_HASHES: Final = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}
# DER of the AlgorithmIdentifier OIDs for RSA PKCS#1 v1.5 signatures (RFC 8017 App. C).
_RSA_SHA256_OID: Final = bytes.fromhex("06092a864886f70d01010b")
_RSA_LEGACY_OIDS: Final = {
    "sha1": bytes.fromhex("06092a864886f70d010105"),
    "md5": bytes.fromhex("06092a864886f70d010104"),
}


def new_key(kind: KeyKind = "ec-p256") -> CertificateIssuerPrivateKeyTypes:
    """Generates a private key of the given kind."""
    if kind == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ec-p192":
        return ec.generate_private_key(ec.SECP192R1())
    if kind == "rsa-1024":
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)
    if kind == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate with its private key, and the encodings tests need."""

    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    @property
    def pem(self) -> bytes:
        """The certificate as PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        """The certificate as DER."""
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def encrypted_key_pem(self, passphrase: bytes) -> bytes:
        """The private key as encrypted PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint, lowercase hex (sipua's certificate id)."""
        return self.cert.fingerprint(hashes.SHA256()).hex()


def pem_bundle(*items: Issued) -> bytes:
    """Concatenates the PEM certificates of `items` (leaf first for a chain)."""
    return b"".join(item.pem for item in items)


def _name(cn: str | None, org: str = "sipua tests") -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if cn is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attributes)


def _validity(
    at: dt.datetime | None, *, expired: bool, not_yet_valid: bool, days: int
) -> tuple[dt.datetime, dt.datetime]:
    base = NOW if at is None else at
    if expired:
        return base - dt.timedelta(days=days + 30), base - dt.timedelta(days=30)
    if not_yet_valid:
        return base + dt.timedelta(days=30), base + dt.timedelta(days=days + 30)
    return base - dt.timedelta(hours=1), base + dt.timedelta(days=days)


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _sign(
    builder: x509.CertificateBuilder,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    signature_hash: SignatureHash,
) -> x509.Certificate:
    if isinstance(issuer_key, ed25519.Ed25519PrivateKey):
        return builder.sign(issuer_key, None)
    if signature_hash in _HASHES:
        return builder.sign(issuer_key, _HASHES[signature_hash]())
    # cryptography will not produce MD5/SHA-1 certificate signatures any more, so sign with
    # SHA-256, swap the algorithm OID in the to-be-signed part (same length) and sign those bytes.
    if not isinstance(issuer_key, rsa.RSAPrivateKey):
        raise TypeError("MD5/SHA-1 signatures need an RSA issuer key (key_kind='rsa-2048')")
    template = builder.sign(issuer_key, hashes.SHA256())
    legacy_oid = _RSA_LEGACY_OIDS[signature_hash]
    tbs = template.tbs_certificate_bytes.replace(_RSA_SHA256_OID, legacy_oid, 1)
    algorithm = hashes.SHA1() if signature_hash == "sha1" else hashes.MD5()
    signature = issuer_key.sign(tbs, padding.PKCS1v15(), algorithm)
    algorithm_id = _der(0x30, legacy_oid + b"\x05\x00")
    der = _der(0x30, tbs + algorithm_id + _der(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


def _ski_aki(
    builder: x509.CertificateBuilder,
    key: CertificateIssuerPrivateKeyTypes,
    issuer: Issued | None,
    key_ids: Sequence[str] = ("ski", "aki"),
) -> x509.CertificateBuilder:
    if "ski" in key_ids:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    if "aki" not in key_ids:
        return builder
    issuer_public = key.public_key() if issuer is None else issuer.key.public_key()
    return builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False
    )


def make_ca(
    cn: str = "sipua Test Root CA",
    *,
    issuer: Issued | None = None,
    key_kind: KeyKind = "ec-p256",
    ca: bool = True,
    basic_constraints: bool = True,
    path_length: int | None = None,
    key_cert_sign: bool = True,
    expired: bool = False,
    not_yet_valid: bool = False,
    signature_hash: SignatureHash = "sha256",
    at: dt.datetime | None = None,
    days: int = 3650,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    key_ids: Sequence[str] = ("ski", "aki"),
    subject: x509.Name | None = None,
    issuer_name: x509.Name | None = None,
) -> Issued:
    """Makes a CA certificate: a self-signed root, or an intermediate when `issuer` is given.

    Args:
        cn: The subject CN (keep it unique per test: issuers are found by name).
        issuer: The CA that signs this one (None: self-signed root).
        key_kind: Key type, e.g. "rsa-1024" for a weak CA key.
        ca: basicConstraints CA flag; False makes a "CA:FALSE issuer".
        basic_constraints: False leaves the extension out entirely.
        path_length: basicConstraints pathLenConstraint.
        key_cert_sign: False leaves keyCertSign out of keyUsage.
        expired: Validity ended 30 days before `at`.
        not_yet_valid: Validity starts 30 days after `at`.
        signature_hash: "sha1"/"md5" need an RSA issuer key.
        at: The reference time (default `NOW`).
        days: Validity length.
        extensions: More extensions, each with its criticality.
        key_ids: The key identifiers to include, of "ski" and "aki" (leave one out for a
            certificate RFC 5280 §4.2.1.1-2 calls non-conforming).
        subject: The exact subject name (default: O=sipua tests, CN=`cn`).
        issuer_name: The exact issuer name written in the certificate (default: the issuer's
            subject, or `subject` for a root).
    """
    key = new_key(key_kind)
    not_before, not_after = _validity(at, expired=expired, not_yet_valid=not_yet_valid, days=days)
    subject = _name(cn) if subject is None else subject
    if issuer_name is None:
        issuer_name = subject if issuer is None else issuer.cert.subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if basic_constraints:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=key_cert_sign,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    builder = _ski_aki(builder, key, issuer, key_ids)
    return Issued(_sign(builder, key if issuer is None else issuer.key, signature_hash), key)


def make_leaf(
    issuer: Issued | None,
    *,
    cn: str | None = "sip.example.com",
    dns: Sequence[str] = (),
    uris: Sequence[str] = (),
    ips: Sequence[str] = (),
    san: bool = True,
    eku: Sequence[Eku] | None = ("server", "client"),
    key_kind: KeyKind = "ec-p256",
    expired: bool = False,
    not_yet_valid: bool = False,
    signature_hash: SignatureHash = "sha256",
    critical_unknown: bool = False,
    at: dt.datetime | None = None,
    days: int = 365,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    key_ids: Sequence[str] = ("ski", "aki"),
    subject: x509.Name | None = None,
    issuer_name: x509.Name | None = None,
) -> Issued:
    """Makes an end-entity certificate.

    Args:
        issuer: The signing CA, or None for a self-signed leaf.
        cn: The subject CN (None: no CN).
        dns: subjectAltName dNSName entries.
        uris: subjectAltName URI entries (e.g. "sip:example.com").
        ips: subjectAltName iPAddress entries.
        san: False leaves subjectAltName out even if entries were given (a CN-only cert).
            With True and no entries, no extension is added either.
        eku: extendedKeyUsage purposes; None leaves the extension out.
        key_kind: Key type ("rsa-1024" for a weak key).
        expired: Validity ended 30 days before `at`.
        not_yet_valid: Validity starts 30 days after `at`.
        signature_hash: "sha1"/"md5" need an RSA issuer key.
        critical_unknown: Adds an unknown extension marked critical.
        at: The reference time (default `NOW`).
        days: Validity length.
        extensions: More extensions (keyUsage...), each with its criticality.
        key_ids: The key identifiers to include (see `make_ca`).
        subject: The exact subject name (default: O=sipua tests, CN=`cn`).
        issuer_name: The exact issuer name written in the certificate (default: the issuer's
            subject).
    """
    key = new_key(key_kind)
    not_before, not_after = _validity(at, expired=expired, not_yet_valid=not_yet_valid, days=days)
    subject = _name(cn) if subject is None else subject
    if issuer_name is None:
        issuer_name = subject if issuer is None else issuer.cert.subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    entries: list[x509.GeneralName] = [
        *(x509.DNSName(d) for d in dns),
        *(x509.UniformResourceIdentifier(u) for u in uris),
        *(x509.IPAddress(ipaddress.ip_address(i)) for i in ips),
    ]
    if san and entries:
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    if eku is not None:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([_EKU_OIDS[e] for e in eku]), critical=False
        )
    if critical_unknown:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"),
            critical=True,
        )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    builder = _ski_aki(builder, key, issuer, key_ids)
    return Issued(_sign(builder, key if issuer is None else issuer.key, signature_hash), key)
