"""The trust decision: is this peer chain acceptable, and if not, exactly why.

Theory of operation: `verify_chain` is the one place sipua decides trust ("one truth"); the TLS
engine calls it after every handshake and `sipua cert verify` calls it offline. OpenSSL's own
verdicts are advisory only, because OpenSSL cannot tell the reasons sipua must report apart
(an anchor in the wrong CA set is not "untrusted"), and it knows nothing of RFC 5922.

The steps, each mapped to one result code:

1. Parse the presented chain (leaf first). Garbage or an empty chain is `invalid-chain`.
2. Build paths (RFC 5280 §6) from the leaf up through the presented intermediates to a trust
   anchor, depth-first with bounded depth and work. An issuer candidate is any certificate whose
   subject equals the child's issuer name under RFC 5280 §7.1 (case-insensitive, whitespace
   folded, whatever the string type: see `certs.canonical_name`); it is accepted only if its
   signature over the child verifies. The anchors are the union of the default set (the OS
   bundle) and the custom set, so a chain that anchors only in the set the policy does not
   accept is reported as `ca-type-not-accepted`, distinct from `untrusted-issuer` (no anchor
   at all). A self-signed leaf is trusted only if that very certificate is an anchor.
3. On each complete, accepted path check, in this order: validity at `at` of every certificate
   (`expired`, `not-yet-valid`); issuers are CAs (basicConstraints CA:TRUE, path length), every
   name below a CA with nameConstraints lies within them, and no certificate carries a critical
   extension sipua does not process (`invalid-chain`); issuers' keyUsage allows keyCertSign,
   the leaf's keyUsage (if any) allows a TLS key use and its extendedKeyUsage the purpose,
   RFC 5924 (`bad-usage`); keys are strong (`weak-key`: RSA/DSA < 2048 bits, EC < 224 bits);
   signatures are not MD5/SHA-1 (`weak-signature`; the anchor's self-signature is not checked,
   RFC 5280 §6.1 takes the anchor as given). The path with no problem wins; otherwise the one
   with the fewest.
4. With `name` given and `cn_validation` on, the leaf must speak for `name` (RFC 5922, see
   `identity.py`): `name-mismatch`.

The result lists every problem found; `code` and `reason` are the first. With `only_trusted`
off, a failed verification is still allowed (`ok` True, `verified` False): the UA connects,
but the lock must not show, and the reason says why. Two verdicts are never waived that way:
weak crypto (unless `allow_weak_crypto`) and, with `cn_validation` on, `name-mismatch` (CN
validation is mandatory when on, independent of "only accept trusted", as on the desk phone).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID, ObjectIdentifier

from sipua.errors import CertificateError
from sipua.tls.bundle import system_bundle
from sipua.tls.certs import (
    CanonicalName,
    CertificateInput,
    CertSummary,
    as_certificates,
    canonical_name,
    fingerprint,
    is_self_issued,
    quiet_deprecations,
)
from sipua.tls.identity import IdentityCheck, check_identity, presented_identities

if TYPE_CHECKING:
    from sipua.settings.model import TlsSettings

AcceptedCa = Literal["default", "custom", "all"]
Purpose = Literal["server", "client"]
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
AnchorKind = Literal["default", "custom"]

ACCEPTED_CA_VALUES: Final = get_args(AcceptedCa)
#: Certificates a peer may present in one chain (real chains are 2-4 long).
MAX_CHAIN_LENGTH: Final = 10
#: Longest path from leaf to anchor, anchor included (bounds the depth-first search).
MAX_PATH_LENGTH: Final = 8
#: Signature checks allowed while building paths for one chain (bounds hostile chains).
MAX_SIGNATURE_CHECKS: Final = 64
MIN_RSA_BITS: Final = 2048
MIN_DSA_BITS: Final = 2048
MIN_EC_BITS: Final = 224

#: id-kp-sipDomain, RFC 5924 §3.
SIP_DOMAIN_EKU: Final = ObjectIdentifier("1.3.6.1.5.5.7.3.20")
#: The extensions sipua processes; RFC 5280 §4.2 requires rejecting a certificate with any
#: other extension marked critical, even one cryptography can parse (policy constraints,
#: TLS feature...), since parsing is not processing. certificatePolicies is processed by
#: accepting it: sipua validates with RFC 5280's initial policy set any-policy and requires no
#: explicit policy (§6.1.1 (c), (f)), so no policy can fail the path; some government PKIs mark
#: it critical.
PROCESSED_CRITICAL_EXTENSIONS: Final = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.CERTIFICATE_POLICIES,
    }
)
_WEAK_HASHES: Final = (hashes.MD5, hashes.SHA1)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustPolicy:
    """Whom sipua trusts: the desk phone's "Trusted Certificates" settings.

    Attributes:
        only_trusted: "Only Accept Trusted Certificates": refuse a peer that fails verification.
            Off, the connection is allowed but reported as not verified, except for weak crypto
            (see `allow_weak_crypto`) and a name mismatch while `cn_validation` is on.
        accepted_ca: Which trust anchors count: "default" (the OS bundle), "custom" (the
            imported ones) or "all".
        cn_validation: Check that the certificate speaks for the SIP domain (RFC 5922). When on,
            the check is mandatory: `only_trusted=False` does not waive a `name-mismatch`.
        allow_wildcards: Let `*.example.com` identities match one label (RFC 2818 style; RFC
            5922 forbids it, so it is off by default).
        allow_weak_crypto: Let `only_trusted=False` accept a weak key or signature (RSA < 2048,
            MD5/SHA-1) too. Off by default: weak material is refused even when unverified peers
            are accepted, as OpenSSL's security level would; on only for legacy peers (sipua
            sets it when the user lowers the TLS minimum below 1.2).
    """

    only_trusted: bool = True
    accepted_ca: AcceptedCa = "all"
    cn_validation: bool = True
    allow_wildcards: bool = False
    allow_weak_crypto: bool = False

    def __post_init__(self) -> None:
        if self.accepted_ca not in ACCEPTED_CA_VALUES:
            raise ValueError(
                f"accepted_ca must be one of {', '.join(ACCEPTED_CA_VALUES)}, "
                f"not {self.accepted_ca!r}"
            )
        for name in ("only_trusted", "cn_validation", "allow_wildcards", "allow_weak_crypto"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}")

    @classmethod
    def from_settings(cls, tls: TlsSettings) -> TrustPolicy:
        """The policy the user's TLS settings ask for (`sipua register`, `load` and the UA).

        Args:
            tls: The `[tls]` settings.
        """
        return cls(
            only_trusted=tls.only_trusted,
            accepted_ca=tls.ca_type,
            cn_validation=tls.cn_validation,
            allow_wildcards=tls.allow_wildcards,
            # Legacy TLS (below 1.2) is the user's explicit opt-in to old peers and their keys.
            allow_weak_crypto=tls.min_version in ("1.0", "1.1"),
        )

    def accepts(self, kinds: Iterable[AnchorKind]) -> bool:
        """Tells whether an anchor of one of `kinds` is acceptable under `accepted_ca`."""
        return any(self.accepted_ca in ("all", kind) for kind in kinds)


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One failed check: its code, a sentence, and the subject of the certificate concerned."""

    code: VerifyCode
    reason: str
    subject: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResult:
    """The verdict of `verify_chain`.

    Attributes:
        ok: The policy allows the connection (`verified`, or `only_trusted` is off and no
            problem is one that setting cannot waive: weak crypto, name mismatch).
        verified: Every check passed.
        code: "ok" or the code of the first failed check.
        reason: A sentence a user can act on.
        problems: Every failed check, most important first.
        identities: The SIP domain identities the leaf presents ("URI:sip:example.com", ...).
        expected: The name that was checked, normalized (None: no identity check).
        certificates: The certificates as presented, leaf first.
        path_certificates: The validated path, leaf to anchor (empty if no path was found).
        anchor: Which anchor set the path ends in ("default" or "custom"), if any.
        policy: The policy applied.
    """

    ok: bool
    verified: bool
    code: VerifyCode
    reason: str
    problems: tuple[Problem, ...] = ()
    identities: tuple[str, ...] = ()
    expected: str | None = None
    certificates: tuple[x509.Certificate, ...] = field(default=(), repr=False)
    path_certificates: tuple[x509.Certificate, ...] = field(default=(), repr=False)
    anchor: AnchorKind | None = None
    policy: TrustPolicy = field(default_factory=TrustPolicy)

    @property
    def chain(self) -> tuple[CertSummary, ...]:
        """Summaries of the certificates as presented, leaf first (computed on demand)."""
        with quiet_deprecations():
            return tuple(CertSummary.of(c) for c in self.certificates)

    @property
    def path(self) -> tuple[CertSummary, ...]:
        """Summaries of the validated path, leaf to anchor (computed on demand)."""
        with quiet_deprecations():
            return tuple(CertSummary.of(c) for c in self.path_certificates)

    def __str__(self) -> str:
        if self.verified:
            return f"verified: {self.reason}"
        verdict = "accepted without verification" if self.ok else "rejected"
        return f"{verdict} ({self.code}): {self.reason}"


