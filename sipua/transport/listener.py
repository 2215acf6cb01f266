"""Serving inbound SIP over TLS: accept, handshake (with the device certificate), then SIP.

`serve_tls` binds TCP listeners, and for every accepted connection runs the TLS handshake as
server (presenting the device certificate, asking for or requiring a client certificate as the
`TlsServerConfig` says) within the handshake timeout, then a `SipConnection` whose messages go
to the handler; responses go back on the same connection (RFC 3261 §18.2.2). A failed handshake
only ends that connection. The number of connections held at once is bounded; one more is
closed at once. It is started with `nursery.start(serve_tls, ...)` and reports the bound
address through `task_status` (port 0 asks the OS for a free port).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import trio

from sipua.errors import ConfigError, HandshakeFailed, PeerNotTrusted
from sipua.tls.context import TlsServerConfig
from sipua.tls.events import HandshakeCompleted
from sipua.tls.stream import TlsStream
from sipua.transport.client import host_port
from sipua.transport.connection import MessageHandler, SipConnection, TraceHook

DEFAULT_MAX_CONNECTIONS: Final = 256

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
        peer_name = tcp.socket.getpeername()
        peer = host_port(str(peer_name[0]), int(peer_name[1]))
        try:
            limit.acquire_nowait()
        except trio.WouldBlock:
            await tcp.aclose()  # over the limit: refuse by closing
            return
        try:
            tls = TlsStream.server(tcp, config)
            try:
                completed = await tls.do_handshake(timeout=handshake_timeout)
            except (HandshakeFailed, PeerNotTrusted) as exc:
                if on_handshake is not None:
                    on_handshake(peer, exc)
                with trio.CancelScope(shield=True):
                    await tcp.aclose()
                return
            if on_handshake is not None:
                on_handshake(peer, completed)
            local = host_port(bound[0], bound[1])
            connection = SipConnection(
                tls,
                peer=peer,
                local=local,
                tls_name=None,
                handler=handler,
                trace=trace,
                idle_timeout=idle_timeout,
            )
            await connection.run()
        finally:
            limit.release()

    task_status.started(bound)
    await trio.serve_listeners(serve_one, listeners)
