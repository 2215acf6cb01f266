"""Serving inbound SIP over TLS: accept, handshake (with the device certificate), then SIP.

`serve_tls` binds TCP listeners, and for every accepted connection runs the TLS handshake as
server (presenting the device certificate, asking for or requiring a client certificate as the
`TlsServerConfig` says) within the handshake timeout, then a `SipConnection` whose messages go
to the handler; responses go back on the same connection (RFC 3261 §18.2.2). A failed handshake
only ends that connection, and so does anything else that goes wrong with one connection: a
client that resets before we look at its address, or an unexpected error while serving it, is
logged and closes that connection only, never the listener or the user agent around it. The
number of connections held at once is bounded; one more is closed at once. It is started with
`nursery.start(serve_tls, ...)` and reports the bound address through `task_status` (port 0
asks the OS for a free port).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Final

import trio

from sipua.errors import ConfigError, HandshakeFailed, PeerNotTrusted
from sipua.logs import get_logger
from sipua.sip.uri import host_port
from sipua.tls.connection.context import TlsServerConfig
from sipua.tls.connection.events import HandshakeCompleted
from sipua.tls.connection.stream import TlsStream
from sipua.transport.connection import MessageHandler, SipConnection, TraceHook

DEFAULT_MAX_CONNECTIONS: Final = 256
#: How much of an unexpected error's message reaches the log (a peer's bytes may be quoted).
MAX_LOGGED_ERROR_CHARS: Final = 512

_log = get_logger(component="listener")

#: Told about each inbound handshake: (peer, completed) or (peer, the error).
HandshakeHook = Callable[[str, HandshakeCompleted | HandshakeFailed | PeerNotTrusted], None]


async def serve_tls(
    host: str,
    port: int,
    config: TlsServerConfig,
    handler: MessageHandler,
    *,
    handshake_timeout: float,
    idle_timeout: float | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    trace: TraceHook | None = None,
    on_handshake: HandshakeHook | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serves until cancelled.

    Raises:
        ConfigError: the address cannot be bound (in use, not local); says which.
    """
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host_port(host, port)}: {exc.strerror or exc}; "
            "choose another --listen address or --no-listen"
        ) from exc
    sockname = listeners[0].socket.getsockname()
    bound = (str(sockname[0]), int(sockname[1]))
    limit = trio.CapacityLimiter(max_connections)

    async def serve_one(tcp: trio.SocketStream) -> None:
        try:
            peer_name = tcp.socket.getpeername()
            # Our end of *this* connection: with a wildcard listener (0.0.0.0, ::) the bound
            # address is no address a peer can reach (Contact, Via sent-by, SDP c=).
            local_name = tcp.socket.getsockname()
        except OSError:
            # The client reset before we got here (Linux: ENOTCONN); nothing to serve.
            await _close_quietly(tcp)
            return
        peer = host_port(str(peer_name[0]), int(peer_name[1]))
        local = host_port(str(local_name[0]), int(local_name[1]))
        try:
            limit.acquire_nowait()
        except trio.WouldBlock:
            await _close_quietly(tcp)  # over the limit: refuse by closing
            return
        try:
            await _serve_connection(tcp, peer, local)
        except Exception as exc:  # noqa: BLE001 - one connection's fault must not end the rest
            _log.error(
                "inbound-connection-failed",
                peer=peer,
                error=type(exc).__name__,
                reason=str(exc)[:MAX_LOGGED_ERROR_CHARS],
            )
            await _close_quietly(tcp)
        finally:
            limit.release()

    async def _serve_connection(tcp: trio.SocketStream, peer: str, local: str) -> None:
        tls = TlsStream.server(tcp, config)
        try:
            completed = await tls.do_handshake(timeout=handshake_timeout)
        except (HandshakeFailed, PeerNotTrusted) as exc:
            if on_handshake is not None:
                on_handshake(peer, exc)
            await _close_quietly(tcp)
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
            await connection.run()
        except Exception:
            # Tell whoever holds the connection (a call) that it is gone before the error is
            # logged and the socket closed.
            await connection.aclose("internal error")
            raise

    task_status.started(bound)
    await trio.serve_listeners(serve_one, listeners)


async def _close_quietly(tcp: trio.SocketStream) -> None:
    """Closes a TCP stream, even under cancellation, ignoring a peer that is already gone."""
    with (
        trio.CancelScope(shield=True),
        contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError),
    ):
        await tcp.aclose()
