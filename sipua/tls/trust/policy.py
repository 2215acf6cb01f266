"""The trust decision: is this peer chain acceptable, and if not, exactly why.

Theory of operation: `verify_chain` is the one place sipua decides trust ("one truth"); the TLS
engine calls it after every handshake and `sipua cert verify` calls it offline. OpenSSL's own
verdicts are advisory only, because OpenSSL cannot tell the reasons sipua must report apart
(an anchor in the wrong CA set is not "untrusted"), and it knows nothing of RFC 5922.

The steps, each mapped to one result code:

1. Parse the presented chain (leaf first). Garbage, an empty chain or more than
   `MAX_CHAIN_LENGTH` certificates is `invalid-chain`.
2. RFC 5280 path building and validation is cryptography's (`path.py`): a store of the anchors
   the "CA certificates" setting accepts (default: the OS bundle; custom: the imported ones and
   `--trusted-cert`; all), the validation time, a depth limit, and extension policies for
   SIP's rules (RFC 5924's extended key usage, no web-PKI name check). A certificate in the
   trusted list is an anchor whatever it is: a registrar's self-signed (end-entity)
   certificate put there is trusted as itself, without a CA. The library's refusal is mapped
   to a code and a sentence (`reasons.py`): `untrusted-issuer`, `expired`, `not-yet-valid`,
   `bad-usage`, `weak-key`, `weak-signature`, `invalid-chain`. A chain with no path to the
   accepted anchors is tried against the other set: anchoring there is
   `ca-type-not-accepted`, distinct from `untrusted-issuer` (no anchor at all).
3. sipua's own checks on top, each one the library does not make:
   - the strength floor (`weak-key`: RSA/DSA < 2048 bits, EC < 224 bits; `weak-signature`:
     MD5/SHA-1): cryptography checks the keys of CAs and refuses weak signatures, but not the
     leaf's key, and "only accept trusted = off" must still refuse weak crypto on a chain that
     reached no anchor at all, which the library never looks at;
   - name constraints on a leaf's CN (`invalid-chain`): cryptography applies them to
     subjectAltName only, as the web ignores the CN; RFC 5922 §7.1 makes a SAN-less leaf's CN
     its identity, so a name-constrained CA could otherwise issue any name.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, get_args

from cryptography import x509

from sipua.errors import CertificateError
from sipua.tls.certs import CertificateInput, CertSummary, as_certificates, quiet_deprecations
from sipua.tls.trust.anchors import system_bundle
from sipua.tls.trust.identity import IdentityCheck, check_identity, presented_identities
from sipua.tls.trust.path import Purpose, anchor_store, cert_name, validate
from sipua.tls.trust.reasons import Problem, VerifyCode, explain, strength_problems

if TYPE_CHECKING:
    from sipua.settings.model import TlsSettings

__all__ = [
    "ACCEPTED_CA_VALUES",
    "MAX_CHAIN_LENGTH",
    "AcceptedCa",
    "AnchorKind",
    "Problem",
    "Purpose",
    "TrustPolicy",
    "VerifyCode",
    "VerifyResult",
    "default_anchors",
    "verify_chain",
]

AcceptedCa = Literal["default", "custom", "all"]
AnchorKind = Literal["default", "custom"]

ACCEPTED_CA_VALUES: Final = get_args(AcceptedCa)
#: Certificates a peer may present in one chain (real chains are 2-4 long).
MAX_CHAIN_LENGTH: Final = 10


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


def default_anchors() -> tuple[x509.Certificate, ...]:
    """The default trusted certificates: the operating system's CA bundle (cached)."""
    return system_bundle().certificates


def _dns_within(host: str, base: str) -> bool:
    # "example.org" covers example.org and every name below it; ".example.org" only the names
    # below it (RFC 5280 §4.2.1.10 for URIs, widely applied to DNS).
    host, base = host.lower().rstrip("."), base.lower().rstrip(".")
    if not base:
        return True
    if base.startswith("."):
        return host.endswith(base)
    return host == base or host.endswith("." + base)


