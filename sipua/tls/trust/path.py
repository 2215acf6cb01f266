"""RFC 5280 path validation, done by cryptography's verifier under SIP's rules.

Theory of operation: sipua does not build or validate certification paths itself. It hands
the presented chain to `cryptography.x509.verification` (path building, signatures, validity,
basicConstraints and path length, keyUsage of issuers, name constraints on subjectAltName,
critical extensions, depth), configured here:

- **A client verifier, for servers too.** cryptography's server verifier matches a web-PKI
  subject (DNS or IP in subjectAltName, wildcards, no sip: URIs, no CN) and requires a
  subjectAltName; RFC 5922 §7.1 replaces that rule for SIP (sip: URI first, CN when there is
  no subjectAltName), and `identity.py` applies it after this module. The client verifier
  checks no subject name, and its extended key usage rule is replaced by ours (below), so it
  serves both purposes.
- **The end-entity extension policy** is RFC 5280's and RFC 5924's, not the CA/Browser
  Forum's: extendedKeyUsage absent, or allowing id-kp-sipDomain, anyExtendedKeyUsage or the
  TLS role (serverAuth for a server, clientAuth for a client: every deployed SIP peer's
  certificate has them); a keyUsage, if present, allows a TLS key use; a CA certificate may be
  the leaf (RFC 5280 says nothing against it); authorityKeyIdentifier present unless
  self-signed, subjectAltName critical when the subject is empty, no keyCertSign without cA
  (RFC 5280 §4.2.1.1, §4.2.1.6, §4.2.1.9).
- **The CA extension policy** is cryptography's default (basicConstraints critical with cA,
  keyUsage with keyCertSign, well-formed key identifiers), with RFC 5280's structural rules the
  web defaults leave out (subjectKeyIdentifier on every CA, §4.2.1.2; a non-empty subject,
  §4.1.2.6; authorityKeyIdentifier unless self-signed, §4.2.1.1), a CA's extendedKeyUsage
  (when present) allowing the purpose, and certificatePolicies accepted critical: sipua
  validates with any-policy as the initial policy set and requires no explicit policy
  (§6.1.1 (c), (f)).

Failures come back as `VerificationError` text; `explain` turns that text into sipua's reason
codes and a sentence naming the certificate concerned (see `reasons.py`). Rules the library
does not express and sipua keeps are in `policy.py`, each with the reason.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from typing import Final, Literal

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

Purpose = Literal["server", "client"]

#: id-kp-sipDomain, RFC 5924 §3.
SIP_DOMAIN_EKU: Final = ObjectIdentifier("1.3.6.1.5.5.7.3.20")
#: Intermediate CAs allowed between the leaf and the anchor (self-issued ones not counted);
#: real SIP chains have one or two.
MAX_CHAIN_DEPTH: Final = 6
#: Anchor sets whose `Store` is kept (the OS bundle with or without the custom certificates).
MAX_CACHED_STORES: Final = 8


class Refusal(Exception):
    """Raised by sipua's extension validators; `reasons.explain` reads it back from the text.

    cryptography reports a validator's exception as "Python extension validator failed:
    Refusal: CODE: REASON", so the code and the sentence travel through the library intact.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")


def cert_name(cert: x509.Certificate) -> str:
    """A certificate's subject for messages: quoted RFC 4514, or its serial number."""
    return repr(cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}")


def _role(purpose: Purpose) -> tuple[ObjectIdentifier, str]:
    if purpose == "server":
        return ExtendedKeyUsageOID.SERVER_AUTH, "TLS server (serverAuth)"
    return ExtendedKeyUsageOID.CLIENT_AUTH, "TLS client (clientAuth)"


def _eku_names(eku: x509.ExtendedKeyUsage) -> str:
    return ", ".join(getattr(oid, "_name", oid.dotted_string) for oid in eku) or "none"


_EkuCheck = Callable[[Policy, x509.Certificate, x509.ExtendedKeyUsage | None], None]


