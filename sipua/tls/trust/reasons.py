"""Why a chain was refused, in the user's words: cryptography's errors as sipua's reason codes.

cryptography's verifier says why it found no valid path in one line of text ("validation
failed: candidates exhausted: cert is not valid at validation time", "... (encountered
processing <Certificate(...)>)"). `explain` maps that line to one `Problem`: a reason code of
`verify_chain`'s contract and a sentence naming the certificate concerned, what was expected
and what was presented. The library names a certificate only when the failure was on the leaf
or the last candidate; otherwise the certificate is found among the presented chain and the
anchors by the property the library complained about (only to name it: the verdict is the
library's). Text the mapping does not know is still refused, as `invalid-chain`, with the
library's own words.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import ExtensionOID

from sipua.tls.trust.path import MAX_CHAIN_DEPTH, cert_name

VerifyCode = Literal[
    "ok",
    "untrusted-issuer",
    "expired",
    "not-yet-valid",
    "name-mismatch",
    "ca-type-not-accepted",
    "weak-key",
    "weak-signature",
    "bad-usage",
    "invalid-chain",
]

MIN_RSA_BITS: Final = 2048
MIN_DSA_BITS: Final = 2048
MIN_EC_BITS: Final = 224
_WEAK_HASHES: Final = (hashes.MD5, hashes.SHA1)

_ENCOUNTERED: Final = re.compile(r" \(encountered processing (<Certificate\(.*\)>)\)$")
_REFUSAL: Final = re.compile(r"Python extension validator failed: Refusal: ([a-z-]+): (.*)$")
_REFUSAL_CODES: Final[dict[str, VerifyCode]] = {
    "bad-usage": "bad-usage",
    "invalid-chain": "invalid-chain",
}
_EXTENSION: Final = re.compile(r"invalid extension: ([0-9.]+): (.*)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One failed check: its code, a sentence, and the subject of the certificate concerned."""

    code: VerifyCode
    reason: str
    subject: str | None = None


def _problem(code: VerifyCode, reason: str, cert: x509.Certificate | None = None) -> Problem:
    return Problem(
        code=code, reason=reason, subject=None if cert is None else cert.subject.rfc4514_string()
    )


def _first(
    certs: Iterable[x509.Certificate], test: Callable[[x509.Certificate], bool]
) -> x509.Certificate | None:
    return next((cert for cert in certs if test(cert)), None)


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _extension_name(oid: str) -> str:
    known = getattr(x509.ObjectIdentifier(oid), "_name", None)
    if isinstance(known, str) and not known.startswith("Unknown"):
        return f"{known} ({oid})"
    return oid


# -- sipua's own strength floor (shared by the verified and the refused case) --------------