def _cn_constraint_problems(path: Sequence[x509.Certificate]) -> list[Problem]:
    """Name constraints of the path's CAs applied to the leaf's CN identities.

    cryptography applies name constraints to subjectAltName only (the web PKI ignores the
    CN); sipua takes a SAN-less leaf's CN as its identity (RFC 5922 §7.1), so without this a
    name-constrained CA could issue a certificate for any name.
    """
    cns = [i.value for i in presented_identities(path[0]) if i.source == "cn"]
    problems = []
    for ca in path[1:]:
        try:
            constraints = ca.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            continue
        for cn in cns:
            try:
                address = ipaddress.ip_address(cn)
            except ValueError:
                address = None
            kind = x509.DNSName if address is None else x509.IPAddress
            permitted = [t for t in constraints.permitted_subtrees or () if isinstance(t, kind)]
            excluded = [t for t in constraints.excluded_subtrees or () if isinstance(t, kind)]

            def within(subtree: x509.GeneralName, cn: str = cn, address: object = address) -> bool:
                if isinstance(subtree, x509.IPAddress):
                    network = subtree.value
                    return (
                        isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network)
                        and isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
                        and address.version == network.version
                        and address in network
                    )
                return isinstance(subtree, x509.DNSName) and _dns_within(cn, subtree.value)

            if any(map(within, excluded)) or (permitted and not any(map(within, permitted))):
                problems.append(
                    Problem(
                        code="invalid-chain",
                        reason=f"certificate {cert_name(path[0])} violates the name constraints "
                        f"of CA {cert_name(ca)}: its CN {cn!r}, its identity for lack of a "
                        "subjectAltName, is outside what the CA may certify (RFC 5280 §4.2.1.10)",
                        subject=path[0].subject.rfc4514_string(),
                    )
                )
    return problems


_NONE: Final[tuple[x509.Certificate, ...]] = ()


def _anchor_sets(
    custom: Sequence[x509.Certificate], default: Sequence[x509.Certificate], policy: TrustPolicy
) -> tuple[
    tuple[Sequence[x509.Certificate], Sequence[x509.Certificate]],
    list[x509.Certificate],
    AnchorKind,
]:
    """((base, extra) of the accepted anchors, the others, the others' kind) for the CA type.

    The accepted anchors stay in two parts, the default set (the OS bundle, one cached tuple)
    and the custom one, so that their `Store` is found again by `anchor_store` on every
    handshake.
    """
    if policy.accepted_ca == "all":
        return (default, custom), [], "default"
    if policy.accepted_ca == "custom":
        in_custom = set(custom)
        return (_NONE, custom), [c for c in default if c not in in_custom], "default"
    in_default = set(default)
    return (default, _NONE), [c for c in custom if c not in in_default], "custom"


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
    defaults: Sequence[x509.Certificate] = (
        default_anchors()
        if default_trusted is None
        else as_certificates(default_trusted, source="default trusted certificate")
    )

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

    def check(
        base: Sequence[x509.Certificate], extra: Sequence[x509.Certificate] = ()
    ) -> list[x509.Certificate] | str:
        if not base and not extra:
            return "no trusted certificates: all candidates exhausted with no interior errors"
        store = anchor_store(base, extra)
        return validate(leaf, certs[1:], store, at=at, purpose=purpose)

    (base, extra), others, others_kind = _anchor_sets(custom, defaults, policy)
    accepted = [*base, *extra]
    outcome = check(base, extra)
    if isinstance(outcome, list):
        path = outcome
        in_custom = policy.accepts(["custom"]) and path[-1] in set(custom)
        anchor: AnchorKind = "custom" if in_custom else "default"
        problems = [*strength_problems(path, anchored=True), *_cn_constraint_problems(path)]
        try:
            is_ca = path[-1].extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        verified_reason = (
            f"chain to {anchor} trusted CA {cert_name(path[-1])} is valid"
            if is_ca
            else f"{anchor} trusted end-entity certificate {cert_name(path[-1])}, trusted as itself"
        ) + (f"; {identity.reason}" if identity is not None and policy.cn_validation else "")
        return finish(problems, path, anchor, verified_reason)

    problem = explain(outcome, chain=certs, anchors=accepted, anchors_count=len(accepted), at=at)
    # Without an accepted path the presented chain's strength is still judged: "only accept
    # trusted = off" may waive trust, never strength (see WEAK_CRYPTO_CODES).
    strength = [p for p in strength_problems(certs, anchored=False) if p != problem]
    if problem.code == "untrusted-issuer" and others:
        # Only a chain that names an issuer of the other set can anchor there; then a path to
        # it, or a failure other than "no path", means the CA type setting is what refused it.
        named = {cert.issuer for cert in certs}
        elsewhere = check(others) if any(c.subject in named for c in others) else None
        reached = isinstance(elsewhere, list) or (
            isinstance(elsewhere, str)
            and explain(
                elsewhere, chain=certs, anchors=others, anchors_count=len(others), at=at
            ).code
            != "untrusted-issuer"
        )
        if reached:
            not_accepted = Problem(
                code="ca-type-not-accepted",
                reason=f"the chain anchors in a {others_kind} trusted certificate, but only "
                f"{policy.accepted_ca} CA certificates are accepted (CA certificates setting)",
            )
            path = elsewhere if isinstance(elsewhere, list) else []
            return finish([not_accepted, *strength], path, others_kind)
    return finish([problem, *strength])