def _leaf_eku(purpose: Purpose) -> _EkuCheck:
    wanted, role = _role(purpose)
    allowed = {wanted, SIP_DOMAIN_EKU, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}

    def check(_policy: Policy, cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
        # RFC 5924 §4: no extendedKeyUsage means no restriction; otherwise it must allow SIP
        # domain use, any purpose, or the TLS role.
        if eku is not None and not allowed.intersection(eku):
            raise Refusal(
                "bad-usage",
                f"certificate {cert_name(cert)} is not for use as a {role}; its "
                f"extendedKeyUsage allows: {_eku_names(eku)}",
            )

    return check


def _ca_eku(purpose: Purpose) -> _EkuCheck:
    wanted, role = _role(purpose)
    allowed = {wanted, SIP_DOMAIN_EKU, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}

    def check(_policy: Policy, cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
        # A CA restricted to other purposes cannot vouch for a TLS peer (OpenSSL and every web
        # verifier chain EKUs this way).
        if eku is not None and not allowed.intersection(eku):
            raise Refusal(
                "bad-usage",
                f"CA {cert_name(cert)} may not issue certificates for a {role}; its "
                f"extendedKeyUsage allows: {_eku_names(eku)}",
            )

    return check


def _leaf_key_usage(_policy: Policy, cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    # RFC 5280 §4.2.1.3, RFC 5246 §7.4.2 / RFC 8446 §4.4.2: a TLS peer's key signs the
    # handshake (digitalSignature), or, in TLS 1.2 RSA/ECDH key exchange, encrypts or agrees
    # the premaster secret (keyEncipherment, keyAgreement). A keyUsage with none of them says
    # the key is not for TLS at all (a CRL-signing key, say).
    if usage is None:
        return
    if not (usage.digital_signature or usage.key_encipherment or usage.key_agreement):
        raise Refusal(
            "bad-usage",
            f"certificate {cert_name(cert)} may not be used for TLS: its keyUsage allows none "
            "of digitalSignature, keyEncipherment, keyAgreement (RFC 5280 §4.2.1.3)",
        )
    # RFC 5280 §4.2.1.9: keyCertSign without cA is a contradiction (a CA certificate as the
    # leaf is fine, with cA asserted).
    if usage.key_cert_sign:
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise Refusal(
                "invalid-chain",
                f"certificate {cert_name(cert)} asserts keyCertSign without basicConstraints "
                "cA, which RFC 5280 §4.2.1.9 forbids",
            )


def _authority_key_id(
    _policy: Policy, cert: x509.Certificate, aki: x509.AuthorityKeyIdentifier | None
) -> None:
    # RFC 5280 §4.2.1.1: keyIdentifier MUST be in every certificate a conforming CA issues;
    # only a self-signed certificate may leave it out.
    if aki is None and cert.issuer != cert.subject:
        raise Refusal(
            "invalid-chain",
            f"certificate {cert_name(cert)} has no authorityKeyIdentifier, which RFC 5280 "
            "§4.2.1.1 requires in every certificate but a self-signed one",
        )
    if aki is not None and aki.key_identifier is None:
        raise Refusal(
            "invalid-chain",
            f"certificate {cert_name(cert)} has an authorityKeyIdentifier without "
            "keyIdentifier (RFC 5280 §4.2.1.1)",
        )


def _ca_identity(
    _policy: Policy, cert: x509.Certificate, ski: x509.SubjectKeyIdentifier | None
) -> None:
    # Runs for every CA certificate (as the subjectKeyIdentifier validator, which the library
    # calls whether the extension is there or not) and checks how a CA names itself:
    # RFC 5280 §4.2.1.2: every CA certificate carries a subjectKeyIdentifier; RFC 5280
    # §4.1.2.6: a CA's subject is a non-empty name. A self-signed root is exempt from the
    # first: a trust anchor is an input to path validation (§6.1.1 d), not a certificate it
    # checks, and roots of the OS bundle without the extension (Hongkong Post Root CA 1,
    # TWCA Global Root CA) still anchor real servers' chains.
    if ski is None and cert.subject != cert.issuer:
        raise Refusal(
            "invalid-chain",
            f"CA {cert_name(cert)} has no subjectKeyIdentifier, which RFC 5280 §4.2.1.2 "
            "requires in every CA certificate",
        )
    if not cert.subject.rdns:
        raise Refusal(
            "invalid-chain",
            f"a CA certificate (serial {cert.serial_number:x}) has an empty subject, which "
            "RFC 5280 §4.1.2.6 forbids",
        )


def _san_criticality(
    _policy: Policy, cert: x509.Certificate, _san: x509.SubjectAlternativeName | None
) -> None:
    # RFC 5280 §4.2.1.6: with an empty subject, the names are in subjectAltName alone, and
    # the extension MUST be critical.
    if _san is None or cert.subject.rdns:
        return
    if not cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical:
        raise Refusal(
            "invalid-chain",
            f"certificate {cert_name(cert)} has an empty subject and a non-critical "
            "subjectAltName (RFC 5280 §4.2.1.6 requires it critical)",
        )


def _ee_policy(purpose: Purpose) -> ExtensionPolicy:
    return (
        ExtensionPolicy.permit_all()
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _leaf_eku(purpose))
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _leaf_key_usage)
        .may_be_present(x509.AuthorityKeyIdentifier, Criticality.NON_CRITICAL, _authority_key_id)
        .may_be_present(x509.SubjectKeyIdentifier, Criticality.NON_CRITICAL, None)
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, _san_criticality)
        .may_be_present(x509.AuthorityInformationAccess, Criticality.NON_CRITICAL, None)
        .may_be_present(x509.CertificatePolicies, Criticality.AGNOSTIC, None)
    )