@dataclass(frozen=True, slots=True)
class _Anchors:
    by_subject: dict[CanonicalName, list[x509.Certificate]]
    kinds: dict[str, frozenset[AnchorKind]]  # fingerprint -> the sets it belongs to


def _index(
    groups: Iterable[tuple[AnchorKind, Sequence[x509.Certificate]]], base: _Anchors | None = None
) -> _Anchors:
    by_subject: dict[CanonicalName, list[x509.Certificate]] = {}
    kinds: dict[str, set[AnchorKind]] = {}
    if base is not None:
        by_subject = {subject: list(certs) for subject, certs in base.by_subject.items()}
        kinds = {fp: set(k) for fp, k in base.kinds.items()}
    for kind, certs in groups:
        for cert in certs:
            fp = fingerprint(cert)
            if fp not in kinds:
                kinds[fp] = set()
                by_subject.setdefault(canonical_name(cert.subject), []).append(cert)
            kinds[fp].add(kind)
    return _Anchors(by_subject, {fp: frozenset(k) for fp, k in kinds.items()})


_system_lock = threading.Lock()
_system_index: tuple[tuple[x509.Certificate, ...], _Anchors] | None = None


def _default_index(defaults: tuple[x509.Certificate, ...]) -> _Anchors:
    # Hashing and indexing ~150 OS roots costs milliseconds; every handshake verifies, so the
    # index of the (cached, immutable) system bundle is built once.
    global _system_index
    with _system_lock:
        if _system_index is None or _system_index[0] is not defaults:
            _system_index = (defaults, _index([("default", defaults)]))
        return _system_index[1]


