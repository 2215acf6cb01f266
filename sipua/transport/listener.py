"""Serving inbound SIP over TLS: admit, handshake (with the device certificate), then SIP.

`serve_tls` binds TCP listeners, and for every accepted connection first decides whether to
hold it at all (`Admission`), then runs the TLS handshake as server (presenting the device
certificate, asking for or requiring a client certificate as the `TlsServerConfig` says) within
the inbound handshake timeout, then a `SipConnection` whose messages go to the handler;
responses go back on the same connection (RFC 3261 §18.2.2). A failed handshake only ends that
connection, and so does anything else that goes wrong with one connection: a client that resets
before we look at its address, or an unexpected error while serving it, is logged and closes
that connection only, never the listener or the user agent around it. It is started with
`nursery.start(serve_tls, ...)` and reports the bound address through `task_status` (port 0
asks the OS for a free port).

Admission (a connection costs a task, a socket and, during the handshake, CPU, so an idle one is
not free): the connections held at once are bounded (`max_connections`), and so are those from
one source address (`max_per_address`; an IPv6 source counts per /64, the block one host
usually has). The servers sipua works with (its registrar or outbound proxy, told by
`is_server`) are exempt from the per-address bound and have the last `SERVER_RESERVE` places of
the global bound to themselves, so that a flood of idle connections from elsewhere cannot lock
out the registrar delivering a call. With `servers_only` (the "accept SIP from trusted servers
only" of desk phones), every other source is refused. A refused connection is closed at once,
before any TLS byte.

A peer that vanishes without closing (a crash, a pulled cable, a NAT that forgot the mapping)
sends no FIN, and a connection that carries a call is never closed as idle: TCP keep-alive
(`DEAD_PEER_IDLE_SECONDS`, then `DEAD_PEER_PROBES` probes `DEAD_PEER_INTERVAL_SECONDS` apart,
and a send unacknowledged for as long) makes the kernel report it, and the connection closes
with its calls, within about two minutes.

Logging: every inbound connection that ends is logged at info level (`inbound-connection-closed`,
with the reason `SipConnection.run()` returned, or why the handshake failed), and every refused
one (`inbound-connection-refused`, with the reason). What an attacker can cause for free (a
refusal, a handshake that fails) is logged at most `LOG_LINES_PER_WINDOW` times per
`LOG_WINDOW_SECONDS` and kind, then counted and summed up in one line per window, so a flood
cannot flood the log.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable
from typing import Final

import trio
from structlog.typing import FilteringBoundLogger

from sipua.errors import ConfigError, HandshakeFailed, PeerNotTrusted
from sipua.logs import get_logger
from sipua.settings.model import ListenSettings
from sipua.sip.uri import host_port
from sipua.tls.connection.events import HandshakeCompleted
from sipua.tls.connection.listener import ServerConfigSource, open_tls_listeners
from sipua.tls.connection.stream import TlsStream
from sipua.transport.connection import MessageHandler, SipConnection, TraceHook

# The defaults are the settings' (one place for each default: sipua.settings.model).
_LISTEN_DEFAULTS: Final = ListenSettings()
#: Inbound connections held at once.
DEFAULT_MAX_CONNECTIONS: Final = _LISTEN_DEFAULTS.max_connections
#: Inbound connections one source address (an IPv6 /64) may hold at once.
DEFAULT_MAX_PER_ADDRESS: Final = _LISTEN_DEFAULTS.max_connections_per_address
#: Places of the global bound only the configured servers may take (at most a quarter of it).
SERVER_RESERVE: Final = 16
#: IPv6 sources are counted per prefix of this length (one subscriber's block, RFC 6177).
IPV6_SOURCE_PREFIX: Final = 64
#: How much of an unexpected error's message reaches the log (a peer's bytes may be quoted).
MAX_LOGGED_ERROR_CHARS: Final = 512
#: Refusals and failed handshakes logged per window and kind; the rest are counted.
LOG_LINES_PER_WINDOW: Final = 20
#: TCP keep-alive of inbound connections: silence before the first probe, the probes' spacing
#: and count; a peer that answers none is gone (see the module notes).
DEAD_PEER_IDLE_SECONDS: Final = 60
DEAD_PEER_INTERVAL_SECONDS: Final = 15
DEAD_PEER_PROBES: Final = 4
LOG_WINDOW_SECONDS: Final = 10.0

#: Told about each inbound handshake: (peer, completed) or (peer, the error).
HandshakeHook = Callable[[str, HandshakeCompleted | HandshakeFailed | PeerNotTrusted], None]
#: (peer, reason) of an inbound connection that ended after its handshake.
ClosedHook = Callable[[str, str], None]
#: Tells whether an IP address (as `source_address` writes it) is one of sipua's servers.
ServerCheck = Callable[[str], bool]


def source_address(host: str) -> str:
    """The canonical text of a peer's IP address: an IPv4-mapped IPv6 address (a dual-stack
    listener's view of an IPv4 peer) as IPv4, IPv6 compressed, no brackets or zone. Text that
    is no IP address is returned as it is."""
    bare = host.strip("[]").partition("%")[0]
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _source_key(address: str) -> str:
    """What the per-address bound counts: the address, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, IPV6_SOURCE_PREFIX), strict=False))
    return address


