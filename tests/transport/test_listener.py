from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from sipua.sip import Request, Response, make_response, parse_message, serialize
from sipua.tls.connection.context import TlsServerConfig
from sipua.transport.connection import SipConnection
from sipua.transport.listener import serve_tls
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
        host, port = await nursery.start(
            lambda task_status: serve_tls(
                "127.0.0.1",
                0,
                server_config(),
                handler,
                handshake_timeout=2.0,
                on_handshake=lambda peer, outcome: outcomes.append(type(outcome).__name__),
                task_status=task_status,
            )
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
        host, port = await nursery.start(
            lambda task_status: serve_tls(
                "127.0.0.1",
                0,
                server_config(),
                handler,
                handshake_timeout=2.0,
                task_status=task_status,
            )
        )
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


async def test_handler_bug_closes_only_that_connection() -> None:
    calls = 0

    async def buggy(connection: SipConnection, message: Request | Response) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("handler bug")
        await handler(connection, message)

    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(
            lambda task_status: serve_tls(
                "127.0.0.1",
                0,
                server_config(),
                buggy,
                handshake_timeout=2.0,
                task_status=task_status,
            )
        )
        tcp = await trio.open_tcp_stream(host, port)
        stream = trio.SSLStream(tcp, client_context(), server_hostname="device.test")
        await stream.send_all(OPTIONS)
        with trio.fail_after(5):
            try:
                while await stream.receive_some(65536):
                    pass  # the server closes this connection without an answer
            except trio.BrokenResourceError:
                pass
        await stream.aclose()
        response = await _options_round_trip(host, port)
        assert response.status == 200
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
