"""The lock state of a TLS connection (and of the account registered over it), as a pure tracker.

Theory of operation: the transport reports what happened to a connection (negotiating, a
handshake that completed with or without a verified peer, a handshake or verification that
failed, a connection that was lost or closed) as small input events. `LockTracker.on_event`
turns them into `LockChanged` transitions, and only when the state or its reason changes, so the
UA can log and print each transition once. The tracker does no I/O and reads no clock.

The four states are the ones the console and the structured logs show:

- ``negotiating``: a TLS handshake is under way;
- ``locked``: the handshake completed and the peer's certificate was verified by the trust policy
  (chain, validity and RFC 5922 identity);
- ``locked-unverified``: the handshake completed but the peer was *not* verified, which the
  policy allows only when "only accept trusted" is off; the reason names the failed check;
- ``unlocked``: no usable connection, with the reason (handshake failure, verification failure
  with the precise check, connection lost, closed).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, assert_never


class LockState(enum.Enum):
    """What a person is told about the security of the path to the registrar."""

    NEGOTIATING = "negotiating"
    LOCKED = "locked"
    LOCKED_UNVERIFIED = "locked-unverified"
    UNLOCKED = "unlocked"


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsNegotiating:
    """A TCP connection is open and the TLS handshake started."""

    peer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsEstablished:
    """The handshake completed and the policy allowed the connection.

    Attributes:
        verified: whether the peer's chain and name were verified.
        code: the verification code ("ok", or the check that failed when not verified).
        reason: the verification's human-readable reason.
        basis: what the trust rests on: "ca-verified" (chain and name), "pinned" (and a
            pinned key), "first-use" (the key recorded on first contact), "unverified"
            (only-trusted off), or "" when not said (inbound connections).
    """

    verified: bool
    code: str = "ok"
    reason: str = ""
    basis: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsRefused:
    """The handshake failed, or the peer failed verification under an only-trusted policy.

    Attributes:
        kind: "handshake-failed" or "verification-failed".
        code: the precise check (a `verify_chain` code) or "handshake".
        reason: what went wrong, in words.
    """

    kind: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionDown:
    """The connection ended: lost (peer closed, reset, dead flow) or closed by us.

    Attributes:
        reason: what happened, in words.
        clean: closed by us (``closed``) rather than lost.
        kind: the word the lock's reason starts with when not clean: ``connection-lost``, or
            ``connect-failed`` when no connection was opened at all (refused, timed out).
    """

    reason: str
    clean: bool = False
    kind: str = "connection-lost"


LockInput = TlsNegotiating | TlsEstablished | TlsRefused | ConnectionDown


@dataclass(frozen=True, slots=True, kw_only=True)
class LockChanged:
    """The lock state changed.

    Attributes:
        state: the new state.
        reason: why, in full (empty for ``negotiating`` and ``locked``).
        check: the reason in a few words, without the explanation: the check that failed
            (``verification-failed: untrusted-issuer``, ``handshake-failed: handshake``,
            ``untrusted-issuer`` for locked-unverified), ``connect-failed``, ``connection-lost``
            or ``closed: ...``.
            A summary line shows it; the failure's own error carries the explanation.
        previous: the state before.
        basis: what a locked state rests on (see `TlsEstablished.basis`); "" otherwise.
    """

    state: LockState
    reason: str
    previous: LockState
    check: str = ""
    basis: str = ""


INITIAL_REASON: Final = "not connected"


class LockTracker:
    """Tracks the lock state of one connection or account; pure, events in, changes out."""

    def __init__(self) -> None:
        self.state = LockState.UNLOCKED
        self.reason = INITIAL_REASON
        self.check = INITIAL_REASON
        self.basis = ""

    def on_event(self, event: LockInput) -> LockChanged | None:
        """Feeds one transport event.

        Args:
            event: what happened to the connection.

        Returns:
            The transition, or None when neither the state nor its reason changed.
        """
        state, reason, check = self._next(event)
        basis = event.basis if isinstance(event, TlsEstablished) else ""
        if state is self.state and reason == self.reason and basis == self.basis:
            return None
        previous = self.state
        self.state, self.reason, self.check, self.basis = state, reason, check, basis
        return LockChanged(state=state, reason=reason, previous=previous, check=check, basis=basis)

    @staticmethod
    def _next(event: LockInput) -> tuple[LockState, str, str]:
        """The state, its full reason and its check (the reason without the explanation)."""
        match event:
            case TlsNegotiating():
                return LockState.NEGOTIATING, "", ""
            case TlsEstablished(verified=True):
                return LockState.LOCKED, "", ""
            case TlsEstablished(basis="first-use" | "pinned"):
                # Unverified chain, but the server's key is the pinned or first-use one, and its
                # certificate passed every check but its issuer's (`pins.judge`).
                return LockState.LOCKED, "", ""
            case TlsEstablished(code=code, reason=reason):
                return LockState.LOCKED_UNVERIFIED, _join(code, reason), code
            case TlsRefused(kind=kind, code=code, reason=reason):
                return LockState.UNLOCKED, f"{kind}: {_join(code, reason)}", f"{kind}: {code}"
            case ConnectionDown(clean=True, reason=reason):
                closed = f"closed: {reason}" if reason else "closed"
                return LockState.UNLOCKED, closed, closed
            case ConnectionDown(reason=reason, kind=kind):
                return LockState.UNLOCKED, f"{kind}: {reason}", kind
            case _:
                assert_never(event)


def _join(code: str, reason: str) -> str:
    if not reason:
        return code
    return f"{code} ({reason})"
