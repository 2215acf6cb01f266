"""One account: locate the registrar, hold a verified TLS flow to it, keep the binding alive.

Theory of operation: `Account` drives the sans-IO `Registration` over a `SipConnection`. One
task at a time owns the registration state machine: the caller of `register()`, `maintain()`
or `unregister()`. The connection's reader task never touches it; it puts responses (and the
news that the connection ended) into the account's inbox, a bounded memory channel, and the
owner pumps: take from the inbox until the registration's next deadline, feed it the time
(`trio.current_time()`), execute its outputs.

- Connecting (`_connect`): RFC 3263 targets from `sipua.locate.locate` (an outbound proxy skips
  the lookups), tried in order; each one gets TCP, a TLS handshake verified for the target's
  TLS name, and the lock moves negotiating -> locked / locked-unverified, or unlocked with the
  precise reason. A refused or timed-out target fails over to the next (RFC 3263 §4.3). When the
  registrar asked for our client certificate, the lock stays negotiating until its first answer
  (it may still refuse the certificate by closing: `ClientCertificateRefused`, exit code 3).
- A connection is only reused while it is open and was verified for the same TLS name; a new
  one is opened otherwise (never reused for another domain because the address matches).
- Requests the registrar sends on the flow (inbound INVITE through NAT) go to the call handler,
  which answers on the same connection.
- `maintain()` keeps the binding: refresh at the deadline, RFC 5626 keep-alive with pong
  timeout, and on any failure or lost flow: drop the lock, back off (RFC 5626 §4.5 with jitter;
  the first retry after a working flow is lost is immediate), reconnect, re-register.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

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
from sipua.sip.registration import (
    ContactAddress,
    DigestResponder,
    RegisterClient,
    Registered,
    Registration,
    RegistrationFailed,
    RegistrationOutput,
    RegistrationState,
    SendRequest,
    Unregistered,
    backoff_delay,
)
from sipua.sip.uri import host_port
from sipua.transport.connection import SipConnection
from sipua.transport.keepalive import PONG_TIMEOUT_SECONDS, KeepaliveSchedule
from sipua.ua.lock import (
    ConnectionDown,
    LockInput,
    LockTracker,
    TlsEstablished,
    TlsNegotiating,
    TlsRefused,
)

INBOX_SIZE: Final = 64
UNREGISTER_TIMEOUT_SECONDS: Final = 5.0
DEFAULT_BACKOFF_BASE_SECONDS: Final = 30.0  # RFC 5626 §4.5, all flows failed
DEFAULT_BACKOFF_MAX_SECONDS: Final = 1800.0

Publish = Callable[..., None]


@dataclass(frozen=True, slots=True)
class FlowTarget:
    """Where one registration flow goes: address and the TLS name it must be verified for."""

    host: str
    port: int
    tls_name: str


#: Opens a verified connection to a target (and says how the handshake went for the lock), or
#: raises TlsError / TransportError.
Connector = Callable[[FlowTarget, "Account"], Awaitable[tuple[SipConnection, TlsEstablished]]]
#: Turns the account settings into the ordered list of targets (RFC 3263).
Locator = Callable[[AccountSettings], Awaitable[list[FlowTarget]]]


@dataclass(frozen=True, slots=True)
class _Lost:
    connection: SipConnection
    reason: str
    error: SipuaError | None = None


@dataclass(frozen=True, slots=True)
class _Received:
    connection: SipConnection
    response: Response
    outputs: list[RegistrationOutput]
    error: Exception | None = None


_InboxItem = _Lost | _Received


class Account:
    """A registered identity and its flow to the registrar.

    Args:
        settings: the account's settings.
        instance_id: the device's stable UUID (``+sip.instance``).
        locator: finds the targets to try.
        connector: opens and verifies a connection to one target.
        publish: the UA's event sink, `publish(event, **fields)`.
        nursery: where connection reader tasks run.
        rng: jitter, ids and digest cnonces.
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
        rng: random.Random,
        listen: tuple[str, int] | None = None,
        backoff_base: float = DEFAULT_BACKOFF_BASE_SECONDS,
        pong_timeout: float = PONG_TIMEOUT_SECONDS,
    ) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.lock = LockTracker()
        self.connection: SipConnection | None = None
        self.request_handler: (
            Callable[[SipConnection, Request | Response], Awaitable[None]] | None
        ) = None
        self.registered: Registered | None = None
        self.last_failure: SipuaError | None = None
        self._strays = 0
        # The lock a connection earns once the registrar answers (client certificate asked).
        self._lock_on_answer: TlsEstablished | None = None
        self._locator = locator
        self._connector = connector
        self._publish = publish
        self._nursery = nursery
        self._rng = rng
        self._listen = listen
        self._backoff_base = backoff_base
        self._pong_timeout = pong_timeout
        self._send_inbox, self._inbox = trio.open_memory_channel[_InboxItem](INBOX_SIZE)
        try:
            self._aor = SipUri.parse(settings.aor)
            self._binding = Registration(
                aor=self._aor,
                contact=ContactAddress(uri=self._aor, sent_by="0.0.0.0:0"),  # set on connect
                instance_id=instance_id,
                rng=rng,
                responder=DigestResponder(
                    username=settings.username, password=settings.password, rng=rng
                ),
                expires=settings.expires,
            )
            self._registration = RegisterClient(self._binding)
        except ProtocolError as exc:
            raise ConfigError(f"account {settings.name!r}: aor {settings.aor!r}: {exc}") from exc

    @property
    def name(self) -> str:
        """The account's label."""
        return self.settings.name

    @property
    def stray_responses(self) -> int:
        """Responses that answered no request in flight (dropped, RFC 3261 §17.1.3)."""
        return self._strays + self._registration.stray_responses

    @property
    def state(self) -> RegistrationState:
        """The registration state."""
        return self._registration.state

    def contact_uri(self, connection: SipConnection) -> str:
        """Our Contact URI on `connection`.

        The host is the listener's when it names one reachable address, else (a wildcard or
        loopback listener, or none) our address on `connection`, which is what the peer
        reaches us at; the port is the listener's when there is one (inbound calls go there),
        else the flow's.
        """
        user = self._aor.user
        local_host, _, local_port = connection.local.rpartition(":")
        if self._listen is not None and _names_one_reachable_host(self._listen[0]):
            host, port = self._listen
        else:
            host = local_host.strip("[]")
            port = self._listen[1] if self._listen is not None else int(local_port)
        address = host_port(host, port)
        return f"sips:{user}@{address}" if user else f"sips:{address}"

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
        connection: SipConnection | None = None
        try:
            connection = await self._ensure_connection()
            self._binding.set_contact(self._contact(connection))
            await self._execute(self._registration.register(trio.current_time()))
            result = await self._pump(until_registered=True)
        except SipuaError as raised:
            exc = _telling_cause(raised, connection)
            if isinstance(exc, ClientCertificateRefused) and connection is not None:
                self._note_down(connection, str(exc))
            self.last_failure = exc
            if isinstance(raised, TransportError) and self._registration.state in (
                RegistrationState.REGISTERING,
                RegistrationState.UNREGISTERING,
            ):
                # The request in flight is lost with its connection; start clean next time.
                self._registration.connection_lost(trio.current_time())
            self._publish(
                "registration-failed",
                account=self.name,
                error=type(exc).__name__,
                reason=str(exc),
                status=getattr(exc, "status", None),
                lock=self.lock.state.value,
            )
            if exc is raised:
                raise
            raise exc from raised
        assert isinstance(result, Registered)
        return result

    async def maintain(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keeps the account registered until cancelled (refresh, reconnect, back-off)."""
        task_status.started()
        failures = 0
        while True:
            if self._registration.state is not RegistrationState.REGISTERED:
                try:
                    await self.register()
                    failures = 0
                except ConfigError:
                    raise  # retrying cannot fix a wrong setting
                except SipuaError:
                    delay = backoff_delay(
                        failures,
                        self._rng,
                        base=self._backoff_base,
                        maximum=DEFAULT_BACKOFF_MAX_SECONDS,
                    )
                    failures += 1
                    self._publish("registration-retry", account=self.name, delay=round(delay, 3))
                    await trio.sleep(delay)
                    continue
            try:
                await self._pump(until_registered=False)
            except SipuaError as exc:
                self.last_failure = exc
                self._publish(
                    "registration-failed",
                    account=self.name,
                    error=type(exc).__name__,
                    reason=str(exc),
                )
                failures += 1
                if isinstance(exc, ConnectionLost):
                    failures = 0  # a working flow was lost: reconnect at once (RFC 5626 §4.4.1)
                    continue
                delay = backoff_delay(failures - 1, self._rng, base=self._backoff_base)
                self._publish("registration-retry", account=self.name, delay=round(delay, 3))
                await trio.sleep(delay)

    async def unregister(self) -> bool:
        """Removes the binding (``Expires: 0``), bounded in time; True when the registrar agreed."""
        connection = self.connection
        if (
            self._registration.state
            not in (RegistrationState.REGISTERED, RegistrationState.REGISTERING)
            or connection is None
            or not connection.is_open
        ):
            return False  # nothing bound, or no flow to say so on
        with trio.move_on_after(UNREGISTER_TIMEOUT_SECONDS):
            try:
                await self._execute(self._registration.unregister(trio.current_time()))
                result = await self._pump(until_registered=True)
            except SipuaError as exc:
                self._publish("unregister-failed", account=self.name, reason=str(exc))
                return False
            return isinstance(result, Unregistered) and 200 <= result.status < 300
        self._publish("unregister-failed", account=self.name, reason="no answer in time")
        return False

    async def close(self) -> None:
        """Closes the flow (close_notify) and reports the lock as closed."""
        connection = self.connection
        self.connection = None
        if connection is not None:
            await connection.aclose("shutdown")
            self.note_lock(ConnectionDown(reason="shutdown", clean=True), connection.peer)

    # -- connections ----------------------------------------------------------------------------

    async def _ensure_connection(self) -> SipConnection:
        connection = self.connection
        if connection is not None and connection.is_open:
            return connection
        targets = await self._locator(self.settings)
        errors: list[SipuaError] = []
        for target in targets:
            peer = host_port(target.host, target.port)
            self.note_lock(TlsNegotiating(peer=peer), peer)
            try:
                connection, established = await self._connector(target, self)
            except PeerNotTrusted as exc:
                self.note_lock(
                    TlsRefused(kind="verification-failed", code=exc.code, reason=str(exc)), peer
                )
                errors.append(exc)
                continue
            except HandshakeFailed as exc:
                self.note_lock(
                    TlsRefused(kind="handshake-failed", code="handshake", reason=str(exc)), peer
                )
                errors.append(exc)
                continue
            except TransportError as exc:
                kind = "connect-failed" if isinstance(exc, ConnectFailed) else "connection-lost"
                self.note_lock(ConnectionDown(reason=str(exc), kind=kind), peer)
                errors.append(exc)
                continue
            if connection.awaiting_acceptance:
                self._lock_on_answer = established  # not locked before the registrar answers
            else:
                self.note_lock(established, peer)
            self._adopt(connection)
            return connection
        raise _most_telling(errors)

    def _adopt(self, connection: SipConnection) -> None:
        self.connection = connection
        self._nursery.start_soon(self._read, connection)

    async def _read(self, connection: SipConnection) -> None:
        reason = await connection.run()
        if self.connection is connection:
            self._note_down(connection, reason)
        # If the owner is far behind, it sees the closed connection when it next sends.
        with contextlib.suppress(trio.WouldBlock):
            self._send_inbox.send_nowait(_Lost(connection, reason, connection.closed_error))

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
        """The connection's handler: responses to the inbox, requests to the call handler.

        A response that answers no request in flight is dropped and counted in
        `stray_responses` here, in the reader (RFC 3261 §17.1.3, §18.1.2), so a peer sending
        many of them can neither fill the inbox nor stall this connection's reader.
        """
        if connection is self.connection and self._lock_on_answer is not None:
            self.note_lock(self._lock_on_answer, connection.peer)
            self._lock_on_answer = None
        if isinstance(message, Response) and message.cseq.method == "REGISTER":
            if connection is not self.connection:
                self._strays += 1
                return
            # The registration's transaction layer matches it; what matches nothing is
            # counted there and dropped, here in the reader, never queued.
            try:
                outputs = self._registration.receive_response(message, trio.current_time())
            except (ProtocolError, ValueError) as exc:
                await self._send_inbox.send(_Received(connection, message, [], exc))
                return
            if outputs:
                await self._send_inbox.send(_Received(connection, message, outputs))
        elif self.request_handler is not None:
            # Requests, and answers to the requests of our calls (a BYE), go to the endpoint.
            await self.request_handler(connection, message)
        elif isinstance(message, Response):
            self._strays += 1

    def _contact(self, connection: SipConnection) -> ContactAddress:
        return ContactAddress(
            uri=SipUri.parse(self.contact_uri(connection)), sent_by=connection.local
        )

    # -- the pump -------------------------------------------------------------------------------

    async def _pump(self, *, until_registered: bool) -> Registered | Unregistered:
        """Feeds the registration until an outcome (or, with until_registered False, a failure).

        Raises:
            RegistrationError / AuthenticationFailed: a final refusal.
            TransportError: the flow was lost or nothing answered in time.
        """
        registration = self._registration
        while True:
            deadline = registration.next_deadline()
            item: _InboxItem | None = None
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                item = await self._inbox.receive()
            if item is None:
                outputs = registration.handle_timer(trio.current_time())
            elif isinstance(item, _Lost):
                if item.connection is not self.connection:
                    continue  # an old connection's news
                self.connection = None
                registration.connection_lost(trio.current_time())
                self.registered = None
                if isinstance(item.error, TlsError):
                    raise item.error  # e.g. the registrar refused our client certificate
                raise ConnectionLost(f"connection to {item.connection.peer} lost: {item.reason}")
            else:
                if item.connection is not self.connection:
                    continue
                if item.error is not None:
                    # The registrar's answer is malformed in a header we need: its fault, a
                    # refusal (exit code 4), never a crash of the account.
                    registration.connection_lost(trio.current_time())
                    self.registered = None
                    raise RegistrationError(
                        f"the registrar's {item.response.status} response is malformed: "
                        f"{item.error}",
                        status=item.response.status,
                    ) from item.error
                outputs = item.outputs
            outcome = await self._execute(outputs)
            if outcome is not None and (until_registered or isinstance(outcome, Unregistered)):
                return outcome

    async def _execute(self, outputs: list[RegistrationOutput]) -> Registered | Unregistered | None:
        outcome: Registered | Unregistered | None = None
        for output in outputs:
            if isinstance(output, SendRequest):
                connection = self.connection
                if connection is None:
                    raise ConnectionLost("no connection to the registrar")
                await connection.send(output.request)
            elif isinstance(output, Registered):
                self.registered = output
                self._on_registered(output)
                outcome = output
            elif isinstance(output, Unregistered):
                self.registered = None
                self._publish(
                    "unregistered", account=self.name, status=output.status, reason=output.reason
                )
                outcome = output
            elif isinstance(output, RegistrationFailed):
                self.registered = None
                raise _failure(output, self.settings.username)
        return outcome

    def _on_registered(self, registered: Registered) -> None:
        connection = self.connection
        now = trio.current_time()
        if connection is not None:
            schedule = connection.keepalive
            if schedule is None:
                schedule = KeepaliveSchedule(
                    self.settings.keepalive_interval, self._rng, pong_timeout=self._pong_timeout
                )
                connection.start_keepalive(schedule, now)
            schedule.set_flow_timer(registered.flow_timer, now)
        self._publish(
            "registered",
            account=self.name,
            aor=self.settings.aor,
            expires=registered.expires,
            refresh_in=round(registered.refresh_at - now, 3),
            refreshed=registered.refreshed,
            lock=self.lock.state.value,
            peer=connection.peer if connection is not None else None,
        )


def _failure(failed: RegistrationFailed, username: str) -> SipuaError:
    if failed.status == 408:
        return TransportError(f"registration timed out: {failed.reason}")
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


def _telling_cause(error: SipuaError, connection: SipConnection | None) -> SipuaError:
    """The error to report for a failure on `connection`: its TLS cause beats a lost flow.

    The reader may see the registrar's alert (our client certificate refused, TLS 1.3) before
    the REGISTER is sent; the send then only says "closed", but the user must hear about TLS
    (exit code 3), not an unreachable registrar (exit code 5).
    """
    if (
        isinstance(error, ConnectionLost)
        and connection is not None
        and isinstance(connection.closed_error, TlsError)
    ):
        return connection.closed_error
    return error


def _most_telling(errors: list[SipuaError]) -> SipuaError:
    """The error to report when every target failed: a TLS verdict beats a network one."""
    if not errors:
        return ConnectFailed("no target to connect to; check the AOR and --proxy")
    for error in errors:
        if isinstance(error, TlsError):
            return error
    return errors[-1]
