"""Opening a verified TLS stream to one target (TCP connect, handshake, trust decision).

The handshake runs explicitly and includes the trust policy's verdict (`TlsStream.do_handshake`),
so nothing is sent before the peer is verified for `config.server_name`. Foreign errors become
sipua errors: OS errors and timeouts while connecting are `ConnectFailed` (exit code 5), a failed
handshake is `HandshakeFailed` and a refused peer `PeerNotTrusted` (exit code 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import trio

from sipua.sip.uri import host_port
from sipua.tls.connection.context import TlsClientConfig
from sipua.tls.connection.events import HandshakeCompleted
from sipua.tls.connection.listener import open_tls_stream
from sipua.tls.connection.stream import TlsStream

DEFAULT_CONNECT_TIMEOUT_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedStream:
    """A connected, handshaken and verified TLS stream.

    Attributes:
        stream: the TLS stream.
        handshake: what was negotiated, with the trust verdict.
        local: ``host:port`` of our end (IPv6 in brackets).
        peer: ``host:port`` of the peer (IPv6 in brackets).
    """

    stream: TlsStream
    handshake: HandshakeCompleted
    local: str
    peer: str


async def open_tls(
    host: str,
    port: int,
    config: TlsClientConfig,
    *,
    handshake_timeout: float,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
) -> OpenedStream:
    """Connects to host:port and runs the TLS handshake with the trust verdict.

    The TLS layer's `open_tls_stream` does the work; this adds the addresses the SIP
    connection needs (Via sent-by, Contact, logs).

    Raises:
        ConnectFailed: TCP could not connect (refused, unreachable, timeout).
        HandshakeFailed: the TLS handshake failed or timed out.
        PeerNotTrusted: the trust policy refused the peer's certificate.
    """
    peer = host_port(host.strip("[]"), port)
    stream = await open_tls_stream(
        host,
        port,
        config,
        peer=peer,
        connect_timeout=connect_timeout,
        handshake_timeout=handshake_timeout,
    )
    handshake = stream.handshake_event
    tcp = stream.transport_stream
    assert isinstance(handshake, HandshakeCompleted)  # open_tls_stream raised otherwise
    assert isinstance(tcp, trio.SocketStream)
    sockname = tcp.socket.getsockname()
    return OpenedStream(
        stream=stream,
        handshake=handshake,
        local=host_port(str(sockname[0]), int(sockname[1])),
        peer=peer,
    )
