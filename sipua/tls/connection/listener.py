"""Accepting and opening TLS connections over TCP.

`TlsListener` wraps a trio socket listener: `accept()` returns a `TlsStream` whose handshake has
*not* run, because a silent or slow client must never hold up `accept()` for everyone else. The
handshake runs in the connection's own task, bounded by `handshake_timeout`: the SIP listener
(`sipua.transport.listener.serve_tls`) serves them with `trio.serve_listeners`.

`open_tls_stream` is the client side: TCP connect (bounded), handshake and verification
(bounded), and either a verified stream or one of sipua's errors.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Final

import trio

from sipua.errors import ConnectFailed, os_error_reason
from sipua.tls.connection import sockio
from sipua.tls.connection.context import TlsClientConfig, TlsServerConfig, server_context
from sipua.tls.connection.events import Verifier
from sipua.tls.connection.stream import TlsStream

#: How long a client may take for the whole handshake by default.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
#: How long a TCP connect may take by default.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0

#: A server configuration, or a function giving the current one (asked at every accept).
ServerConfigSource = TlsServerConfig | Callable[[], TlsServerConfig]


class TlsListener(trio.abc.Listener[TlsStream]):
    """Accepts TLS connections on a transport listener with one server context.

    Args:
        transport_listener: Usually a `trio.SocketListener`.
        config: Server settings (identity, client certificates, versions), or a function
            returning the current ones, asked at every accept: a new device certificate or
            trusted set then applies to new handshakes while established connections keep
            theirs.
        handshake_timeout: Seconds each client gets for its handshake (callers run
            `stream.do_handshake(timeout=listener.handshake_timeout)`).
        verifier: Overrides the client-certificate verifier built from `config`.
    """

    def __init__(
        self,
        transport_listener: trio.abc.Listener[trio.abc.Stream],
        config: ServerConfigSource,
        *,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        verifier: Verifier | None = None,
    ) -> None:
        if not handshake_timeout > 0:
            raise ValueError("the handshake timeout must be a positive number of seconds")
        self.transport_listener = transport_listener
        self.config = config
        self.handshake_timeout = handshake_timeout
        self._verifier = verifier
        # Build (or fetch) the context now, so a bad certificate fails at start-up, not on the
        # first client.
        server_context(self.current_config())

    def current_config(self) -> TlsServerConfig:
        """The configuration new handshakes use."""
        config = self.config
        return config if isinstance(config, TlsServerConfig) else config()

    async def accept(self) -> TlsStream:
        """The next connection, handshake not yet run (run it in the connection's task)."""
        transport = await self.transport_listener.accept()
        return TlsStream.server(transport, self.current_config(), verifier=self._verifier)

    async def aclose(self) -> None:
        """Stop listening (established connections are not affected)."""
        await self.transport_listener.aclose()


async def open_tls_listeners(
    port: int,
    config: ServerConfigSource,
    *,
    host: str | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    verifier: Verifier | None = None,
) -> list[TlsListener]:
    """Listen for TLS on `host`:`port` (0 = any free port; host None = all addresses).

    Raises:
        OSError: The address cannot be bound (callers turn it into their own error).
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    return [
        TlsListener(tcp, config, handshake_timeout=handshake_timeout, verifier=verifier)
        for tcp in listeners
    ]


async def open_tls_stream(
    host: str,
    port: int,
    config: TlsClientConfig,
    *,
    peer: str,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    verifier: Verifier | None = None,
) -> TlsStream:
    """Connect over TCP and run the TLS handshake and verification.

    Args:
        host: Address or name to connect to (IPv6 literals with or without brackets).
        port: TCP port.
        config: Client settings; `config.server_name` is the SNI and the name verified.
        peer: The address as the caller's users know it, for error messages (a SIP target's
            ``host:port``, a provisioning URL's authority); the TLS layer does not format
            addresses of other protocols.
        connect_timeout: Seconds for the TCP connect.
        handshake_timeout: Seconds for the handshake and verification.
        verifier: Overrides the verifier built from `config`.

    Returns:
        A stream whose `handshake_event` is the `HandshakeCompleted`.

    Raises:
        ConnectFailed: The TCP connection could not be opened in time.
        HandshakeFailed: The handshake failed or timed out.
        PeerNotTrusted: The trust policy refused the server.
    """
    bare = host.strip("[]")
    try:
        connected = await _connect_tcp(bare, port, connect_timeout)
    except trio.TooSlowError as exc:
        raise ConnectFailed(
            f"connecting to {peer} timed out after {connect_timeout:g} s; "
            "check the address and the network"
        ) from exc
    except OSError as exc:
        raise ConnectFailed(
            f"cannot connect to {peer}: {os_error_reason(exc)}; check the address and that the "
            "server runs"
        ) from exc
    tcp, raw = connected
    stream = TlsStream.client(tcp, config, verifier=verifier, raw_socket=raw)
    try:
        await stream.do_handshake(timeout=handshake_timeout)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


def _is_ip_literal(host: str) -> bool:
    # The C parsers of the socket module: ipaddress.ip_address costs ~13 Python calls.
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return True
    return False


async def _connect_tcp(
    host: str, port: int, limit_seconds: float
) -> tuple[trio.SocketStream, socket.socket | None]:
    # RFC 3263 location hands us IP addresses: connect directly. `trio.open_tcp_stream` would
    # run its resolver and happy-eyeballs machinery for a single known address, which costs
    # several scheduler rounds per connection (visible in `sipua load` profiles). The stdlib
    # socket is kept beside its trio stream, so that `TlsStream` can try each send and
    # receive at once and wait through trio only when the kernel says so (`sockio`).
    if not _is_ip_literal(host):
        with trio.fail_after(limit_seconds):
            return await trio.open_tcp_stream(host, port), None
    sock = sockio.client_socket(host)
    try:
        await sockio.connect(sock, (host, port), limit_seconds=limit_seconds)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    except BaseException:
        sockio.close(sock)
        raise
    return stream, sock