def default_anchors() -> tuple[x509.Certificate, ...]:
    """The default trusted certificates: the operating system's CA bundle (cached)."""
    return system_bundle().certificates


@dataclass(slots=True)
class _Search:
    anchors: _Anchors
    intermediates: Sequence[x509.Certificate]
    signature_checks: int = 0
    broken_signatures: list[str] = field(default_factory=list)
    paths: list[tuple[list[x509.Certificate], frozenset[AnchorKind]]] = field(default_factory=list)

    def issued_by(self, child: x509.Certificate, issuer: x509.Certificate) -> bool:
        if self.signature_checks >= MAX_SIGNATURE_CHECKS:
            return False
        self.signature_checks += 1
        if not signature_verifies(child, issuer):
            self.broken_signatures.append(
                f"the signature on {_name(child)} does not verify with the key of {_name(issuer)}"
            )
            return False
        return True

    def walk(self, path: list[x509.Certificate]) -> None:
        cert = path[-1]
        kinds = self.anchors.kinds.get(fingerprint(cert))
        if kinds is not None:
            # The certificate itself is trusted (a trusted intermediate, or a pinned leaf).
            self.paths.append((list(path), kinds))
            return
        if len(path) >= MAX_PATH_LENGTH:
            return
        seen = {fingerprint(c) for c in path}
        issuer_name = canonical_name(cert.issuer)
        for candidate in self.anchors.by_subject.get(issuer_name, ()):
            if fingerprint(candidate) not in seen and self.issued_by(cert, candidate):
                self.paths.append(([*path, candidate], self.anchors.kinds[fingerprint(candidate)]))
        for candidate in self.intermediates:
            if (
                canonical_name(candidate.subject) == issuer_name
                and fingerprint(candidate) not in seen
                and self.issued_by(cert, candidate)
            ):
                self.walk([*path, candidate])