def _ca_policy(purpose: Purpose) -> ExtensionPolicy:
    return (
        ExtensionPolicy.webpki_defaults_ca()
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _ca_eku(purpose))
        .may_be_present(x509.AuthorityKeyIdentifier, Criticality.NON_CRITICAL, _authority_key_id)
        .may_be_present(x509.SubjectKeyIdentifier, Criticality.NON_CRITICAL, _ca_identity)
        .may_be_present(x509.CertificatePolicies, Criticality.AGNOSTIC, None)
    )


_POLICIES: Final = {
    purpose: (_ca_policy(purpose), _ee_policy(purpose)) for purpose in ("server", "client")
}

_stores_lock = threading.Lock()
_stores: dict[tuple[int, tuple[x509.Certificate, ...]], tuple[object, Store]] = {}


def anchor_store(base: Sequence[x509.Certificate], extra: Sequence[x509.Certificate]) -> Store:
    """A `Store` of `base` (the OS bundle, kept by identity) plus `extra` (custom ones).

    Building a store of ~150 roots costs little, but every handshake verifies: the stores of
    the last few anchor sets are kept.
    """
    key = (id(base), tuple(extra))
    with _stores_lock:
        entry = _stores.get(key)
        if entry is not None and entry[0] is base:
            return entry[1]
        store = Store([*base, *extra])
        if len(_stores) >= MAX_CACHED_STORES:
            _stores.clear()
        _stores[key] = (base, store)
        return store


def validate(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    store: Store,
    *,
    at: dt.datetime,
    purpose: Purpose,
) -> list[x509.Certificate] | str:
    """The validated path (leaf to anchor), or the library's reason why there is none.

    Args:
        leaf: The peer's certificate.
        intermediates: The other certificates the peer sent, in any order.
        store: The trust anchors (see `anchor_store`).
        at: The validation time.
        purpose: "server" or "client": which extended key usage the leaf (and its CAs) need.
    """
    ca_policy, ee_policy = _POLICIES[purpose]
    verifier = (
        PolicyBuilder()
        .store(store)
        .time(at)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        return list(verifier.verify(leaf, list(intermediates)).chain)
    except VerificationError as exc:
        return str(exc)
    except x509.UnsupportedGeneralNameType as exc:
        return f"unsupported name constraint: {exc}"
