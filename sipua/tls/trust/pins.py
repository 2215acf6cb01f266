"""Key continuity: SPKI pins (RFC 7469 form) and the trust-on-first-use decision.

A pin is `sha256/` and the base64 of the SHA-256 digest of a certificate's DER
SubjectPublicKeyInfo (RFC 7469 §2.4): it names a key, so it survives a certificate renewed with
the same key, and pinning a CA's key pins everything that CA issues.

`judge` is the one decision, run after the chain and the name were checked by the trust policy
(`verify_chain`), before any SIP byte is sent:

- with pins: one key of the presented chain (leaf, intermediates, or the anchor the path was
  built to) must match one pin, else `KeyMismatch` ("pin-mismatch") naming the expected and
  presented pins; the basis is `pinned`;
- with trust on first use: the registrar's leaf key is compared with the one recorded for its
  TLS name (`sipua.tls.stores.known.KnownKeys`). None recorded: it is recorded now (basis
  `first-use`); the same: the basis is `ca-verified` when the chain verified, else `first-use`;
  a different key: `KeyMismatch` ("key-changed") with the command that accepts the new key. A
  chain that failed verification is accepted on this basis only when its one failure is the
  missing trusted issuer (a self-signed or private-CA registrar): never an expired certificate,
  a wrong name or weak cryptography;
- otherwise the basis is `ca-verified` (or `unverified` when the policy let an unverified peer
  through).

Pure: the record store is passed in; this module does no I/O of its own.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from sipua.errors import PeerNotTrusted
from sipua.settings.model import PIN_PREFIX
from sipua.tls.trust.policy import TrustPolicy, verify_chain

Basis = Literal["ca-verified", "pinned", "first-use", "unverified"]

#: Verification codes trust on first use may waive: the chain only lacks a trusted issuer.
WAIVABLE_BY_FIRST_USE: Final = frozenset({"untrusted-issuer", "ca-type-not-accepted"})


class KeyMismatch(PeerNotTrusted):
    """The registrar's key is not the pinned or recorded one (exit code 3).

    Attributes:
        code: "pin-mismatch" or "key-changed".
        expected: The pins that would have been accepted.
        presented: The pins of the presented chain, leaf first.
    """

    def __init__(
        self, message: str, *, code: str, expected: Sequence[str], presented: Sequence[str]
    ) -> None:
        super().__init__(message, code=code)
        self.expected = tuple(expected)
        self.presented = tuple(presented)


def spki_pin(cert: x509.Certificate) -> str:
    """The RFC 7469 pin of `cert`'s key: `sha256/BASE64`."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return PIN_PREFIX + base64.b64encode(digest.finalize()).decode("ascii")


