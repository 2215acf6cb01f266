from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from sipua.sip import (
    MessageFramed,
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_message,
    serialize,
)
from sipua.tls.connection.context import TlsServerConfig
from sipua.tls.connection.stream import TlsStream
from sipua.transport.connection import MessageHandler, SipConnection
from sipua.transport.listener import (
    DEAD_PEER_IDLE_SECONDS,
    DEAD_PEER_INTERVAL_SECONDS,
    DEAD_PEER_PROBES,
    serve_tls,
)
from tests.support.certs import make_ca, make_leaf

OPTIONS = (
    b"OPTIONS sips:alice@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK1\r\n"
    b"From: <sips:bob@example.test>;tag=1\r\nTo: <sips:alice@example.test>\r\nCall-ID: c\r\n"
    b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


@dataclass(frozen=True)
class Identity:
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    private_key: CertificateIssuerPrivateKeyTypes


def server_config() -> TlsServerConfig:
    ca = make_ca("Device CA")
    leaf = make_leaf(ca, cn="device", dns=["device.test"])
    return TlsServerConfig(identity=Identity(leaf.cert, (ca.cert,), leaf.key))


async def start_listener(
    nursery: trio.Nursery, handler: MessageHandler, **options: Any
) -> tuple[str, int]:
    """Starts `serve_tls` on 127.0.0.1 (a free port, the test device certificate, a 2 s
    handshake timeout) in `nursery`; returns where it listens."""
    serve = partial(
        serve_tls, "127.0.0.1", 0, server_config(), handler, handshake_timeout=2.0, **options
    )
    address: tuple[str, int] = await nursery.start(serve)
    return address


async def handler(connection: SipConnection, message: Request | Response) -> None:
    if isinstance(message, Request):
        await connection.send(make_response(message, 200, to_tag="t"))


def client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def test_serves_sip_after_handshake_and_survives_garbage() -> None:
    outcomes: list[str] = []
    async with trio.open_nursery() as nursery:
        host, port = await start_listener(
            nursery,
            handler,
            on_handshake=lambda peer, outcome: outcomes.append(type(outcome).__name__),
        )
        assert host == "127.0.0.1"
        assert port > 0
        # A client that speaks no TLS: its connection fails, the listener goes on.
        plain = await trio.open_tcp_stream(host, port)
        await plain.send_all(b"OPTIONS sip:x SIP/2.0\r\n\r\n")
        with trio.fail_after(5):
            try:
                while await plain.receive_some(100):  # an alert, then the close
                    pass
            except trio.BrokenResourceError:
                pass  # or a reset: either way the server ended it
        await plain.aclose()
        tcp = await trio.open_tcp_stream(host, port)
        stream = trio.SSLStream(tcp, client_context(), server_hostname="device.test")
        await stream.send_all(OPTIONS)
        data = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some(65536)
        response = parse_message(data)
        assert isinstance(response, Response)
        assert response.status == 200
        assert serialize(response).startswith(b"SIP/2.0 200")
        await stream.aclose()
        nursery.cancel_scope.cancel()
    assert "HandshakeCompleted" in outcomes
    assert any(name != "HandshakeCompleted" for name in outcomes)


async def test_inbound_connections_ask_the_kernel_to_detect_a_vanished_peer() -> None:
    # A connection that carries a call is never idle-closed; a peer gone without a FIN is
    # found by TCP keep-alive (and a bound on unacknowledged sends) instead.
    seen: list[dict[str, int]] = []

    async def inspect(connection: SipConnection, message: Request | Response) -> None:
        tls = connection.stream
        assert isinstance(tls, TlsStream)
        tcp = tls.transport_stream
        assert isinstance(tcp, trio.SocketStream)
        sock = tcp.socket
        seen.append(
            {
                name: sock.getsockopt(level, getattr(socket, name))
                for level, name in (
                    (socket.SOL_SOCKET, "SO_KEEPALIVE"),
                    (socket.IPPROTO_TCP, "TCP_KEEPIDLE"),
                    (socket.IPPROTO_TCP, "TCP_KEEPINTVL"),
                    (socket.IPPROTO_TCP, "TCP_KEEPCNT"),
                    (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT"),
                )
            }
        )
        await handler(connection, message)

    async with trio.open_nursery() as nursery:
        host, port = await start_listener(nursery, inspect)
        tcp = await trio.open_tcp_stream(host, port)
        stream = trio.SSLStream(tcp, client_context(), server_hostname="device.test")
        await stream.send_all(OPTIONS)
        with trio.fail_after(5):
            assert (await stream.receive_some(65536)).startswith(b"SIP/2.0 200")
        await stream.aclose()
        nursery.cancel_scope.cancel()
    assert seen == [
        {
            "SO_KEEPALIVE": 1,
            "TCP_KEEPIDLE": DEAD_PEER_IDLE_SECONDS,
            "TCP_KEEPINTVL": DEAD_PEER_INTERVAL_SECONDS,
            "TCP_KEEPCNT": DEAD_PEER_PROBES,
            "TCP_USER_TIMEOUT": 1000
            * (DEAD_PEER_IDLE_SECONDS + DEAD_PEER_PROBES * DEAD_PEER_INTERVAL_SECONDS),
        }
    ]


async def test_busy_address_is_a_config_error() -> None:
    from sipua.errors import ConfigError

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=str(port)):
            await serve_tls("127.0.0.1", port, server_config(), handler, handshake_timeout=1.0)
    finally:
        for listener in listeners:
            await listener.aclose()


async def _options_round_trip(host: str, port: int) -> Response:
    tcp = await trio.open_tcp_stream(host, port)
    stream = trio.SSLStream(tcp, client_context(), server_hostname="device.test")
    await stream.send_all(OPTIONS)
    data = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
    await stream.aclose()
    response = parse_message(data)
    assert isinstance(response, Response)
    return response


async def test_client_reset_before_accept_ends_only_that_connection() -> None:
    # Regression: getpeername() on a connection the client already reset raised ENOTCONN
    # out of the listener and ended the user agent.
    async with trio.open_nursery() as nursery:
        host, port = await start_listener(nursery, handler)
        # Blocking socket calls: trio's accept loop cannot run between connect and reset, so
        # every one of these is reset before the listener sees it.
        for _ in range(20):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.connect((host, port))
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
        await trio.sleep(0.2)
        response = await _options_round_trip(host, port)
        assert response.status == 200
        nursery.cancel_scope.cancel()


async def test_handler_bug_is_answered_500_and_the_connection_goes_on(
    internal_errors: list[Exception],
) -> None:
    calls = 0

    async def buggy(connection: SipConnection, message: Request | Response) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("handler bug")
        await handler(connection, message)

    async with trio.open_nursery() as nursery:
        host, port = await start_listener(nursery, buggy)
        tcp = await trio.open_tcp_stream(host, port)
        stream = trio.SSLStream(tcp, client_context(), server_hostname="device.test")
        framer = StreamFramer()
        responses: list[Response] = []
        await stream.send_all(OPTIONS)
        await stream.send_all(OPTIONS)  # the same connection serves the next request
        with trio.fail_after(5):
            while len(responses) < 2:
                data = await stream.receive_some(65536)
                assert data, "the connection was closed after the handler's bug"
                framer.receive_data(bytes(data))
                while isinstance(event := framer.next_event(), MessageFramed):
                    message = parse_message(event.data)
                    assert isinstance(message, Response)
                    responses.append(message)
        assert [r.status for r in responses] == [500, 200]
        assert [str(e) for e in internal_errors] == ["handler bug"]
        internal_errors.clear()
        await stream.aclose()
        assert calls == 2
        nursery.cancel_scope.cancel()


async def test_wildcard_listener_gives_each_connection_its_real_local_address() -> None:
    # Regression: connection.local was the bound 0.0.0.0:port, which then appeared in our
    # Contact, the SDP c= line and the Via of our BYE.
    locals_seen: list[str] = []

    async def note_local(connection: SipConnection, message: Request | Response) -> None:
        locals_seen.append(connection.local)
        await handler(connection, message)

    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(
            lambda task_status: serve_tls(
                "0.0.0.0", 0, server_config(), note_local, handshake_timeout=2.0,
                task_status=task_status,
            )
        )  # fmt: skip
        assert host == "0.0.0.0"
        response = await _options_round_trip("127.0.0.1", port)
        assert response.status == 200
        assert locals_seen == [f"127.0.0.1:{port}"]
        nursery.cancel_scope.cancel()


def test_admission_bounds_each_source_and_keeps_room_for_servers() -> None:
    from sipua.transport.listener import Admission, ServerAddresses

    servers = ServerAddresses()
    servers.add("[2001:db8::5]")
    admission = Admission(max_connections=8, max_per_address=2, is_server=servers)
    assert admission.reserve == 2  # a quarter of 8
    assert admission.admit("192.0.2.1") is None
    assert admission.admit("192.0.2.1") is None
    assert "max_connections_per_address" in (admission.admit("192.0.2.1") or "")
    # IPv6 sources count per /64: another address of the same block is the same source.
    assert admission.admit("2001:db8:1::1") is None
    assert admission.admit("2001:db8:1::2") is None
    assert admission.admit("2001:db8:1::ffff") is not None
    assert admission.held_by("2001:db8:1::7") == 2
    assert admission.admit("192.0.2.2") is None
    assert admission.admit("192.0.2.3") is None
    # Six held: the last two places are the servers'.
    assert "kept for the configured servers" in (admission.admit("192.0.2.4") or "")
    assert admission.admit("2001:db8::5") is None
    assert admission.admit("2001:db8::5") is None
    assert "listen.max_connections)" in (admission.admit("2001:db8::5") or "")
    admission.release("192.0.2.1")
    assert admission.held == 7
    assert admission.held_by("192.0.2.1") == 1
    with pytest.raises(RuntimeError):
        admission.release("198.51.100.1")


def test_admission_without_servers_keeps_nothing_back_and_servers_only_refuses_others() -> None:
    from sipua.transport.listener import Admission, ServerAddresses

    open_to_all = Admission(max_connections=4, max_per_address=4)
    assert open_to_all.reserve == 0
    assert all(open_to_all.admit("192.0.2.1") is None for _ in range(4))
    servers = ServerAddresses()
    servers.add("::ffff:192.0.2.9")  # as a dual-stack listener sees an IPv4 peer
    only = Admission(is_server=servers, servers_only=True)
    assert "listen.servers_only" in (only.admit("192.0.2.1") or "")
    assert only.admit("192.0.2.9") is None
    assert only.admit("::ffff:192.0.2.9") is None  # the same address


def test_server_addresses_take_ip_addresses_only_and_stay_bounded() -> None:
    from sipua.transport.listener import ServerAddresses, source_address

    servers = ServerAddresses(limit=3)
    servers.add("registrar.example.test")  # a name: the listener never sees one
    assert len(servers) == 0
    for host in ("192.0.2.1", "192.0.2.2", "[2001:DB8::1]", "192.0.2.4"):
        servers.add(host)
    assert len(servers) == 3
    assert "192.0.2.1" not in servers  # the oldest went
    assert servers("2001:db8::1")
    assert source_address("::ffff:127.0.0.2") == "127.0.0.2"
    assert source_address("[fe80::1%eth0]") == "fe80::1"
    assert source_address("not-an-address") == "not-an-address"


def test_throttled_log_counts_what_it_leaves_out_and_says_so_once_per_window() -> None:
    from structlog.testing import capture_logs

    from sipua.logs import get_logger
    from sipua.transport.listener import ThrottledLog

    with capture_logs() as logs:
        throttled = ThrottledLog(get_logger(), "refused", limit=3, window=10.0)
        for second in range(10):
            throttled(float(second), peer=f"192.0.2.{second}")
        throttled.flush(9.5)  # the window is not over: nothing yet
        assert len(logs) == 3
        throttled.flush(10.0)
        throttled.flush(25.0)  # nothing left out since: no line
    assert [entry.get("peer") for entry in logs[:3]] == ["192.0.2.0", "192.0.2.1", "192.0.2.2"]
    assert len(logs) == 4
    assert logs[3]["unlogged"] == 7
    assert logs[3]["reason"] == "7 more in 10 s, not logged one by one"
