"""Issuing sipua's own device certificates: the per-installation device CA and its leaves.

A desk phone leaves the factory with a unique certificate per MAC address and a generic one, both
issued by the vendor's CA. sipua's analogue is a device CA created on first use in each
installation (its key never leaves the data directory) that issues:

- a unique certificate per MAC address: CN=sipua-<mac>, subjectAltName URI urn:dev:mac:<mac>
  (the RFC 9039 device URN), and
- a generic certificate: CN=sipua generic device.

Both are ECDSA P-256 (cheaper handshakes than RSA) with extendedKeyUsage serverAuth + clientAuth,
because the same certificate serves when sipua is the TLS server and as its client certificate
(mutual TLS), as on the phone. They carry what OpenSSL (and so Kamailio) expect of a well-formed
chain: a random 159-bit serial, SKI/AKI, basicConstraints CA:FALSE, and validity starting one
hour in the past to tolerate clock skew between peers.

A registrar that verifies client certificates can trust the device CA (`sipua cert export-ca`).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sipua.errors import ConfigError

DEVICE_CA_DAYS: Final = 20 * 365
DEVICE_CERT_DAYS: Final = 5 * 365
#: Certificates are issued valid from this long ago, for peers whose clocks run behind.
BACKDATE: Final = dt.timedelta(hours=1)
#: A device certificate this close to expiry is re-issued on next use.
RENEW_BEFORE: Final = dt.timedelta(days=30)
ORGANIZATION: Final = "sipua"
GENERIC_CN: Final = "sipua generic device"

_MAC_SEPARATORS = re.compile(r"[:\-.]")
_MAC_HEX = re.compile(r"[0-9a-f]{12}")


def normalize_mac(mac: str) -> str:
    """Returns a MAC address as 12 lowercase hex digits ("00:15:65:AA:BB:CC" -> "001565aabbcc").

    Raises:
        ConfigError: `mac` is not a 48-bit MAC address.
    """
    digits = _MAC_SEPARATORS.sub("", mac.strip()).lower()
    if not _MAC_HEX.fullmatch(digits):
        raise ConfigError(
            f"invalid MAC address {mac!r}: expected 12 hex digits, e.g. 00:15:65:aa:bb:cc"
        )
    return digits


def machine_mac() -> str | None:
    """This machine's MAC address, or None when it has none Python can find.

    `uuid.getnode()` falls back to a random number with the multicast bit set (RFC 4122 §4.5)
    when it finds no hardware address; such a value is not a MAC and must not name a device.
    """
    node = uuid.getnode()
    if (node >> 40) & 0x01:
        return None
    return f"{node:012x}"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def new_device_ca(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Creates a self-signed device CA (ECDSA P-256, pathlen 0) for this installation."""
    key = _key()
    installation = uuid.uuid4().hex[:12]
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, f"sipua device CA {installation}"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=DEVICE_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_device_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    mac: str | None,
    now: dt.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Issues a device certificate: unique for `mac` (normalized), or generic when None.

    It ends `DEVICE_CERT_DAYS` after `now`, or with the CA if that comes first.

    Raises:
        ValueError: the CA has ended at `now` (`DeviceStore` refuses that case first, with
            what to do).
    """
    key = _key()
    cn = GENERIC_CN if mac is None else f"sipua-{mac}"
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, cn),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(issued_until(ca_cert, now))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if mac is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"urn:dev:mac:{mac}")]),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def issued_until(ca_cert: x509.Certificate, now: dt.datetime) -> dt.datetime:
    """When a device certificate `ca_cert` issues at `now` ends: `DEVICE_CERT_DAYS` later, or
    with the CA if that comes first (a certificate cannot outlive its issuer)."""
    return min(now + dt.timedelta(days=DEVICE_CERT_DAYS), ca_cert.not_valid_after_utc)


def needs_renewal(cert: x509.Certificate, ca_cert: x509.Certificate, now: dt.datetime) -> bool:
    """True when `cert` is not yet valid, or expires within `RENEW_BEFORE` (or has expired) and
    one `ca_cert` issued now would end later.

    A certificate that already ends with its CA is kept: re-issuing it would give a new key
    and no more time, at every check until the CA ends.
    """
    if now < cert.not_valid_before_utc:
        return True
    if now + RENEW_BEFORE <= cert.not_valid_after_utc:
        return False
    return issued_until(ca_cert, now) > cert.not_valid_after_utc
