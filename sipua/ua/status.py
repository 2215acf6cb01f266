"""Snapshots of the user agent's state for `sipua status`-style output and JSON.

A snapshot is plain data (frozen dataclasses with an `as_json()`), taken from a running
`UserAgent` at one moment: the registration and lock state of the account, the flow's peer and
TLS name, and the calls in progress. It reads; it never changes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sipua.sip.uri import host_port

if TYPE_CHECKING:
    from sipua.ua.agent import UserAgent


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountStatus:
    """One account at one moment.

    Attributes:
        name: the account's label.
        aor: its address of record.
        registration: the registration state ("registered", "registering", "failed"...).
        expires: the granted expiry in seconds while registered.
        lock: the lock state ("negotiating", "locked", "locked-unverified", "unlocked").
        lock_reason: why, for the unverified and unlocked states.
        peer: ``host:port`` of the registrar flow, if connected.
        tls_name: the identity that flow was verified for.
        last_error: the last failure, if any.
    """

    name: str
    aor: str
    registration: str
    expires: int | None
    lock: str
    lock_reason: str
    peer: str | None
    tls_name: str | None
    last_error: str | None

    def as_json(self) -> dict[str, object]:
        """The snapshot as JSON-ready data."""
        return {
            "name": self.name,
            "aor": self.aor,
            "registration": self.registration,
            "expires": self.expires,
            "lock": self.lock,
            "lock_reason": self.lock_reason,
            "peer": self.peer,
            "tls_name": self.tls_name,
            "last_error": self.last_error,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStatus:
    """The whole user agent at one moment."""

    accounts: tuple[AccountStatus, ...]
    listening: str | None
    active_calls: int

    def as_json(self) -> dict[str, object]:
        """The snapshot as JSON-ready data."""
        return {
            "accounts": [account.as_json() for account in self.accounts],
            "listening": self.listening,
            "active_calls": self.active_calls,
        }


def snapshot(ua: UserAgent) -> AgentStatus:
    """Takes a snapshot of `ua` (inside its ``async with``)."""
    account = ua.account
    connection = account.connection
    registered = account.registered
    listening = None
    if ua.listen_address is not None:
        host, port = ua.listen_address
        listening = host_port(host, port)
    return AgentStatus(
        accounts=(
            AccountStatus(
                name=account.name,
                aor=account.settings.aor,
                registration=account.state.value,
                expires=registered.expires if registered is not None else None,
                lock=account.lock.state.value,
                lock_reason=account.lock.reason,
                peer=connection.peer if connection is not None else None,
                tls_name=connection.tls_name if connection is not None else None,
                last_error=str(account.last_failure) if account.last_failure else None,
            ),
        ),
        listening=listening,
        active_calls=ua.calls.active_calls,
    )
