"""Checking what a provisioning URL served, before anything is stored.

A trusted certificates URL serves PEM (one or more certificates) or one DER certificate, at
most `MAX_CUSTOM_TRUSTED` of them and never a private key (a key published at a URL is no
longer private, and a trusted list is no place for one). A device certificate URL serves PEM
with the certificate, its private key and optionally its chain; the key must belong to the
certificate (the check is `DeviceStore.import_data`'s). These are parsers of peer input: only
`CertificateError` leaves them, naming the URL.
"""

from __future__ import annotations

from cryptography import x509

from sipua.errors import CertificateError
from sipua.tls.certs import load_certificates
from sipua.tls.stores.trusted import MAX_CUSTOM_TRUSTED


def trusted_certificates(data: bytes, *, source: str) -> list[x509.Certificate]:
    """The certificates a trusted certificates URL served.

    Raises:
        CertificateError: not certificates, a private key among them, or more than
            `MAX_CUSTOM_TRUSTED`.
    """
    # Any PEM private-key marker, even of a broken block: a trusted list never holds one.
    if b"PRIVATE KEY-----" in data:
        raise CertificateError(
            f"{source} serves a private key; a trusted certificates URL must serve "
            "certificates only (and that key is no longer private: replace it)"
        )
    certs = load_certificates(data, source=source)
    if len(certs) > MAX_CUSTOM_TRUSTED:
        raise CertificateError(
            f"{source} serves {len(certs)} certificates; at most {MAX_CUSTOM_TRUSTED} custom "
            "trusted certificates are allowed"
        )
    return certs