def _no_servers(_address: str) -> bool:
    return False


class ServerAddresses:
    """The IP addresses of the servers sipua works with, as the listener asks about them.

    The user agent adds the addresses its registrar or outbound proxy resolved to and those its
    flows connected to; the listener calls the object (`is_server`) for each inbound connection.
    Host names are not added (the listener sees addresses). At most `limit` are kept; the
    oldest goes first, so re-resolving over a long run cannot grow it without end.
    """

    def __init__(self, limit: int = 64) -> None:
        self._limit = limit
        self._addresses: dict[str, None] = {}  # insertion-ordered set

    def add(self, host: str) -> None:
        """Adds `host` when it is an IP address (brackets and an IPv4-mapped form allowed)."""
        address = source_address(host)
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return
        self._addresses.pop(address, None)
        self._addresses[address] = None
        while len(self._addresses) > self._limit:
            del self._addresses[next(iter(self._addresses))]

    def __call__(self, address: str) -> bool:
        return source_address(address) in self._addresses

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and self(address)

    def __len__(self) -> int:
        return len(self._addresses)


class Admission:
    """Which inbound connections the listener holds: the bounds, counted per source.

    Pure bookkeeping, no I/O: `admit` either takes a place (and returns None) or says why not;
    every admitted connection must be `release`d once. Memory is bounded by `max_connections`
    (a source's entry goes when its last connection does).

    Args:
        max_connections: connections held at once.
        max_per_address: connections one source (an IPv6 /64) may hold; servers are exempt.
        is_server: tells whether an address is one of sipua's servers (registrar, proxy).
        servers_only: refuse every source that is not a server.
    """

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_per_address: int = DEFAULT_MAX_PER_ADDRESS,
        is_server: ServerCheck | None = None,
        servers_only: bool = False,
    ) -> None:
        if max_connections < 1 or max_per_address < 1:
            raise ValueError("the connection bounds must be at least 1")
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.servers_only = servers_only
        self._is_server = is_server or _no_servers
        # Without servers to keep room for, every place is everyone's.
        self.reserve = min(SERVER_RESERVE, max_connections // 4) if is_server else 0
        self.held = 0
        self._per_source: dict[str, int] = {}

    def held_by(self, address: str) -> int:
        """How many connections `address` (its /64 for IPv6) holds."""
        return self._per_source.get(_source_key(address), 0)

    def admit(self, address: str) -> str | None:
        """Takes a place for a connection from `address`; None, or why it is refused."""
        server = self._is_server(address)
        if self.servers_only and not server:
            return "not one of the configured servers (listen.servers_only is on)"
        if self.held >= self.max_connections:
            return f"{self.max_connections} connections held already (listen.max_connections)"
        key = _source_key(address)
        if not server:
            if self.held >= self.max_connections - self.reserve:
                return (
                    f"the last {self.reserve} of {self.max_connections} places are kept for "
                    "the configured servers (listen.max_connections)"
                )
            if self._per_source.get(key, 0) >= self.max_per_address:
                return (
                    f"{self.max_per_address} connections from this address held already "
                    "(listen.max_connections_per_address)"
                )
        self.held += 1
        self._per_source[key] = self._per_source.get(key, 0) + 1
        return None

    def release(self, address: str) -> None:
        """Gives back the place an admitted connection from `address` took."""
        key = _source_key(address)
        count = self._per_source.get(key, 0)
        if count <= 0:
            raise RuntimeError(f"release without admit for {address}")
        if count == 1:
            del self._per_source[key]
        else:
            self._per_source[key] = count - 1
        self.held -= 1


class ThrottledLog:
    """Logs one kind of event at most `limit` times per window; counts the rest.

    The count of what was left out is logged as one line when the window is over (by `flush`,
    which `serve_tls` calls every window, or by the next event).
    """

    def __init__(self, log: FilteringBoundLogger, event: str, *, limit: int, window: float) -> None:
        self._log = log
        self._event = event
        self._limit = limit
        self._window = window
        self._window_end = -float("inf")
        self._logged = 0
        self._unlogged = 0

    def __call__(self, now: float, **fields: object) -> None:
        if now >= self._window_end:
            self.flush(now)
        if self._logged < self._limit:
            self._logged += 1
            self._log.info(self._event, **fields)
        else:
            self._unlogged += 1

    def flush(self, now: float) -> None:
        if now < self._window_end:
            return
        if self._unlogged:
            self._log.info(
                self._event,
                unlogged=self._unlogged,
                reason=f"{self._unlogged} more in {self._window:g} s, not logged one by one",
            )
        self._window_end = now + self._window
        self._logged = 0
        self._unlogged = 0


async def serve_tls(
    host: str,
    port: int,
    config: ServerConfigSource,
    handler: MessageHandler,
    *,
    handshake_timeout: float,
    idle_timeout: float | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_per_address: int = DEFAULT_MAX_PER_ADDRESS,
    is_server: ServerCheck | None = None,
    servers_only: bool = False,
    trace: TraceHook | None = None,
    on_handshake: HandshakeHook | None = None,
    on_closed: ClosedHook | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serves until cancelled.

    Args:
        config: the server configuration, or a function giving the current one: asked for
            every accepted connection, so a reload applies to new handshakes only.
        handshake_timeout: seconds an inbound client has for its TLS handshake.
        idle_timeout: seconds an inbound connection may stay silent (None: forever) while it
            is not in use (`SipConnection.set_in_use`: it carries no call or transaction).
        max_connections, max_per_address, is_server, servers_only: see `Admission`.
        on_handshake: told how each handshake ended; on_closed: told, with the reason, when a
            connection whose handshake completed ends (its lock is lost then).

    Raises:
        ConfigError: the address cannot be bound (in use, not local); says which.
    """
    admission = Admission(
        max_connections=max_connections,
        max_per_address=max_per_address,
        is_server=is_server,
        servers_only=servers_only,
    )
    try:
        listeners = await open_tls_listeners(
            port, config, host=host, handshake_timeout=handshake_timeout
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host_port(host, port)}: {exc.strerror or exc}; "
            "choose another --listen address or --no-listen"
        ) from exc
    sockname = _socket(listeners[0].transport_listener).getsockname()
    bound = (str(sockname[0]), int(sockname[1]))
    # One logger per listener (not per module): it writes where logging is configured now.
    log = get_logger(component="listener")
    refused = ThrottledLog(
        log, "inbound-connection-refused", limit=LOG_LINES_PER_WINDOW, window=LOG_WINDOW_SECONDS
    )
    failed_handshake = ThrottledLog(
        log, "inbound-connection-closed", limit=LOG_LINES_PER_WINDOW, window=LOG_WINDOW_SECONDS
    )

    async def serve_one(tls: TlsStream) -> None:
        # accept() only wrapped the TCP stream: no TLS byte has been read or sent yet.
        tcp = tls.transport_stream
        try:
            peer_name = _socket(tcp).getpeername()
            # Our end of *this* connection: with a wildcard listener (0.0.0.0, ::) the bound
            # address is no address a peer can reach (Contact, Via sent-by, SDP c=).
            local_name = _socket(tcp).getsockname()
        except OSError:
            # The client reset before we got here (Linux: ENOTCONN); nothing to serve.
            await _close_quietly(tcp)
            return
        address = source_address(str(peer_name[0]))
        peer = host_port(address, int(peer_name[1]))
        local = host_port(str(local_name[0]), int(local_name[1]))
        refusal = admission.admit(address)
        if refusal is not None:
            await _close_quietly(tcp)  # refuse by closing, before any TLS byte
            refused(trio.current_time(), peer=peer, reason=refusal)
            return
        detect_dead_peer(_socket(tcp))
        try:
            await _serve_connection(tls, peer, local)
        except Exception as exc:  # noqa: BLE001 - one connection's fault must not end the rest
            log.error(
                "inbound-connection-failed",
                peer=peer,
                error=type(exc).__name__,
                reason=str(exc)[:MAX_LOGGED_ERROR_CHARS],
            )
            await _close_quietly(tcp)
        finally:
            admission.release(address)

    async def _serve_connection(tls: TlsStream, peer: str, local: str) -> None:
        try:
            completed = await tls.do_handshake(timeout=handshake_timeout)
        except (HandshakeFailed, PeerNotTrusted) as exc:
            await _close_quietly(tls.transport_stream)
            failed_handshake(
                trio.current_time(),
                peer=peer,
                reason=f"TLS handshake failed: {str(exc)[:MAX_LOGGED_ERROR_CHARS]}",
            )
            if on_handshake is not None:
                on_handshake(peer, exc)
            return
        if on_handshake is not None:
            on_handshake(peer, completed)
        connection = SipConnection(
            tls,
            peer=peer,
            local=local,
            tls_name=None,
            handler=handler,
            trace=trace,
            idle_timeout=idle_timeout,
        )
        try:
            reason = await connection.run()
        except Exception:
            # Tell whoever holds the connection (a call) that it is gone before the error is
            # logged and the socket closed.
            await connection.aclose("internal error")
            if on_closed is not None:
                on_closed(peer, "internal error")
            raise
        if on_closed is not None:
            on_closed(peer, reason)
        counts = {
            "dropped_messages": connection.dropped_messages,
            "error_responses": connection.error_responses,
            "discarded_bytes": connection.discarded_bytes,  # read while lingering
        }
        log.info(
            "inbound-connection-closed",
            peer=peer,
            reason=reason,
            **{name: count for name, count in counts.items() if count},
        )

    async def flush_logs() -> None:
        while True:
            await trio.sleep(LOG_WINDOW_SECONDS)
            now = trio.current_time()
            refused.flush(now)
            failed_handshake.flush(now)

    task_status.started(bound)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flush_logs)
        await trio.serve_listeners(serve_one, listeners)


def _keepalive_options() -> tuple[tuple[int, int, int], ...]:
    """(level, option, value) of the `DEAD_PEER_*` TCP keep-alive, those the platform has."""
    options = [(trio.socket.SOL_SOCKET, trio.socket.SO_KEEPALIVE, 1)]
    for name, value in (
        ("TCP_KEEPIDLE", DEAD_PEER_IDLE_SECONDS),
        ("TCP_KEEPINTVL", DEAD_PEER_INTERVAL_SECONDS),
        ("TCP_KEEPCNT", DEAD_PEER_PROBES),
        (
            "TCP_USER_TIMEOUT",
            1000 * (DEAD_PEER_IDLE_SECONDS + DEAD_PEER_PROBES * DEAD_PEER_INTERVAL_SECONDS),
        ),
    ):
        option = getattr(trio.socket, name, None)  # Linux has all four
        if option is not None:
            options.append((trio.socket.IPPROTO_TCP, option, value))
    return tuple(options)


_KEEPALIVE_OPTIONS: Final = _keepalive_options()


def detect_dead_peer(sock: trio.socket.SocketType) -> None:
    """Turns on TCP keep-alive with the `DEAD_PEER_*` timing (and the same bound on
    unacknowledged sends, where the platform has it), so that a vanished peer is reported by
    the kernel as an error on the connection."""
    with contextlib.suppress(OSError):  # a peer already gone: the first read will say so
        for level, option, value in _KEEPALIVE_OPTIONS:
            sock.setsockopt(level, option, value)


def _socket(resource: object) -> trio.socket.SocketType:
    """The socket under a TCP listener or stream (what `open_tls_listeners` wraps)."""
    assert isinstance(resource, trio.SocketListener | trio.SocketStream)
    return resource.socket


async def _close_quietly(tcp: trio.abc.AsyncResource) -> None:
    """Closes a TCP stream, even under cancellation, ignoring a peer that is already gone."""
    with (
        trio.CancelScope(shield=True),
        contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError),
    ):
        await tcp.aclose()
