"""What happened on a TLS connection, as data.

A `TlsStream` reports the outcome of its handshake and of its end as one of these values; the
user agent's lock tracker is driven from them (LOCKED needs a `HandshakeCompleted` whose
verification says the peer was verified). Facts are named in the past tense, as every event in
sipua is (design rule 3), and are frozen, slotted, keyword-only dataclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509
from OpenSSL import crypto


class Verification(Protocol):
    """The shape of the trust verdict (`sipua.tls.trust.policy.VerifyResult` has it).

    Attributes:
        ok: The trust policy allows the connection.
        verified: The chain and the name were verified (with `only_trusted=False` a connection
            can be `ok` without being `verified`).
        code: The machine-readable check that failed, or "ok".
        reason: A sentence a user can act on.
    """

    @property
    def ok(self) -> bool: ...
    @property
    def verified(self) -> bool: ...
    @property
    def code(self) -> str: ...
    @property
    def reason(self) -> str: ...


#: Decides whether the peer's chain (leaf first) is acceptable.
#: `sipua.tls.trust.policy.verify_chain` bound to a name, a trust policy and trusted anchors is
#: the one production verifier.
Verifier = Callable[[Sequence[x509.Certificate]], Verification]


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenSslVerdict:
    """OpenSSL's own opinion of one certificate of the peer chain (advisory only).

    The verify callback records this on every handshake, so it only keeps what OpenSSL hands
    over; the subject is formatted when someone reads it (diagnostics), not per handshake.

    Attributes:
        depth: 0 for the leaf, 1 for its issuer, and so on.
        ok: Whether OpenSSL accepted this certificate.
        error: OpenSSL's X509_V_ERR number (0 when ok).
        certificate: The certificate OpenSSL judged, or None when it was not kept.
    """

    depth: int
    ok: bool
    error: int
    certificate: crypto.X509 | None = field(default=None, repr=False, compare=False)

    @property
    def subject(self) -> str:
        """The certificate's subject as an RFC 4514 string (computed on each read)."""
        if self.certificate is None:
            return "<not recorded>"
        try:
            return self.certificate.to_cryptography().subject.rfc4514_string()
        except ValueError:
            return "<unparsable subject>"


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeCompleted:
    """The handshake finished and the peer passed the trust policy.

    Attributes:
        version: Negotiated protocol, e.g. "TLSv1.3".
        cipher: Negotiated cipher suite name (OpenSSL spelling).
        peer_chain: The peer's certificates as presented, leaf first (empty when a server did
            not get a client certificate).
        verification: The verdict of the one verifier, or None when the peer presented no
            certificate and none was required (server side, client certificates optional).
        server_name: Client side: the SNI name we sent (None for IP literals); server side: the
            SNI name the client sent.
        sni: Server side only: the SNI name received from the client, None if none was sent.
        openssl_verdicts: OpenSSL's per-depth verdicts, deepest first, for diagnostics.
        server_side: True on the accepting side.
        certificate_requested: Client side: the server asked for our certificate. Under
            TLS 1.3 it judges that certificate after our handshake is done, so until it
            answers, the connection may still be refused.
    """

    version: str
    cipher: str
    peer_chain: tuple[x509.Certificate, ...]
    verification: Verification | None
    server_name: str | None
    sni: str | None
    openssl_verdicts: tuple[OpenSslVerdict, ...]
    server_side: bool
    certificate_requested: bool = False

    @property
    def verified(self) -> bool:
        """True when the peer's chain and name were verified (the condition for the lock)."""
        return self.verification is not None and self.verification.verified


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeFailed:
    """The handshake did not produce a connection that may carry SIP.

    Attributes:
        reason: What failed, in words (OpenSSL's reason, the timeout, or the verdict's reason).
        code: "handshake" for protocol failures, "timeout", or the verification code of a peer
            the trust policy refused (e.g. "untrusted-issuer").
        verification: The verdict when the failure was the trust policy's, else None.
    """

    reason: str
    code: str = "handshake"
    verification: Verification | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsClosed:
    """The TLS connection ended.

    Attributes:
        clean: True when the peer sent close_notify (or we closed); False when the transport
            ended without it (a truncation: log it as a warning and drop the lock).
        reason: A short description of how it ended.
    """

    clean: bool
    reason: str


TlsEvent = HandshakeCompleted | HandshakeFailed | TlsClosed
