"""Opening a verified TLS stream to one target (TCP connect, handshake, trust decision).

The handshake runs explicitly and includes the trust policy's verdict (`TlsStream.do_handshake`),
so nothing is sent before the peer is verified for `config.server_name`. Foreign errors become
sipua errors: OS errors and timeouts while connecting are `ConnectFailed` (exit code 5), a failed
handshake is `HandshakeFailed` and a refused peer `PeerNotTrusted` (exit code 3).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Final

import trio

from sipua.errors import ConnectFailed, HandshakeFailed, PeerNotTrusted
from sipua.sip.uri import host_port
from sipua.tls.context import TlsClientConfig
from sipua.tls.events import HandshakeCompleted
from sipua.tls.stream import TlsStream

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

    Raises:
        ConnectFailed: TCP could not connect (refused, unreachable, timeout).
        HandshakeFailed: the TLS handshake failed or timed out.
        PeerNotTrusted: the trust policy refused the peer's certificate.
    """
    peer = host_port(host, port)
    try:
        with trio.fail_after(connect_timeout):
            tcp = await _connect_tcp(host.strip("[]"), port)
    except trio.TooSlowError as exc:
        raise ConnectFailed(
            f"connecting to {peer} timed out after {connect_timeout:g} s; check the address"
        ) from exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConnectFailed(
            f"cannot connect to {peer}: {reason}; check the address and that the registrar runs"
        ) from exc
    sockname = tcp.socket.getsockname()
    local = host_port(str(sockname[0]), int(sockname[1]))
    tls = TlsStream.client(tcp, config)
    try:
        handshake = await tls.do_handshake(timeout=handshake_timeout)
    except (HandshakeFailed, PeerNotTrusted):
        with trio.CancelScope(shield=True):
            await tcp.aclose()
        raise
    return OpenedStream(stream=tls, handshake=handshake, local=local, peer=peer)


async def _connect_tcp(host: str, port: int) -> trio.SocketStream:
    # RFC 3263 location hands us IP addresses: connect directly. `trio.open_tcp_stream` would
    # run its resolver and happy-eyeballs machinery for a single known address, which costs
    # several scheduler rounds per connection (visible in `sipua load` profiles).
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return await trio.open_tcp_stream(host, port)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)
