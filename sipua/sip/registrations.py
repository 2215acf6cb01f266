"""Every account's registration, as the endpoint runs it: flows, failover, back-off, keep-alive.

Theory of operation: `Registrations` is the part of the `Endpoint` that keeps accounts
registered. It decides; the user agent carries out what it decides and reports back, with
`now`. For each account it holds the `Registration` machine (`sipua.sip.registration`), the
flow the binding lives on (an opaque connection handle), the RFC 3263 targets, the back-off and
the keep-alive schedule:

    commands: register(account, now), maintain(account, now), unregister(account, now), stop
    facts:    targets_located / locate_failed        (RFC 3263 location, done by the UA)
              connection_opened / connection_failed  (TCP + TLS to one target, done by the UA)
              connection_closed(handle), pong_received(handle)
              response(key, ...) / timed_out(key)    (the transaction layer's verdicts)
              handle_timer(now)
    outputs:  LocateTargets, OpenConnection, SendKeepalive, CloseConnection, AccountRegistered,
              AccountRegistrationFailed, AccountUnregistered, RegistrationRetry, FlowLost
              (through the endpoint's event queue), and REGISTER requests, which the endpoint
              sends in client non-INVITE transactions of its table.

The decisions:

- Failover (RFC 3263 §4.3): the targets are tried in order; a refused connection, a failed
  handshake or a timeout moves to the next one. When every target failed, the attempt fails
  with the most telling cause (a TLS verdict beats a network one, it is what the user can fix).
- Back-off (RFC 5626 §4.5): an account that is maintained waits `backoff_delay(failures)` after
  a failed attempt (30 s base, doubling up to 30 min, drawn between 50% and 100% from the
  injected random source), then tries again, on the same flow when it is still open. The first
  retry after a working (registered) flow is lost is immediate (RFC 5626 §4.4.1: a new flow at
  once), but only for a flow that stayed up `STABLE_FLOW_SECONDS` after it registered, and only
  such a flow resets the count: a registrar that accepts the REGISTER and then drops the
  connection (or renegotiates, or answers pings with garbage) would otherwise be reconnected
  to in a tight loop, hundreds of handshakes a second, each success clearing the count.
- Refresh (RFC 3261 §10.2.4): the registration's own deadline.
- Keep-alive (RFC 5626 §4.4.1): once registered, each flow gets a `KeepaliveSchedule`; its
  pings are `SendKeepalive` outputs, and a pong missing after the registrar has shown that it
  answers pings kills the flow (`CloseConnection`, then as a lost flow).

A REGISTER that gets no final response fails when its transaction's Timer F fires; a flow that
closes takes its registration (and the transaction in flight) with it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from sipua.sip.errors import LocalProtocolError, ProtocolError
from sipua.sip.events import ClientTxKey
from sipua.sip.keepalive import PONG_TIMEOUT_SECONDS, KeepaliveAction, KeepaliveSchedule
from sipua.sip.message import Request, Response
from sipua.sip.registration import (
    DEFAULT_BACKOFF_BASE_SECONDS,
    DEFAULT_BACKOFF_MAX_SECONDS,
    ContactAddress,
    JitterSource,
    Registered,
    Registration,
    RegistrationFailed,
    RegistrationOutput,
    RegistrationState,
    SendRequest,
    Unregistered,
    backoff_delay,
)
from sipua.sip.uri import SipUri

H = TypeVar("H", bound=Hashable)

#: Accounts one endpoint keeps.
MAX_ACCOUNTS: Final = 64
#: How long a flow must stay up after registering to count as one that worked: replaced at once
#: when lost, and clearing the back-off count (one base period of RFC 5626 §4.5's back-off).
STABLE_FLOW_SECONDS: Final = 30.0


@dataclass(frozen=True, slots=True)
class FlowTarget:
    """Where one registration flow goes: address and the TLS name it must be verified for."""

    host: str
    port: int
    tls_name: str


# -- outputs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LocateTargets:
    """Find the account's registrar targets (RFC 3263) and report them with `targets_located`."""

    account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenConnection:
    """Open a verified TLS connection to `target` for the account's flow.

    Report `connection_opened` or `connection_failed`.
    """

    account: str
    target: FlowTarget