def key_problem(cert: x509.Certificate) -> Problem | None:
    """A weak or unusable public key on `cert`, or None."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        reason = f"certificate {cert_name(cert)} has a public key sipua cannot use"
        return _problem("weak-key", reason, cert)
    weak = None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        weak = f"an RSA key of {key.key_size} bits (at least {MIN_RSA_BITS} needed)"
    elif isinstance(key, dsa.DSAPublicKey) and key.key_size < MIN_DSA_BITS:
        weak = f"a DSA key of {key.key_size} bits (at least {MIN_DSA_BITS} needed)"
    elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < MIN_EC_BITS:
        weak = (
            f"an EC key on {key.curve.name} ({key.curve.key_size} bits; at least "
            f"{MIN_EC_BITS} needed)"
        )
    if weak is None:
        return None
    return _problem("weak-key", f"certificate {cert_name(cert)} has {weak}", cert)


def signature_problem(cert: x509.Certificate) -> Problem | None:
    """An MD5 or SHA-1 signature on `cert`, or None."""
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if not isinstance(algorithm, _WEAK_HASHES):
        return None
    return _problem(
        "weak-signature",
        f"certificate {cert_name(cert)} is signed with {algorithm.name.upper()}, which is "
        "broken; ask the issuer for a SHA-256 certificate",
        cert,
    )


def strength_problems(certs: Sequence[x509.Certificate], *, anchored: bool) -> list[Problem]:
    """Weak keys and weak signatures on `certs` (a path, or the presented chain).

    With `anchored`, the last certificate is the trust anchor: its self-signature carries no
    trust (RFC 5280 §6.1), so its hash does not matter. A presented chain that reached no anchor
    (`anchored=False`) has every signature judged but a certificate's signature on itself.
    """
    problems = [p for p in map(key_problem, certs) if p is not None]
    signed = certs[:-1] if anchored else [c for c in certs if c.issuer != c.subject]
    problems.extend(p for p in map(signature_problem, signed) if p is not None)
    return problems


# -- the library's errors --------------------------------------------------------------------


def _time_problem(cert: x509.Certificate, at: dt.datetime) -> Problem:
    checked = f"(checked at {at:%Y-%m-%d %H:%M:%S} UTC)"
    if at < cert.not_valid_before_utc:
        return _problem(
            "not-yet-valid",
            f"certificate {cert_name(cert)} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC {checked}; check the clock",
            cert,
        )
    return _problem(
        "expired",
        f"certificate {cert_name(cert)} expired on "
        f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC {checked}",
        cert,
    )


def _forged(chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]) -> Problem:
    # Name the certificate whose issuer (by name) is known but whose signature no key of that
    # name verifies.
    for child in chain:
        issuers = [c for c in (*chain, *anchors) if c.subject == child.issuer and c is not child]
        if not issuers:
            continue
        for issuer in issuers:
            try:
                child.verify_directly_issued_by(issuer)
            except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
                continue
            break
        else:
            return _problem(
                "untrusted-issuer",
                f"the signature on {cert_name(child)} does not verify with the key of "
                f"{cert_name(issuers[0])} (forged or corrupted certificate)",
                child,
            )
    leaf = chain[0]
    return _problem(
        "untrusted-issuer",
        f"a signature in the chain of {cert_name(leaf)} does not verify with the key of its "
        "issuer (forged or corrupted certificate)",
        leaf,
    )


def untrusted(leaf: x509.Certificate, anchors_count: int) -> Problem:
    """No path from `leaf` to any of the `anchors_count` trusted certificates."""
    if leaf.issuer == leaf.subject:
        reason = (
            f"certificate {cert_name(leaf)} is self-signed and not in the trusted list; import "
            "it with `sipua cert import-trusted` (or pass it as --trusted-cert) to trust it"
        )
    else:
        reason = (
            f"no trusted CA issued {cert_name(leaf)} (its issuer is "
            f"{leaf.issuer.rfc4514_string()!r}, not among {anchors_count} trusted "
            "certificates); import the issuing CA with `sipua cert import-trusted`, or ask the "
            "server to send its intermediate certificates"
        )
    return _problem("untrusted-issuer", reason, leaf)


def _is_ca(cert: x509.Certificate) -> bool:
    bc = _extension(cert, x509.BasicConstraints)
    return isinstance(bc, x509.BasicConstraints) and bc.ca


def _lacks_key_cert_sign(cert: x509.Certificate) -> bool:
    usage = _extension(cert, x509.KeyUsage)
    return isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign


def _has_critical(oid: str) -> Callable[[x509.Certificate], bool]:
    return lambda cert: any(e.critical and e.oid.dotted_string == oid for e in cert.extensions)


def _constraining_ca(cert: x509.Certificate) -> bool:
    return _extension(cert, x509.NameConstraints) is not None


def explain(
    message: str,
    *,
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    anchors_count: int,
    at: dt.datetime,
) -> Problem:
    """The `Problem` behind one of cryptography's `VerificationError` texts.

    Args:
        message: The library's text.
        chain: The presented chain, leaf first.
        anchors: The trust anchors the library was given, to name one it complained about.
        anchors_count: How many anchors there were (for the untrusted message).
        at: The validation time.
    """
    text = message.removeprefix("validation failed: ")
    named = None
    if found := _ENCOUNTERED.search(text):
        text = text[: found.start()]
        named = _first((*chain, *anchors), lambda c: repr(c) == found.group(1))
    text = text.removeprefix("candidates exhausted: ")
    leaf, issuers = chain[0], [*chain[1:], *anchors]
    everyone = [*chain, *anchors]

    if refusal := _REFUSAL.search(text):
        code = _REFUSAL_CODES.get(refusal.group(1))
        if code is not None:
            subject = None if named is None else named.subject.rfc4514_string()
            return Problem(code=code, reason=refusal.group(2), subject=subject)
    if "not valid at validation time" in text:
        cert = named or _first(
            everyone, lambda c: not c.not_valid_before_utc <= at <= c.not_valid_after_utc
        )
        if cert is not None:
            return _time_problem(cert, at)
        return _problem("expired", f"a certificate of the chain is not valid at {at:%Y-%m-%d}")
    if "no interior errors" in text:
        return untrusted(leaf, anchors_count)
    if "exceeds max depth" in text:
        # The library keeps trying a presented self-signed root as its own issuer until the
        # depth limit: the chain ends in a root that is not trusted.
        trusted = set(anchors)
        root = _first(chain[1:], lambda c: c.issuer == c.subject and c not in trusted)
        if root is not None:
            return _problem(
                "untrusted-issuer",
                f"the chain of {cert_name(leaf)} ends in the root {cert_name(root)}, which is "
                f"not among {anchors_count} trusted certificates; import that root with `sipua "
                "cert import-trusted` if you trust it",
                root,
            )
        return _problem(
            "invalid-chain",
            f"the chain of {cert_name(leaf)} has more intermediate CAs than sipua follows "
            f"({MAX_CHAIN_DEPTH})",
            leaf,
        )
    if "signature does not match" in text:
        return _forged(chain, anchors)
    if "key is too weak" in text or "Forbidden public key algorithm" in text:
        weak = _first(everyone, lambda c: key_problem(c) is not None)
        if weak is not None and (problem := key_problem(weak)) is not None:
            return problem
        cert = named or leaf
        return _problem(
            "weak-key",
            f"a certificate of the chain of {cert_name(cert)} has a public key type sipua's "
            "verifier does not accept (RSA of 2048 bits or more, or ECDSA on P-256, P-384 or "
            "P-521, are accepted)",
            cert,
        )
    if "Forbidden signature algorithm" in text:
        weak = _first(everyone, lambda c: signature_problem(c) is not None)
        if weak is not None and (problem := signature_problem(weak)) is not None:
            return problem
        cert = named or leaf
        return _problem(
            "invalid-chain",
            f"a certificate of the chain of {cert_name(cert)} is signed with an algorithm "
            "sipua's verifier does not accept (RSA or ECDSA with SHA-256, -384 or -512 are "
            "accepted)",
            cert,
        )
    if "path length constraint" in text:
        limits = [
            (bc.path_length, c)
            for c in issuers
            if isinstance(bc := _extension(c, x509.BasicConstraints), x509.BasicConstraints)
            and bc.path_length is not None
        ]
        if limits:
            limit, tight = min(limits, key=lambda item: item[0])
            reason = (
                f"CA {cert_name(tight)} allows {limit} intermediate CA(s) below it "
                "(pathLenConstraint, RFC 5280 §4.2.1.9), and the chain has more"
            )
            return _problem("invalid-chain", reason, tight)
        return _problem("invalid-chain", "a CA's pathLenConstraint is exceeded (RFC 5280 §4.2.1.9)")
    if "name constraint" in text or "nameConstraints" in text:
        constrainer = _first(issuers, _constraining_ca)
        by = (
            f"the name constraints of CA {cert_name(constrainer)}"
            if constrainer is not None
            else "a CA's name constraints"
        )
        if "excluded" in text:
            detail = "one of its names is in a subtree the CA excludes"
        elif "unsupported" in text:
            detail = (
                "the CA constrains a name form sipua's verifier cannot check (URI or "
                "directoryName), and must then refuse rather than guess"
            )
        else:
            detail = "one of its names is outside the subtrees the CA permits"
        return _problem(
            "invalid-chain",
            f"certificate {cert_name(named or leaf)} violates {by}: {detail} (RFC 5280 §4.2.1.10)",
            named or leaf,
        )
    if "keyCertSign" in text:
        signer = named or _first(issuers, _lacks_key_cert_sign)
        shown = cert_name(signer) if signer is not None else "of the chain"
        return _problem(
            "bad-usage",
            f"issuer {shown} may not sign certificates (keyUsage lacks keyCertSign, RFC 5280 "
            "§4.2.1.3)",
            signer,
        )
    if "EKU" in text:
        reason = (
            f"a CA of the chain of {cert_name(leaf)} may not issue certificates for this "
            "purpose (extendedKeyUsage)"
        )
        return _problem("bad-usage", reason, leaf)
    if "basicConstraints" in text and "criticality" not in text:
        not_ca = named or _first(issuers, lambda c: not _is_ca(c))
        if not_ca is not None:
            return _problem(
                "invalid-chain",
                f"issuer {cert_name(not_ca)} is not a CA (basicConstraints CA:TRUE is missing), so "
                "it cannot issue certificates",
                not_ca,
            )
    if extension := _EXTENSION.search(text):
        oid, detail = extension.group(1), extension.group(2)
        if "unaccounted-for critical" in detail:
            cert = named or _first(everyone, _has_critical(oid))
            shown = cert_name(cert) if cert else "of the chain"
            return _problem(
                "invalid-chain",
                f"certificate {shown} has a critical extension {_extension_name(oid)} that "
                "sipua does not process (RFC 5280 §4.2 requires rejecting it)",
                cert,
            )
        cert = named
        shown = f"certificate {cert_name(cert)}" if cert else "a certificate of the chain"
        if oid == ExtensionOID.KEY_USAGE.dotted_string:
            reason = (
                f"{shown} has an unacceptable keyUsage: {detail} (a CA needs one allowing "
                "keyCertSign, RFC 5280 §4.2.1.3)"
            )
            return _problem("bad-usage", reason, cert)
        return _problem(
            "invalid-chain",
            f"{shown} has an unacceptable {_extension_name(oid)} extension: {detail}",
            cert,
        )
    cert = named or leaf
    return _problem(
        "invalid-chain",
        f"the chain of {cert_name(cert)} fails RFC 5280 validation: {text}",
        cert,
    )
