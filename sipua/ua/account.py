"""One account: the trio side of its registration, which the endpoint runs.

Theory of operation: every decision about the account's registration is the endpoint's
(`sipua.sip.registrations`: when to locate and connect, failover to the next target, back-off,
refresh, keep-alive and dead flows, each REGISTER in a client transaction of the endpoint's
table). `Account` carries out the two things that need I/O and reports back with the time:

- `LocateTargets`: RFC 3263 targets from the locator (`sipua.locate.locate`; an outbound
  proxy skips the lookups), reported with `targets_located` or `locate_failed`.
- `OpenConnection`: TCP and a TLS handshake verified for the target's TLS name, the lock
  moving negotiating -> locked / locked-unverified, or unlocked with the precise reason; the
  connection's reader feeds every message to the endpoint through the one pump
  (`sipua.ua.calls.CallHandler`), pongs included. Reported with `connection_opened` or
  `connection_failed`. When the registrar asked for our client certificate, the lock stays
  negotiating until its first answer (it may still refuse the certificate by closing:
  `ClientCertificateRefused`, exit code 3).

The endpoint's account events come back here from the pump (`on_event`): they are published
(`registered`, `registration-failed`, `registration-retry`, `unregistered`), move the lock
(`FlowLost`), and end the waits of `register()` and `unregister()`, which turn a failure into
the error a user can act on. `maintain()` only tells the endpoint to keep the account
registered, and to stop when it is cancelled.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import trio

from sipua.errors import (
    AuthenticationFailed,
    ClientCertificateRefused,
    ConfigError,
    ConnectFailed,
    ConnectionLost,
    HandshakeFailed,
    PeerNotTrusted,
    RegistrationError,
    SipuaError,
    TlsError,
    TransportError,
)
from sipua.settings.model import AccountSettings
from sipua.sip import Request, Response, SipUri
from sipua.sip.errors import ProtocolError
from sipua.sip.keepalive import PONG_TIMEOUT_SECONDS
from sipua.sip.registration import (
    DEFAULT_BACKOFF_BASE_SECONDS,
    ContactAddress,
    DigestResponder,
    Registered,
    Registration,
    RegistrationFailed,
    RegistrationState,
)
from sipua.sip.registrations import (
    AccountEvent,
    AccountRegistered,
    AccountRegistrationFailed,
    AccountUnregistered,
    FlowLost,
    FlowTarget,
    LocateTargets,
    OpenConnection,
    RegistrationRetry,
)
from sipua.sip.uri import host_port
from sipua.transport.connection import SipConnection
from sipua.ua.lock import (
    ConnectionDown,
    LockInput,
    LockTracker,
    TlsEstablished,
    TlsNegotiating,
    TlsRefused,
)

if TYPE_CHECKING:
    from sipua.ua.calls import CallHandler

UNREGISTER_TIMEOUT_SECONDS: Final = 5.0

Publish = Callable[..., None]

__all__ = ["Account", "Connector", "FlowTarget", "Locator", "contact_uri"]

#: Opens a verified connection to a target (and says how the handshake went for the lock), or
#: raises TlsError / TransportError.
Connector = Callable[[FlowTarget, "Account"], Awaitable[tuple[SipConnection, TlsEstablished]]]
#: Turns the account settings into the ordered list of targets (RFC 3263).
Locator = Callable[[AccountSettings], Awaitable[list[FlowTarget]]]

_Outcome = AccountRegistered[SipConnection] | AccountRegistrationFailed | AccountUnregistered


@dataclass(slots=True, eq=False)
class _Wait:
    """A caller waiting for the next outcome of one kind."""

    kinds: tuple[type[object], ...]
    done: trio.Event = field(default_factory=trio.Event)
    outcome: _Outcome | None = None


class Account:
    """A registered identity and its flow to the registrar.

    Args:
        settings: the account's settings.
        instance_id: the device's stable UUID (``+sip.instance``).
        locator: finds the targets to try.
        connector: opens and verifies a connection to one target.
        publish: the UA's event sink, `publish(event, **fields)`.
        nursery: where connection reader tasks run.
        pump: the user agent's one pump, which owns the endpoint.
        rng: ids and digest cnonces of the registration.
        listen: our listener's (host, port) for the Contact, or None to use the flow's address.
        backoff_base: RFC 5626 §4.5 base time in seconds.
        pong_timeout: seconds a pong may take once the registrar answers pings (RFC 5626: 10).
    """

    def __init__(
        self,
        settings: AccountSettings,
        *,
        instance_id: str,
        locator: Locator,
        connector: Connector,
        publish: Publish,
        nursery: trio.Nursery,
        pump: CallHandler,
        rng: random.Random,
        listen: tuple[str, int] | None = None,
        backoff_base: float = DEFAULT_BACKOFF_BASE_SECONDS,
        pong_timeout: float = PONG_TIMEOUT_SECONDS,
    ) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.lock = LockTracker()
        self.connection: SipConnection | None = None
        self.registered: Registered | None = None
        self.last_failure: SipuaError | None = None
        # The lock a connection earns once the registrar answers (client certificate asked).
        self._lock_on_answer: TlsEstablished | None = None
        # The error that ended the last flow (a TLS alert beats "connection lost").
        self._lost_error: SipuaError | None = None
        self._locator = locator
        self._connector = connector
        self._publish = publish
        self._nursery = nursery
        self._pump = pump
        self._listen = listen
        self._waits: list[_Wait] = []
        try:
            self._aor = SipUri.parse(settings.aor)
            registration = Registration(
                aor=self._aor,
                contact=ContactAddress(uri=self._aor, sent_by="0.0.0.0:0"),  # set on connect
                instance_id=instance_id,
                rng=rng,
                responder=DigestResponder(
                    username=settings.username, password=settings.password, rng=rng
                ),
                expires=settings.expires,
            )
        except ProtocolError as exc:
            raise ConfigError(f"account {settings.name!r}: aor {settings.aor!r}: {exc}") from exc
        self._registrations = pump.endpoint.registrations
        self._registrations.add(
            settings.name,
            registration,
            keepalive_interval=settings.keepalive_interval,
            pong_timeout=pong_timeout,
            backoff_base=backoff_base,
        )
        pump.attach(self)

    @property
    def name(self) -> str:
        """The account's label."""
        return self.settings.name

    @property
    def state(self) -> RegistrationState:
        """The registration state."""
        return self._registrations.registration(self.name).state

    @property
    def stray_responses(self) -> int:
        """Responses that answered no request of ours (dropped, RFC 3261 §17.1.3)."""
        return self._pump.endpoint.stray_responses

    def contact_uri(self, connection: SipConnection) -> str:
        """Our Contact URI on `connection` (see `contact_uri`)."""
        return contact_uri(self._aor.user, self._listen, connection.local)

    # -- lock -----------------------------------------------------------------------------------

    def note_lock(self, event: LockInput, peer: str | None = None) -> None:
        """Feeds the lock tracker and publishes a `lock-changed` event on a transition."""
        change = self.lock.on_event(event)
        if change is not None:
            self._publish(
                "lock-changed",
                account=self.name,
                scope="account",
                state=change.state.value,
                reason=change.reason,
                check=change.check,
                previous=change.previous.value,
                basis=change.basis or None,
                peer=peer,
            )

    # -- the public verbs -----------------------------------------------------------------------

    async def register(self) -> Registered:
        """Connects if needed and registers once.

        Raises:
            TlsError: the handshake or the peer's verification failed, or the registrar ended
                the flow with an alert (our client certificate refused) (exit code 3).
            AuthenticationFailed, RegistrationError: the registrar refused (exit code 4).
            TransportError: no target reachable, or no answer in time (exit code 5).
        """
        connection = self.connection
        if connection is not None and not connection.is_open:
            # Closed, and its reader has not said so yet: the endpoint must know before it
            # chooses the flow to register on.
            self._pump.connection_closed(connection, connection.closed_reason or "closed")
        wait = self._wait(AccountRegistered, AccountRegistrationFailed)
        self._pump.command(lambda now: self._registrations.register(self.name, now))
        outcome = await self._outcome(wait)
        if isinstance(outcome, AccountRegistered):
            return _registered(outcome)
        assert self.last_failure is not None  # set when the failure was published
        raise self.last_failure

    async def maintain(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keeps the account registered until cancelled (the endpoint refreshes, reconnects
        and backs off; this only says so, and stops it when cancelled).

        Raises:
            ConfigError: a setting that retrying cannot fix.
        """
        self._pump.command(lambda now: self._registrations.maintain(self.name, now))
        task_status.started()
        try:
            while True:
                await self._outcome(self._wait(AccountRegistrationFailed))
                if isinstance(self.last_failure, ConfigError):
                    raise self.last_failure
        finally:
            self._registrations.stop(self.name)

    async def unregister(self) -> bool:
        """Removes the binding (``Expires: 0``), bounded in time; True when the registrar agreed."""
        wait = self._wait(AccountUnregistered)
        if not self._pump.command(lambda now: self._registrations.unregister(self.name, now)):
            self._waits.remove(wait)
            return False  # nothing bound, or no flow to say so on
        with trio.move_on_after(UNREGISTER_TIMEOUT_SECONDS):
            outcome = await self._outcome(wait)
            assert isinstance(outcome, AccountUnregistered)
            if 200 <= outcome.status < 300:
                return True
            self._publish("unregister-failed", account=self.name, reason=outcome.reason)
            return False
        self._waits.remove(wait)
        self._publish("unregister-failed", account=self.name, reason="no answer in time")
        return False

    async def close(self) -> None:
        """Stops the account and closes the flow (close_notify); reports the lock as closed."""
        self._registrations.stop(self.name)
        connection = self.connection
        self.connection = None
        if connection is not None:
            await connection.aclose("shutdown")
            self.note_lock(ConnectionDown(reason="shutdown", clean=True), connection.peer)

    # -- the endpoint's account events (from the pump) ------------------------------------------

    def on_event(self, event: AccountEvent[SipConnection]) -> None:
        """Carries out or publishes one of the endpoint's events for this account; never waits."""
        if isinstance(event, LocateTargets):
            self._nursery.start_soon(self._locate)
        elif isinstance(event, OpenConnection):
            self._nursery.start_soon(self._open, event.target)
        elif isinstance(event, AccountRegistered):
            self.registered = _registered(event)
            connection = event.handle
            self._publish(
                "registered",
                account=self.name,
                aor=self.settings.aor,
                expires=event.expires,
                refresh_in=round(event.refresh_at - trio.current_time(), 3),
                refreshed=event.refreshed,
                lock=self.lock.state.value,
                peer=connection.peer,
            )
            self._settle(event)
        elif isinstance(event, AccountRegistrationFailed):
            self.registered = None
            error = self._error(event)
            self.last_failure = error
            self._publish(
                "registration-failed",
                account=self.name,
                error=type(error).__name__,
                reason=str(error),
                status=getattr(error, "status", None),
                lock=self.lock.state.value,
            )
            self._settle(event)
        elif isinstance(event, AccountUnregistered):
            self.registered = None
            self._publish(
                "unregistered", account=self.name, status=event.status, reason=event.reason
            )
            self._settle(event)
        elif isinstance(event, RegistrationRetry):
            self._publish("registration-retry", account=self.name, delay=round(event.delay, 3))
        elif isinstance(event, FlowLost):
            self.registered = None
            connection = event.handle
            self._lost_error = connection.closed_error
            if connection is self.connection:
                self.connection = None
                self._note_down(connection, event.reason)

    def _error(self, event: AccountRegistrationFailed) -> SipuaError:
        """The error a user can act on for a failed attempt."""
        if event.failure is not None:
            return _failure(event.failure, self.settings.username)
        if isinstance(event.cause, SipuaError):
            return event.cause  # the location or the connection error, the most telling
        if isinstance(self._lost_error, TlsError):
            # The reader saw the registrar's alert (our client certificate refused, TLS 1.3)
            # before or while REGISTER was sent: the user must hear about TLS (exit code 3),
            # not an unreachable registrar (exit code 5).
            return self._lost_error
        if event.cause is None and event.reason.startswith("connection lost"):
            return ConnectionLost(event.reason)
        return ConnectFailed(event.reason)

    def _wait(self, *kinds: type[object]) -> _Wait:
        wait = _Wait(kinds)
        self._waits.append(wait)
        return wait

    async def _outcome(self, wait: _Wait) -> _Outcome:
        try:
            await wait.done.wait()
        finally:
            if wait in self._waits:
                self._waits.remove(wait)
        assert wait.outcome is not None
        return wait.outcome

    def _settle(self, outcome: _Outcome) -> None:
        for wait in list(self._waits):
            if isinstance(outcome, wait.kinds):
                wait.outcome = outcome
                wait.done.set()
                self._waits.remove(wait)

    # -- location and connections ---------------------------------------------------------------

    async def _locate(self) -> None:
        try:
            targets = await self._locator(self.settings)
        except SipuaError as exc:
            error = exc
        else:
            self._pump.command(
                lambda now: self._registrations.targets_located(self.name, targets, now)
            )
            return
        self._pump.command(lambda now: self._registrations.locate_failed(self.name, error, now))

    async def _open(self, target: FlowTarget) -> None:
        peer = host_port(target.host, target.port)
        self.note_lock(TlsNegotiating(peer=peer), peer)
        tls, fatal = True, False
        try:
            connection = await self._connect_target(target)
        except PeerNotTrusted as exc:
            self.note_lock(
                TlsRefused(kind="verification-failed", code=exc.code, reason=str(exc)), peer
            )
            error: SipuaError = exc
        except HandshakeFailed as exc:
            self.note_lock(
                TlsRefused(kind="handshake-failed", code="handshake", reason=str(exc)), peer
            )
            error = exc
        except TransportError as exc:
            kind = "connect-failed" if isinstance(exc, ConnectFailed) else "connection-lost"
            self.note_lock(ConnectionDown(reason=str(exc), kind=kind), peer)
            error, tls = exc, False
        except SipuaError as exc:
            # Not the network: a store or setting the user must fix (a corrupt known-keys
            # file...). It is reported like a TLS verdict, ahead of the network errors; a
            # wrong setting is not retried at all.
            error, fatal = exc, isinstance(exc, ConfigError)
        else:
            self._pump.command(
                lambda now: self._registrations.connection_opened(
                    self.name, connection, self.contact_uri(connection), connection.local, now
                )
            )
            return
        self._pump.command(
            lambda now: self._registrations.connection_failed(
                self.name, error, now, tls=tls, fatal=fatal
            )
        )

    async def _connect_target(self, target: FlowTarget) -> SipConnection:
        """Opens and verifies one connection and starts its reader."""
        connection, established = await self._connector(target, self)
        peer = connection.peer
        if connection.awaiting_acceptance:
            self._lock_on_answer = established  # not locked before the registrar answers
        else:
            self.note_lock(established, peer)
        self.connection = connection
        self._lost_error = None
        self._nursery.start_soon(self._read, connection)
        return connection

    async def _read(self, connection: SipConnection) -> None:
        reason = await connection.run()
        self._pump.connection_closed(connection, reason)

    def _note_down(self, connection: SipConnection, reason: str) -> None:
        """Drops the lock of a connection that ended, naming a refused client certificate."""
        self._lock_on_answer = None
        refused = connection.closed_error
        if isinstance(refused, ClientCertificateRefused):
            event: LockInput = TlsRefused(
                kind="handshake-failed", code="client-certificate", reason=str(refused)
            )
        else:
            event = ConnectionDown(reason=reason)
        self.note_lock(event, connection.peer)

    async def on_message(self, connection: SipConnection, message: Request | Response) -> None:
        """The flow's handler: every message to the endpoint, through the pump.

        The first message on a flow that asked for our client certificate earns it its lock.
        """
        if connection is self.connection and self._lock_on_answer is not None:
            self.note_lock(self._lock_on_answer, connection.peer)
            self._lock_on_answer = None
        await self._pump.handle_message(connection, message)

    def on_pong(self, connection: SipConnection) -> None:
        """An RFC 5626 pong arrived on the flow."""
        self._pump.command(lambda now: self._registrations.pong_received(connection, now))

    def on_unreadable_response(
        self, connection: SipConnection, branch: str, method: str, reason: str
    ) -> None:
        """A response on the flow did not parse: the transaction it answers learns why."""
        endpoint = self._pump.endpoint
        self._pump.command(lambda now: endpoint.response_unreadable(branch, method, reason, now))


def contact_uri(user: str | None, listen: tuple[str, int] | None, local: str) -> str:
    """Our Contact URI on a connection whose local end is `local` (``host:port``).

    The host is the listener's when it names one reachable address, else (a wildcard or
    loopback listener, or none) our address on the connection, which is what the peer reaches
    us at; the port is the listener's when there is one (inbound calls go there), else the
    flow's.
    """
    local_host, _, local_port = local.rpartition(":")
    if listen is not None and _names_one_reachable_host(listen[0]):
        host, port = listen
    else:
        host = local_host.strip("[]")
        port = listen[1] if listen is not None else int(local_port)
    address = host_port(host, port)
    return f"sips:{user}@{address}" if user else f"sips:{address}"


def _registered(event: AccountRegistered[SipConnection]) -> Registered:
    return Registered(
        expires=event.expires,
        refresh_at=event.refresh_at,
        flow_timer=event.flow_timer,
        refreshed=event.refreshed,
    )


def _failure(failed: RegistrationFailed, username: str) -> SipuaError:
    if failed.status == 408:  # no usable answer: Timer F, or one that could not be read
        return TransportError(f"registration failed: {failed.reason}")
    if failed.auth or failed.status == 403:
        if failed.auth:
            hint = ""
        elif failed.credentials_sent:
            # Registrars (Kamailio's auth module among them) answer a wrong password with 403.
            hint = (
                f", in answer to our credentials: the password (or the user name {username!r}) "
                f"is most likely wrong; check --password-file and --username, or that user "
                f"{username!r} may register"
            )
        else:
            hint = f"; check that user {username!r} may register"
        return AuthenticationFailed(
            f"registration refused ({failed.status}): {failed.reason}{hint}", status=failed.status
        )
    return RegistrationError(
        f"registration refused: {failed.status} {failed.reason}", status=failed.status
    )


def _names_one_reachable_host(host: str) -> bool:
    """Whether a listener host can stand in a Contact: neither a wildcard nor loopback."""
    bare = host.strip("[]")
    if bare.lower() in ("localhost", "localhost."):
        return False
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return True  # a host name the user configured for the listener
    return not (address.is_unspecified or address.is_loopback)