class KeyRecords(Protocol):
    """Where trust on first use keeps the keys it met (`sipua.tls.stores.known.KnownKeys`)."""

    def lookup(self, name: str) -> str | None:
        """The pin recorded for `name`, or None."""
        ...

    def record(self, name: str, pin: str) -> None:
        """Records `pin` for `name` (first contact)."""
        ...

    def accept_command(self, name: str, pin: str) -> str:
        """The command a user runs to accept `pin` as the new key of `name` in this store."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPolicy:
    """An account's key continuity settings.

    Attributes:
        pins: Accepted pins (`sha256/BASE64`); empty = no pinning.
        first_use: Trust on first use.
        records: The recorded keys (needed with `first_use`).
    """

    pins: tuple[str, ...] = ()
    first_use: bool = False
    records: KeyRecords | None = None

    @property
    def active(self) -> bool:
        """Whether this policy checks anything beyond the trust policy."""
        return bool(self.pins) or self.first_use


def judge(
    chain: Sequence[x509.Certificate],
    path: Sequence[x509.Certificate],
    *,
    name: str,
    verified: bool,
    code: str,
    reason: str,
    policy: KeyPolicy,
    trust: TrustPolicy,
    problems: Sequence[tuple[str, str]] = (),
) -> Basis:
    """The basis the connection rests on, or why it is refused.

    Args:
        chain: The certificates the peer presented, leaf first.
        path: The validated path (leaf to anchor) when the chain verified, else empty.
        name: The TLS name the registrar had to prove (where a first-use key is recorded).
        verified: The trust policy verified chain and name.
        code: The policy's verification code ("ok" or the failed check).
        reason: The policy's reason when not verified.
        policy: The account's pins and first-use setting.
        trust: The trust policy the chain was judged with (for the leaf's own checks).
        problems: Every failed check of the policy as (code, reason), the first one included
            (an expired self-signed certificate fails both "untrusted-issuer" and "expired").

    Raises:
        KeyMismatch: no pin matches, or the key differs from the recorded one.
        PeerNotTrusted: first use cannot waive the chain's failure.
    """
    if not chain:
        raise PeerNotTrusted(f"the server {name} presented no certificate", code="invalid-chain")
    if policy.pins:
        if verified:
            # RFC 7469 §2.6: the keys of the validated path, never what the peer merely sent
            # besides (anyone can append a pinned, public certificate to their own chain).
            presented = _pins_of(path)
            unverified_hint = ""
        else:
            # No validated path: the pin stands in for the missing anchor, so only the
            # server's own key can match, and the server's certificate must hold on its own.
            _leaf_on_its_own(chain, name, code, reason, problems, trust, "with a pin")
            presented = _pins_of(chain[:1])
            unverified_hint = (
                "; the chain did not verify, so only the server's own key can match (pin it, "
                "or trust its CA with --trusted-cert)"
            )
        if not set(presented) & set(policy.pins):
            raise KeyMismatch(
                f"the server {name} presented none of the pinned keys: expected "
                f"{' or '.join(policy.pins)}; presented {', '.join(presented)} (leaf first)"
                f"{unverified_hint}. If the registrar changed its key on purpose, pin the new "
                "one (--pin)",
                code="pin-mismatch",
                expected=policy.pins,
                presented=presented,
            )
        return "pinned"
    if policy.first_use:
        if not verified:
            _leaf_on_its_own(chain, name, code, reason, problems, trust, "with trust on first use")
        if policy.records is None:
            raise ValueError("trust on first use needs a record store")
        presented_pin = spki_pin(chain[0])
        recorded = policy.records.lookup(name)
        if recorded is None:
            policy.records.record(name, presented_pin)
            return "first-use"
        if recorded != presented_pin:
            raise KeyMismatch(
                f"the key of {name} has CHANGED since sipua first met it: recorded "
                f"{recorded}, presented {presented_pin}. This is what an attacker in the middle "
                "looks like; if the registrar's key was changed on purpose, accept the new one "
                f"with `{policy.records.accept_command(name, presented_pin)}`",
                code="key-changed",
                expected=(recorded,),
                presented=(presented_pin,),
            )
        return "ca-verified" if verified else "first-use"
    return "ca-verified" if verified else "unverified"


def _leaf_on_its_own(
    chain: Sequence[x509.Certificate],
    name: str,
    code: str,
    reason: str,
    problems: Sequence[tuple[str, str]],
    trust: TrustPolicy,
    waiver: str,
) -> None:
    """Checks an unverified chain that a key (pinned, or recorded on first use) is to stand
    for: only a missing or unaccepted issuer may be waived, and the server's certificate,
    trusted as itself, must pass every other check (validity, name, usage, strength).

    Raises:
        PeerNotTrusted: another check failed; the message says which, and that `waiver` does
            not waive it.
    """
    for failed, why in [*problems, (code, reason)]:
        if failed not in WAIVABLE_BY_FIRST_USE:
            raise PeerNotTrusted(
                f"the server {name} is refused even {waiver} ({failed}): {why}", code=failed
            )
    # Without an anchor the path checks stop at the missing issuer: judge the leaf trusted as
    # itself, so its validity, name, usage and strength are still checked.
    itself = verify_chain(
        [chain[0]],
        name=name,
        trusted=[chain[0]],
        policy=dataclasses.replace(trust, only_trusted=True, accepted_ca="custom"),
    )
    if not itself.verified:
        raise PeerNotTrusted(
            f"the server {name} is refused even {waiver} ({itself.code}): {itself.reason}",
            code=itself.code,
        )


def _pins_of(certs: Sequence[x509.Certificate]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(spki_pin(cert) for cert in certs))