@dataclass(frozen=True, slots=True, kw_only=True)
class SendKeepalive(Generic[H]):
    """Send an RFC 5626 CRLFCRLF ping on the flow `handle`."""

    handle: H


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseConnection(Generic[H]):
    """Close the connection `handle` (its flow is dead); `connection_closed` follows."""

    handle: H
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountRegistered(Generic[H]):
    """The registrar accepted the account's binding on the flow `handle`."""

    account: str
    handle: H
    expires: int
    refresh_at: float
    flow_timer: int | None = None
    refreshed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountRegistrationFailed:
    """An attempt to register the account ended without a binding.

    Attributes:
        failure: the registrar's refusal or the timeout (`RegistrationFailed`), when a
            REGISTER was sent.
        cause: what the user agent reported when no REGISTER could be sent (the location or
            connection error, the most telling of the targets'), else None.
        reason: what happened, for a person.
    """

    account: str
    reason: str
    failure: RegistrationFailed | None = None
    cause: object = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountUnregistered:
    """The account's binding was removed (2xx `status`), or the unregister failed."""

    account: str
    status: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationRetry:
    """The account tries again in `delay` seconds (RFC 5626 §4.5 back-off)."""

    account: str
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowLost(Generic[H]):
    """The account's flow `handle` is gone; `working` when it carried a binding."""

    account: str
    handle: H
    reason: str
    working: bool


AccountEvent = (
    LocateTargets
    | OpenConnection
    | SendKeepalive[H]
    | CloseConnection[H]
    | AccountRegistered[H]
    | AccountRegistrationFailed
    | AccountUnregistered
    | RegistrationRetry
    | FlowLost[H]
)


# -- state ----------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Account(Generic[H]):
    name: str
    registration: Registration
    keepalive_interval: float | None
    pong_timeout: float
    backoff_base: float
    backoff_max: float
    persistent: bool = False  # maintained: failures are retried
    wanted: bool = False  # a registration was asked for and has no outcome yet
    handle: H | None = None  # the open flow
    keepalive: KeepaliveSchedule | None = None
    locating: bool = False
    connecting: bool = False
    targets: list[FlowTarget] = field(default_factory=list)
    next_target: int = 0
    causes: list[tuple[object, bool]] = field(default_factory=list)  # (cause, is TLS)
    retry_at: float | None = None
    failures: int = 0
    tx: ClientTxKey | None = None
    registered_since: float | None = None  # when the open flow first registered