def signature_verifies(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Tells whether `issuer`'s public key verifies the signature on `child`.

    Done by hand rather than with `Certificate.verify_directly_issued_by`, which refuses
    MD5/SHA-1 signatures outright: sipua must recognise those chains to report them as
    `weak-signature` instead of calling them forged.
    """
    try:
        key = issuer.public_key()
        signature, tbs = child.signature, child.tbs_certificate_bytes
        parameters = child.signature_algorithm_parameters
        algorithm = child.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey):
            if algorithm is None:
                return False
            # cryptography reports no parameters for md5WithRSAEncryption: it is PKCS#1 v1.5.
            rsa_padding = parameters if isinstance(parameters, padding.PSS) else padding.PKCS1v15()
            key.verify(signature, tbs, rsa_padding, algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(parameters, ec.ECDSA):
                return False
            key.verify(signature, tbs, parameters)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, tbs)
        elif isinstance(key, dsa.DSAPublicKey):
            if algorithm is None:
                return False
            key.verify(signature, tbs, algorithm)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _name(cert: x509.Certificate) -> str:
    return repr(cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}")


def _validity_problems(path: Sequence[x509.Certificate], at: dt.datetime) -> list[Problem]:
    problems = []
    for cert in path:
        subject = cert.subject.rfc4514_string()
        if at < cert.not_valid_before_utc:
            problems.append(
                Problem(
                    code="not-yet-valid",
                    reason=f"certificate {_name(cert)} is not valid before "
                    f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC (checked at "
                    f"{at:%Y-%m-%d %H:%M:%S} UTC); check the clock",
                    subject=subject,
                )
            )
        elif at > cert.not_valid_after_utc:
            problems.append(
                Problem(
                    code="expired",
                    reason=f"certificate {_name(cert)} expired on "
                    f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC (checked at "
                    f"{at:%Y-%m-%d %H:%M:%S} UTC)",
                    subject=subject,
                )
            )
    return problems


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _extension_name(oid: ObjectIdentifier) -> str:
    known = getattr(oid, "_name", None)
    if isinstance(known, str) and not known.startswith("Unknown"):
        return f"{known} ({oid.dotted_string})"
    return oid.dotted_string


def _structure_problems(path: Sequence[x509.Certificate]) -> list[Problem]:
    problems = [
        Problem(
            code="invalid-chain",
            reason=f"certificate {_name(cert)} has a critical extension "
            f"{_extension_name(ext.oid)} that sipua does not process (RFC 5280 §4.2 requires "
            "rejecting it)",
            subject=cert.subject.rfc4514_string(),
        )
        for cert in path
        for ext in cert.extensions
        if ext.critical and ext.oid not in PROCESSED_CRITICAL_EXTENSIONS
    ]
    problems.extend(_name_constraint_problems(path))
    for position, issuer in enumerate(path[1:], start=1):
        bc = _basic_constraints(issuer)
        is_anchor = position == len(path) - 1
        # RFC 5280 §6.1.4 (k): an intermediate must assert CA:TRUE. A trust anchor is taken as
        # given (§6.1.1 (d)), but one that explicitly says CA:FALSE is not a CA at all.
        if (bc is None and not (is_anchor and issuer.version == x509.Version.v1)) or (
            bc is not None and not bc.ca
        ):
            problems.append(
                Problem(
                    code="invalid-chain",
                    reason=f"issuer {_name(issuer)} is not a CA (basicConstraints CA:TRUE is "
                    f"missing), so it cannot issue {_name(path[position - 1])}",
                    subject=issuer.subject.rfc4514_string(),
                )
            )
        elif bc is not None and bc.path_length is not None:
            # RFC 5280 §4.2.1.9 / §6.1.4 (l): pathLenConstraint counts the intermediates below
            # this CA that are not self-issued (a key-rollover certificate does not count).
            below = sum(1 for cert in path[1:position] if not is_self_issued(cert))
            if below > bc.path_length:
                problems.append(
                    Problem(
                        code="invalid-chain",
                        reason=f"CA {_name(issuer)} allows {bc.path_length} intermediate CA(s) "
                        f"below it (self-issued ones not counted), the chain has {below}",
                        subject=issuer.subject.rfc4514_string(),
                    )
                )
    return problems


# -- name constraints (RFC 5280 §4.2.1.10, §6.1.3 (b)-(c), §6.1.4 (g)) ----------------------

#: The subject attribute RFC 5280 §4.2.1.10 says rfc822Name constraints also apply to.
_EMAIL_ADDRESS: Final = ObjectIdentifier("1.2.840.113549.1.9.1")
_URI_AUTHORITY_END: Final = re.compile(r"[/?#]")
_URI_SIP_HOST_END: Final = re.compile(r"[;?]")
_HOST_LIKE: Final = re.compile(r"[A-Za-z0-9*_.:-]+")


def _dns_key(value: str) -> str | None:
    # Certificate names are compared as they are, never mapped (IDNA belongs to the expected
    # name only): a non-ASCII value is unusable, and unusable never satisfies a constraint.
    text = value.strip().removesuffix(".")
    return text.lower() if text.isascii() else None


def _dns_within(name: str, constraint: str) -> bool | None:
    # "example.org" covers example.org and every name below it; ".example.org" only the names
    # below it (the form some CAs use, RFC 5280 §4.2.1.10 for URIs, widely applied to DNS).
    host, base = _dns_key(name), _dns_key(constraint)
    if host is None or base is None:
        return None
    if not base:
        return True
    if base.startswith("."):
        return host.endswith(base)
    if host == base or host.endswith("." + base):
        return True
    # A wildcard name covers names the suffix test does not see: "*.example.org" stands for
    # "sub.example.org", which a constraint "sub.example.org" covers.
    return host.startswith("*.") and base.endswith(host[1:]) and base.count(".") == host.count(".")


def _uri_host(uri: str) -> str | None:
    scheme, sep, rest = uri.partition(":")
    if not sep or not scheme:
        return None
    if rest.startswith("//"):
        authority = _URI_AUTHORITY_END.split(rest[2:], maxsplit=1)[0]
    else:
        # sip:/sips:/tel:-like: user@host:port;params?headers (RFC 3261 §19.1.1).
        authority = _URI_SIP_HOST_END.split(rest, maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        end = host.find("]")
        return None if end < 0 else host[1:end].lower()
    host = host.split(":", 1)[0]
    return _dns_key(host) or None


def _uri_within(uri: str, constraint: str) -> bool | None:
    # RFC 5280 §4.2.1.10: a URI constraint is a host; ".example.org" means any host below it.
    host, base = _uri_host(uri), _dns_key(constraint)
    if host is None or base is None:
        return None
    return host.endswith(base) if base.startswith(".") else host == base


def _ip_within(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> bool:
    return address.version == network.version and address in network


def _directory_within(name: x509.Name, constraint: x509.Name) -> bool:
    # A directoryName subtree is every name that begins with the constraint's RDNs (§7.1
    # comparison rules).
    wanted = canonical_name(constraint)
    return canonical_name(name)[: len(wanted)] == wanted


def _email_within(address: str, constraint: str) -> bool | None:
    # "user@host" names one mailbox, "host" all mailboxes on that host, ".host" any host below.
    local, at, host = address.rpartition("@")
    if not at or not address.isascii() or not constraint.isascii():
        return None
    host = host.lower()
    if "@" in constraint:
        c_local, _, c_host = constraint.rpartition("@")
        return local == c_local and host == c_host.lower()
    base = constraint.lower()
    return host.endswith(base) if base.startswith(".") else host == base


def _within(name: x509.GeneralName, subtree: x509.GeneralName) -> bool | None:
    """Whether `name` lies in `subtree` (same type); None: sipua cannot decide."""
    if isinstance(name, x509.DNSName) and isinstance(subtree, x509.DNSName):
        return _dns_within(name.value, subtree.value)
    if isinstance(name, x509.UniformResourceIdentifier) and isinstance(
        subtree, x509.UniformResourceIdentifier
    ):
        return _uri_within(name.value, subtree.value)
    if isinstance(name, x509.IPAddress) and isinstance(subtree, x509.IPAddress):
        address, network = name.value, subtree.value
        if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address) and isinstance(
            network, ipaddress.IPv4Network | ipaddress.IPv6Network
        ):
            return _ip_within(address, network)
        return None
    if isinstance(name, x509.DirectoryName) and isinstance(subtree, x509.DirectoryName):
        return _directory_within(name.value, subtree.value)
    if isinstance(name, x509.RFC822Name) and isinstance(subtree, x509.RFC822Name):
        return _email_within(name.value, subtree.value)
    return None


def _constrained_names(cert: x509.Certificate, *, leaf: bool) -> list[x509.GeneralName]:
    """The names of `cert` that name constraints apply to."""
    names: list[x509.GeneralName] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        names.extend(san)
    if cert.subject.rdns:
        names.append(x509.DirectoryName(cert.subject))
    names.extend(
        x509.RFC822Name(attribute.value)
        for attribute in cert.subject.get_attributes_for_oid(_EMAIL_ADDRESS)
        if isinstance(attribute.value, str)
    )
    if leaf and san is None:
        # sipua takes a leaf's CN as its identity when it has no subjectAltName (RFC 5922
        # §7.1), so that CN must be constrained too, or a constrained CA could issue any name.
        for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            # Only a CN that can be an identity (see identity.py): a host name or an address.
            value = attribute.value
            if not isinstance(value, str) or not _HOST_LIKE.fullmatch(value.strip()):
                continue
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(value.strip())))
            except ValueError:
                names.append(x509.DNSName(value.strip()))
    return names


def _describe(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DirectoryName):
        return f"DirName:{name.value.rfc4514_string()}"
    if isinstance(name, x509.OtherName):
        return f"othername:{name.type_id.dotted_string}"
    label = {
        x509.DNSName: "DNS",
        x509.UniformResourceIdentifier: "URI",
        x509.IPAddress: "IP",
        x509.RFC822Name: "email",
        x509.RegisteredID: "RID",
    }.get(type(name), type(name).__name__)
    return f"{label}:{name.value}"


def _constraint_violation(
    names: Sequence[x509.GeneralName], constraints: x509.NameConstraints
) -> str | None:
    permitted = list(constraints.permitted_subtrees or ())
    excluded = list(constraints.excluded_subtrees or ())
    for name in names:
        same_permitted = [t for t in permitted if type(t) is type(name)]
        same_excluded = [t for t in excluded if type(t) is type(name)]
        if not same_permitted and not same_excluded:
            continue  # RFC 5280 §4.2.1.10: a constraint restricts only names of its own type.
        for subtree in same_excluded:
            inside = _within(name, subtree)
            if inside is None:
                return f"{_describe(name)} cannot be checked against the excluded " + (
                    _describe(subtree)
                )
            if inside:
                return f"{_describe(name)} is in the excluded subtree {_describe(subtree)}"
        if same_permitted:
            verdicts = [_within(name, subtree) for subtree in same_permitted]
            if any(verdicts):
                continue
            if None in verdicts:
                return f"{_describe(name)} cannot be checked against the permitted subtrees"
            allowed = ", ".join(_describe(t) for t in same_permitted)
            return f"{_describe(name)} is outside the permitted subtrees ({allowed})"
    return None


def _name_constraint_problems(path: Sequence[x509.Certificate]) -> list[Problem]:
    problems = []
    for position, ca in enumerate(path[1:], start=1):
        try:
            constraints = ca.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            continue
        for index, cert in enumerate(path[:position]):
            # RFC 5280 §6.1.3 (b): a self-issued intermediate (key rollover) is exempt.
            if index > 0 and is_self_issued(cert):
                continue
            violation = _constraint_violation(
                _constrained_names(cert, leaf=index == 0), constraints
            )
            if violation is not None:
                problems.append(
                    Problem(
                        code="invalid-chain",
                        reason=f"certificate {_name(cert)} violates the name constraints of CA "
                        f"{_name(ca)}: {violation} (RFC 5280 §4.2.1.10)",
                        subject=cert.subject.rfc4514_string(),
                    )
                )
    return problems


def _leaf_key_usage_problems(leaf: x509.Certificate) -> list[Problem]:
    # RFC 5280 §4.2.1.3, RFC 5246 §7.4.2 / RFC 8446 §4.4.2: a TLS peer's key signs the
    # handshake (digitalSignature), or, in TLS 1.2 RSA/ECDH key exchange, encrypts or agrees
    # the premaster secret (keyEncipherment, keyAgreement). A keyUsage with none of them says
    # the key is not for TLS at all (a CRL-signing key, say).
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return []
    if usage.digital_signature or usage.key_encipherment or usage.key_agreement:
        return []
    return [
        Problem(
            code="bad-usage",
            reason=f"certificate {_name(leaf)} may not be used for TLS: its keyUsage allows "
            "none of digitalSignature, keyEncipherment, keyAgreement (RFC 5280 §4.2.1.3)",
            subject=leaf.subject.rfc4514_string(),
        )
    ]


def _usage_problems(path: Sequence[x509.Certificate], purpose: Purpose) -> list[Problem]:
    problems = []
    for issuer in path[1:]:
        try:
            usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if not usage.key_cert_sign:
            problems.append(
                Problem(
                    code="bad-usage",
                    reason=f"issuer {_name(issuer)} may not sign certificates (keyUsage lacks "
                    "keyCertSign, RFC 5280 §4.2.1.3)",
                    subject=issuer.subject.rfc4514_string(),
                )
            )
    leaf = path[0]
    problems.extend(_leaf_key_usage_problems(leaf))
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return problems
    wanted = (
        ExtendedKeyUsageOID.SERVER_AUTH
        if purpose == "server"
        else (ExtendedKeyUsageOID.CLIENT_AUTH)
    )
    # RFC 5924 §4: with an EKU present, it must allow SIP domain use (id-kp-sipDomain), or the
    # TLS role, or any purpose.
    allowed = {wanted, SIP_DOMAIN_EKU, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    if not allowed.intersection(eku):
        role = "TLS server (serverAuth)" if purpose == "server" else "TLS client (clientAuth)"
        present = ", ".join(getattr(oid, "_name", oid.dotted_string) for oid in eku) or "none"
        problems.append(
            Problem(
                code="bad-usage",
                reason=f"certificate {_name(leaf)} is not for use as a {role}; its "
                f"extendedKeyUsage allows: {present}",
                subject=leaf.subject.rfc4514_string(),
            )
        )
    return problems


def _key_problem(cert: x509.Certificate) -> Problem | None:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return Problem(
            code="weak-key",
            reason=f"certificate {_name(cert)} has a public key sipua cannot use",
            subject=cert.subject.rfc4514_string(),
        )
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
    return Problem(
        code="weak-key",
        reason=f"certificate {_name(cert)} has {weak}",
        subject=cert.subject.rfc4514_string(),
    )


def _strength_problems(path: Sequence[x509.Certificate], *, anchored: bool = True) -> list[Problem]:
    """Weak keys and weak signatures on `path`.

    With `anchored`, the last certificate is the trust anchor: its self-signature carries no
    trust (RFC 5280 §6.1), so its hash does not matter. A presented chain that reached no anchor
    (`anchored=False`) has every signature judged except genuine self-signatures.
    """
    problems = [p for p in map(_key_problem, path) if p is not None]
    if anchored:
        signed = path[:-1] if len(path) > 1 else ()
    else:
        signed = [cert for cert in path if not is_self_issued(cert)]
    for cert in signed:
        try:
            algorithm = cert.signature_hash_algorithm
        except UnsupportedAlgorithm:
            continue
        if isinstance(algorithm, _WEAK_HASHES):
            problems.append(
                Problem(
                    code="weak-signature",
                    reason=f"certificate {_name(cert)} is signed with "
                    f"{algorithm.name.upper()}, which is broken; ask the issuer for a SHA-256 "
                    "certificate",
                    subject=cert.subject.rfc4514_string(),
                )
            )
    return problems


def _path_problems(
    path: Sequence[x509.Certificate], at: dt.datetime, purpose: Purpose
) -> list[Problem]:
    return [
        *_validity_problems(path, at),
        *_structure_problems(path),
        *_usage_problems(path, purpose),
        *_strength_problems(path),
    ]


def _untrusted(search: _Search, leaf: x509.Certificate, anchors_count: int) -> Problem:
    if search.broken_signatures:
        reason = search.broken_signatures[0] + " (forged or corrupted certificate)"
    elif is_self_issued(leaf):
        reason = (
            f"certificate {_name(leaf)} is self-signed and not in the trusted list; import it "
            "with `sipua cert import-trusted` to trust it"
        )
    else:
        reason = (
            f"no trusted CA issued {_name(leaf)} (its issuer is "
            f"{leaf.issuer.rfc4514_string()!r}, not among {anchors_count} trusted certificates); "
            "import the issuing CA with `sipua cert import-trusted`, or ask the server to send "
            "its intermediate certificates"
        )
    return Problem(code="untrusted-issuer", reason=reason, subject=leaf.subject.rfc4514_string())


def _not_accepted(kinds: frozenset[AnchorKind], policy: TrustPolicy) -> Problem:
    found = " and ".join(sorted(kinds))
    return Problem(
        code="ca-type-not-accepted",
        reason=f"the chain anchors in a {found} trusted certificate, but only "
        f"{policy.accepted_ca} CA certificates are accepted (CA certificates setting)",
    )


#: Verdicts that "only accept trusted = off" does not waive unless weak crypto is allowed.
WEAK_CRYPTO_CODES: Final = frozenset({"weak-key", "weak-signature"})
#: Verdicts that "only accept trusted = off" never waives: a name mismatch exists only when
#: `cn_validation` is on, and CN validation, once on, is mandatory (the two switches are
#: independent, as on the desk phone).
MANDATORY_CODES: Final = frozenset({"name-mismatch"})


def _result(
    *,
    problems: Sequence[Problem],
    policy: TrustPolicy,
    chain: Sequence[x509.Certificate] = (),
    path: Sequence[x509.Certificate] = (),
    anchor: AnchorKind | None = None,
    identity: IdentityCheck | None = None,
    identities: Sequence[str] = (),
    verified_reason: str = "",
) -> VerifyResult:
    verified = not problems
    weak = any(problem.code in WEAK_CRYPTO_CODES for problem in problems)
    mandatory = any(problem.code in MANDATORY_CODES for problem in problems)
    waivable = not mandatory and (policy.allow_weak_crypto or not weak)
    return VerifyResult(
        ok=verified or (not policy.only_trusted and waivable),
        verified=verified,
        code="ok" if verified else problems[0].code,
        reason=verified_reason if verified else problems[0].reason,
        problems=tuple(problems),
        identities=tuple(identities),
        expected=identity.expected if identity is not None else None,
        certificates=tuple(chain),
        path_certificates=tuple(path),
        anchor=anchor,
        policy=policy,
    )


def verify_chain(
    chain: Sequence[CertificateInput],
    *,
    name: str | None,
    trusted: Sequence[CertificateInput] = (),
    at: dt.datetime | None = None,
    policy: TrustPolicy | None = None,
    purpose: Purpose = "server",
    default_trusted: Sequence[CertificateInput] | None = None,
) -> VerifyResult:
    """Verifies a peer's certificate chain and identity under a trust policy.

    Args:
        chain: The peer's certificates, leaf first, as `Certificate` objects or PEM/DER bytes.
        name: The SIP domain (or IP) to check the leaf against (RFC 5922), or None for no
            identity check (client certificates).
        trusted: The custom trusted certificates (imported CAs, or pinned peer certificates).
        at: When to check validity (timezone-aware); default now.
        policy: The trust policy; default `TrustPolicy()`.
        purpose: "server" to check a server's certificate (serverAuth), "client" for a client's
            (clientAuth).
        default_trusted: The default trusted certificates; None means the OS CA bundle. (Tests
            pass their own; production code leaves it.)

    Returns:
        The verdict; see `VerifyResult`. Never raises for a bad peer chain. With
        `policy.only_trusted` off, `ok` is True despite failed checks, except for weak crypto
        (unless `policy.allow_weak_crypto`) and a `name-mismatch` (`policy.cn_validation` on).

    Raises:
        ValueError: `at` is naive or `purpose` unknown (caller bugs).
        CertificateError: an item of `trusted` or `default_trusted` is not a certificate.
    """
    with quiet_deprecations():
        return _verify_chain(
            chain,
            name=name,
            trusted=trusted,
            at=at,
            policy=TrustPolicy() if policy is None else policy,
            purpose=purpose,
            default_trusted=default_trusted,
        )


def _verify_chain(
    chain: Sequence[CertificateInput],
    *,
    name: str | None,
    trusted: Sequence[CertificateInput],
    at: dt.datetime | None,
    policy: TrustPolicy,
    purpose: Purpose,
    default_trusted: Sequence[CertificateInput] | None,
) -> VerifyResult:
    if purpose not in ("server", "client"):
        raise ValueError(f"purpose must be 'server' or 'client', not {purpose!r}")
    if at is None:
        at = dt.datetime.now(dt.UTC)
    elif at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("verify_chain needs a timezone-aware `at` (e.g. datetime.now(UTC))")

    try:
        certs = as_certificates(chain, source="peer certificate")
    except CertificateError as exc:
        problem = Problem(code="invalid-chain", reason=f"the peer's chain is unreadable: {exc}")
        return _result(problems=[problem], policy=policy)
    if not certs:
        problem = Problem(code="invalid-chain", reason="the peer presented no certificate")
        return _result(problems=[problem], policy=policy)
    if len(certs) > MAX_CHAIN_LENGTH:
        problem = Problem(
            code="invalid-chain",
            reason=f"the peer presented {len(certs)} certificates; at most {MAX_CHAIN_LENGTH} "
            "are accepted",
        )
        return _result(problems=[problem], policy=policy, chain=certs[:MAX_CHAIN_LENGTH])

    leaf = certs[0]
    identities = [str(i) for i in presented_identities(leaf)]
    identity = None
    identity_problems: list[Problem] = []
    if name is not None:
        identity = check_identity(leaf, name, allow_wildcards=policy.allow_wildcards)
        if policy.cn_validation and not identity.ok:
            identity_problems.append(
                Problem(
                    code="name-mismatch",
                    reason=identity.reason,
                    subject=leaf.subject.rfc4514_string(),
                )
            )

    custom = as_certificates(trusted, source="trusted certificate")
    if default_trusted is None:
        anchors = _index([("custom", custom)], base=_default_index(default_anchors()))
    else:
        defaults = as_certificates(default_trusted, source="default trusted certificate")
        anchors = _index([("default", defaults), ("custom", custom)])
    search = _Search(anchors=anchors, intermediates=certs[1:])
    search.walk([leaf])

    def finish(
        problems: Sequence[Problem],
        path: Sequence[x509.Certificate] = (),
        anchor: AnchorKind | None = None,
        verified_reason: str = "",
    ) -> VerifyResult:
        return _result(
            problems=[*problems, *identity_problems],
            policy=policy,
            chain=certs,
            path=path,
            anchor=anchor,
            identity=identity,
            identities=identities,
            verified_reason=verified_reason,
        )

    # Without an accepted path the presented chain's strength is still judged: "only accept
    # trusted = off" may waive trust, never strength (see WEAK_CRYPTO_CODES).
    if not search.paths:
        untrusted = _untrusted(search, leaf, len(anchors.kinds))
        return finish([untrusted, *_strength_problems(certs, anchored=False)])

    accepted = [(p, k) for p, k in search.paths if policy.accepts(k)]
    if not accepted:
        path, kinds = search.paths[0]
        problems = [_not_accepted(kinds, policy), *_strength_problems(path)]
        return finish(problems, path, min(kinds))

    scored = [(p, k, _path_problems(p, at, purpose)) for p, k in accepted]
    path, kinds, problems = min(scored, key=lambda item: len(item[2]))
    anchor: AnchorKind = "custom" if "custom" in kinds and policy.accepts(["custom"]) else "default"
    anchor_cert = path[-1]
    verified_reason = f"chain to {anchor} trusted CA {_name(anchor_cert)} is valid" + (
        f"; {identity.reason}" if identity is not None and policy.cn_validation else ""
    )
    return finish(problems, path, anchor, verified_reason)