class Registrations(Generic[H]):
    """The accounts of one endpoint and their flows.

    Args:
        send: sends a REGISTER on a flow in a new client transaction; returns its key.
        emit: queues an event of the endpoint.
        rng: the jitter of back-off and keep-alive.
    """

    def __init__(
        self,
        *,
        send: Callable[[H, Request, float], ClientTxKey],
        emit: Callable[[AccountEvent[H]], None],
        rng: JitterSource,
    ) -> None:
        self._send = send
        self._emit = emit
        self._rng = rng
        self._accounts: dict[str, _Account[H]] = {}
        self._by_tx: dict[ClientTxKey, str] = {}

    # -- commands -------------------------------------------------------------------------

    def add(
        self,
        name: str,
        registration: Registration,
        *,
        keepalive_interval: float | None = None,
        pong_timeout: float = PONG_TIMEOUT_SECONDS,
        backoff_base: float = DEFAULT_BACKOFF_BASE_SECONDS,
        backoff_max: float = DEFAULT_BACKOFF_MAX_SECONDS,
    ) -> None:
        """Adds an account (not registered until `register` or `maintain`).

        Raises:
            LocalProtocolError: the name is taken, or `MAX_ACCOUNTS` are kept.
        """
        if name in self._accounts:
            raise LocalProtocolError(f"account {name!r} is already in the endpoint")
        if len(self._accounts) >= MAX_ACCOUNTS:
            raise LocalProtocolError(f"{MAX_ACCOUNTS} accounts at most in one endpoint")
        self._accounts[name] = _Account(
            name, registration, keepalive_interval, pong_timeout, backoff_base, backoff_max
        )

    def registration(self, name: str) -> Registration:
        """The account's registration machine (its state, granted expiry)."""
        return self._account(name).registration

    def flow(self, name: str) -> H | None:
        """The account's open flow, or None."""
        return self._account(name).handle

    def register(self, name: str, now: float) -> None:
        """Registers the account now: on its flow, or after locating and connecting one."""
        account = self._account(name)
        account.wanted = True
        account.retry_at = None
        self._attempt(account, now)

    def maintain(self, name: str, now: float) -> None:
        """Keeps the account registered from now on: failures are retried with back-off."""
        account = self._account(name)
        account.persistent = True
        state = account.registration.state
        busy = account.locating or account.connecting or account.retry_at is not None
        if state not in (RegistrationState.REGISTERED, RegistrationState.REGISTERING) and not busy:
            self.register(name, now)

    def stop(self, name: str) -> None:
        """Stops maintaining the account (no more retries; the binding stays until it ends)."""
        account = self._account(name)
        account.persistent = False
        account.retry_at = None

    def unregister(self, name: str, now: float) -> bool:
        """Removes the account's binding (``Expires: 0``, RFC 3261 §10.2.2) on its flow.

        Returns:
            False when there is nothing to remove (no binding, or no flow to say so on); else
            `AccountUnregistered` follows.
        """
        account = self._account(name)
        account.persistent = False
        account.retry_at = None
        account.wanted = False
        state = account.registration.state
        bound = state in (RegistrationState.REGISTERED, RegistrationState.REGISTERING)
        if account.handle is None or not bound:
            return False
        if account.keepalive is not None:
            account.keepalive.stop()
        self._apply(account, account.registration.unregister(now), now)
        return True

    # -- facts ----------------------------------------------------------------------------

    def targets_located(self, name: str, targets: Sequence[FlowTarget], now: float) -> None:
        """RFC 3263 gave these targets, in the order to try them (§4.3)."""
        account = self._account(name)
        if not account.locating:
            return
        account.locating = False
        account.targets = list(targets)
        account.next_target = 0
        account.causes = []
        if not account.targets:
            self._round_failed(account, "no target to connect to; check the AOR and --proxy", now)
            return
        self._open_next(account)

    def locate_failed(self, name: str, cause: object, now: float) -> None:
        """RFC 3263 location failed (`cause` is the user agent's error, carried as is)."""
        account = self._account(name)
        if not account.locating:
            return
        account.locating = False
        account.causes = [(cause, False)]
        self._round_failed(account, str(cause), now)

    def connection_opened(self, name: str, handle: H, contact: str, local: str, now: float) -> None:
        """The connection to the target asked for is up and verified.

        Args:
            contact: our Contact URI on it; local: our ``host:port`` on it (Via sent-by).
        """
        account = self._account(name)
        account.connecting = False
        account.handle = handle
        account.keepalive = None  # a new flow shows again whether its registrar answers pings
        account.causes = []
        try:
            uri = SipUri.parse(contact)
        except ProtocolError as exc:
            raise LocalProtocolError(f"our Contact {contact!r} is not a SIP URI: {exc}") from exc
        account.registration.set_contact(ContactAddress(uri=uri, sent_by=local))
        if account.wanted and account.retry_at is None:
            self._attempt(account, now)

    def connection_failed(
        self, name: str, cause: object, now: float, *, tls: bool, fatal: bool = False
    ) -> None:
        """The connection to the target failed (`tls`: its TLS handshake or verdict did).

        RFC 3263 §4.3: the next target is tried; after the last, the attempt fails. A `fatal`
        cause (a setting that retrying cannot fix) fails the attempt at once and ends the
        account's maintenance.
        """
        account = self._account(name)
        if not account.connecting:
            return
        account.connecting = False
        if fatal:
            account.persistent = False
            account.causes = [(cause, True)]
            self._round_failed(account, str(cause), now)
            return
        account.causes.append((cause, tls))
        account.next_target += 1
        if account.next_target < len(account.targets):
            self._open_next(account)
            return
        self._round_failed(account, str(self._most_telling(account)), now)

    def connection_closed(self, handle: H, reason: str, now: float) -> bool:
        """A connection closed; True when it was an account's flow (which is then lost)."""
        found = False
        for account in self._accounts.values():
            if account.handle is not None and account.handle == handle:
                self._flow_lost(account, reason, now)
                found = True
        return found

    def pong_received(self, handle: H, now: float) -> None:
        """A CRLF pong arrived on `handle` (RFC 5626 §4.4.1)."""
        for account in self._accounts.values():
            if account.handle == handle and account.keepalive is not None:
                account.keepalive.pong_received(now)

    # -- from the transaction layer -------------------------------------------------------

    def owns(self, key: ClientTxKey) -> bool:
        """Whether the client transaction `key` carries an account's REGISTER."""
        return key in self._by_tx

    def response(self, key: ClientTxKey, response: Response, now: float) -> None:
        """A response the transaction `key` delivered (its REGISTER's)."""
        account = self._by_key(key, final=response.status >= 200)
        if account is not None:
            self._apply(account, account.registration.receive_response(response, now), now)

    def timed_out(self, key: ClientTxKey, reason: str, now: float) -> None:
        """The transaction `key` got no final response (Timer F)."""
        account = self._by_key(key, final=True)
        if account is not None:
            self._apply(account, account.registration.timed_out(now, reason), now)

    def terminated(self, key: ClientTxKey) -> None:
        """The transaction `key` is over."""
        name = self._by_tx.pop(key, None)
        if name is not None and self._accounts[name].tx == key:
            self._accounts[name].tx = None

    # -- time -----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest retry, refresh or keep-alive deadline of any account."""
        deadlines: list[float] = []
        for account in self._accounts.values():
            if account.retry_at is not None:
                deadlines.append(account.retry_at)
            refresh = account.registration.next_deadline()
            if refresh is not None and account.handle is not None:
                deadlines.append(refresh)
            if account.keepalive is not None and account.handle is not None:
                keepalive = account.keepalive.next_deadline()
                if keepalive is not None:
                    deadlines.append(keepalive)
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        """Fires what is due: retries after back-off, refreshes, pings and pong timeouts."""
        for account in list(self._accounts.values()):
            if account.retry_at is not None and account.retry_at <= now:
                account.retry_at = None
                account.wanted = True
                self._attempt(account, now)
            if account.handle is not None:
                self._apply(account, account.registration.handle_timer(now), now)
            schedule = account.keepalive
            if schedule is None or account.handle is None:
                continue
            deadline = schedule.next_deadline()
            if deadline is None or deadline > now:
                continue
            action = schedule.handle_timer(now)
            if action is KeepaliveAction.SEND_PING:
                self._emit(SendKeepalive(handle=account.handle))
            elif action is KeepaliveAction.FLOW_DEAD:
                handle = account.handle
                reason = f"flow dead: no pong within {schedule.pong_timeout:g} s (RFC 5626 §4.4.1)"
                self._emit(CloseConnection(handle=handle, reason=reason))
                self._flow_lost(account, reason, now)

    # -- internals ------------------------------------------------------------------------

    def _account(self, name: str) -> _Account[H]:
        account = self._accounts.get(name)
        if account is None:
            raise LocalProtocolError(f"no account {name!r} in the endpoint")
        return account

    def _by_key(self, key: ClientTxKey, *, final: bool) -> _Account[H] | None:
        name = self._by_tx.get(key)
        if name is None:
            return None
        account = self._accounts[name]
        if account.tx != key:
            return None  # the answer to a request overtaken since (an unregister)
        if final:
            account.tx = None
        return account

    def _attempt(self, account: _Account[H], now: float) -> None:
        """Registers on the open flow, or starts locating and connecting one."""
        if account.handle is not None:
            if account.registration.state in (
                RegistrationState.REGISTERING,
                RegistrationState.UNREGISTERING,
            ):
                return  # a REGISTER is in flight; its outcome answers this wish too
            self._apply(account, account.registration.register(now), now)
        elif not (account.locating or account.connecting):
            account.locating = True
            self._emit(LocateTargets(account=account.name))

    def _open_next(self, account: _Account[H]) -> None:
        account.connecting = True
        self._emit(
            OpenConnection(account=account.name, target=account.targets[account.next_target])
        )

    def _round_failed(self, account: _Account[H], reason: str, now: float) -> None:
        """No flow could be opened: the attempt fails; a maintained account backs off."""
        cause = self._most_telling(account) if account.causes else None
        account.wanted = False
        self._emit(AccountRegistrationFailed(account=account.name, reason=reason, cause=cause))
        self._back_off(account, now)

    def _back_off(self, account: _Account[H], now: float) -> None:
        if not account.persistent:
            return
        delay = backoff_delay(
            account.failures, self._rng, base=account.backoff_base, maximum=account.backoff_max
        )
        account.failures += 1
        account.retry_at = now + delay
        self._emit(RegistrationRetry(account=account.name, delay=delay))

    def _flow_lost(self, account: _Account[H], reason: str, now: float) -> None:
        handle = account.handle
        assert handle is not None
        state = account.registration.state
        working = state is RegistrationState.REGISTERED
        in_flight = state is RegistrationState.REGISTERING
        stable = _stable(account, now)
        account.registered_since = None
        account.handle = None
        if account.keepalive is not None:
            account.keepalive.stop()
        account.keepalive = None
        if account.tx is not None:
            self._by_tx.pop(account.tx, None)
            account.tx = None
        account.registration.connection_lost()
        self._emit(FlowLost(account=account.name, handle=handle, reason=reason, working=working))
        if state is RegistrationState.UNREGISTERING:
            # No answer will come; the binding ends with its flow (RFC 5626 §4.4.1).
            self._emit(
                AccountUnregistered(
                    account=account.name, status=408, reason=f"connection lost: {reason}"
                )
            )
        if in_flight or account.wanted:
            account.wanted = False
            self._emit(
                AccountRegistrationFailed(
                    account=account.name, reason=f"connection lost: {reason}", cause=None
                )
            )
        if not account.persistent:
            return
        if working and stable:
            # RFC 5626 §4.4.1, §4.5: a flow that worked is replaced at once.
            account.failures = 0
            account.retry_at = None
            account.wanted = True
            self._attempt(account, now)
        elif working or account.retry_at is None:
            # A flow lost soon after registering failed, as far as back-off goes.
            self._back_off(account, now)

    def _apply(self, account: _Account[H], outputs: list[RegistrationOutput], now: float) -> None:
        for output in outputs:
            if isinstance(output, SendRequest):
                handle = account.handle
                if handle is None:
                    raise LocalProtocolError(f"account {account.name!r} has no flow to send on")
                if account.tx is not None:
                    self._by_tx.pop(account.tx, None)
                key = self._send(handle, output.request, now)
                account.tx = key
                self._by_tx[key] = account.name
            elif isinstance(output, Registered):
                self._registered(account, output, now)
            elif isinstance(output, RegistrationFailed):
                account.wanted = False
                self._emit(
                    AccountRegistrationFailed(
                        account=account.name, reason=output.reason, failure=output
                    )
                )
                self._back_off(account, now)
            elif isinstance(output, Unregistered):
                self._emit(
                    AccountUnregistered(
                        account=account.name, status=output.status, reason=output.reason
                    )
                )

    def _registered(self, account: _Account[H], registered: Registered, now: float) -> None:
        handle = account.handle
        assert handle is not None
        account.wanted = False
        if account.registered_since is None:
            account.registered_since = now
        if _stable(account, now):
            account.failures = 0
        account.retry_at = None
        schedule = account.keepalive
        if schedule is None:
            schedule = KeepaliveSchedule(
                account.keepalive_interval, self._rng, pong_timeout=account.pong_timeout
            )
            account.keepalive = schedule
            schedule.start(now)
        schedule.set_flow_timer(registered.flow_timer, now)
        self._emit(
            AccountRegistered(
                account=account.name,
                handle=handle,
                expires=registered.expires,
                refresh_at=registered.refresh_at,
                flow_timer=registered.flow_timer,
                refreshed=registered.refreshed,
            )
        )

    @staticmethod
    def _most_telling(account: _Account[H]) -> object:
        """A TLS verdict beats a network error: it is what the user can act on."""
        for cause, tls in account.causes:
            if tls:
                return cause
        return account.causes[-1][0] if account.causes else None


def _stable(account: _Account[H], now: float) -> bool:
    """Whether the account's open flow has been registered for `STABLE_FLOW_SECONDS`."""
    since = account.registered_since
    return since is not None and now - since >= STABLE_FLOW_SECONDS
