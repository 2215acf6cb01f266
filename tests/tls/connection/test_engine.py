"""TlsEngine without I/O: two engines pumped into each other by hand."""

from __future__ import annotations

import pytest

from sipua.errors import ConnectionLost, HandshakeFailed
from sipua.tls.connection.context import client_context, server_context
from sipua.tls.connection.engine import WANT_READ, TlsEngine
from tests.support.tls_pair import TlsWorld

MAX_ROUNDS = 20


@pytest.fixture(scope="module")
def world() -> TlsWorld:
    return TlsWorld()


def engines(world: TlsWorld, **client_changes: object) -> tuple[TlsEngine, TlsEngine]:
    client = TlsEngine(
        client_context(world.client_config(**client_changes)),
        server_side=False,
        server_name="example.com",
    )
    server = TlsEngine(server_context(world.server_config()), server_side=True)
    return client, server


def pump(a: TlsEngine, b: TlsEngine) -> None:
    for _ in range(MAX_ROUNDS):
        moved = False
        for src, dst in ((a, b), (b, a)):
            data = src.data_to_send()
            if data:
                dst.receive_data(data)
                moved = True
        if not moved:
            return
        for engine in (a, b):
            if not engine.handshake_done:
                engine.handshake()
    raise AssertionError("engines still talking after MAX_ROUNDS")


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_handshake_data_and_clean_close(world: TlsWorld, version: str) -> None:
    client, server = engines(world, max_version=version)
    assert client.handshake() is False  # the ClientHello is queued, the reply is awaited
    pump(client, server)
    assert client.handshake_done
    assert server.handshake_done
    assert client.version == server.version == f"TLSv{version}"
    assert client.cipher == server.cipher
    assert server.received_sni == "example.com"
    assert client.peer_chain()[0] == world.server_identity.certificate
    assert server.peer_chain() == ()
    assert server.read(100) is WANT_READ
    assert client.write(b"OPTIONS") == len(b"OPTIONS")
    pump(client, server)
    assert server.read(100) == b"OPTIONS"
    client.close()
    pump(client, server)
    assert server.read(100) == b""
    assert server.closed_cleanly is True


def test_eof_without_close_notify_is_a_truncation(world: TlsWorld) -> None:
    client, server = engines(world)
    client.handshake()
    pump(client, server)
    server.receive_eof()
    with pytest.raises(ConnectionLost, match="truncated"):
        server.read(100)
    assert server.closed_cleanly is False


def test_eof_during_the_handshake(world: TlsWorld) -> None:
    client, server = engines(world)
    client.handshake()
    server.receive_data(client.data_to_send()[:10])
    server.receive_eof()
    with pytest.raises(HandshakeFailed, match="closed the connection during the handshake"):
        server.handshake()


def test_garbage_names_openssl_reason(world: TlsWorld) -> None:
    _, server = engines(world)
    server.receive_data(b"\x16\x03\x01\x00\x05hello, this is not TLS")
    with pytest.raises(HandshakeFailed, match=r"TLS handshake failed with the client: .+"):
        server.handshake()
    # The alert OpenSSL queued is there for the stream to send.
    assert server.data_to_send().startswith(b"\x15")


def test_write_after_our_close(world: TlsWorld) -> None:
    client, server = engines(world, max_version="1.2")
    client.handshake()
    pump(client, server)
    client.close()
    with pytest.raises(ConnectionLost, match="broke while sending"):
        client.write(b"x")


@pytest.mark.parametrize(
    ("server_name", "sent"),
    [("faß.de", "xn--fa-hia.de"), ("Bücher.Example.", "xn--bcher-kva.example")],
)
def test_sni_is_the_idna_2008_a_label(world: TlsWorld, server_name: str, sent: str) -> None:
    # IDNA 2003 (Python's "idna" codec) would send fass.de: another domain.
    client = TlsEngine(
        client_context(world.client_config()), server_side=False, server_name=server_name
    )
    server = TlsEngine(server_context(world.server_config()), server_side=True)
    client.handshake()
    server.receive_data(client.data_to_send())
    server.handshake()
    assert server.received_sni == sent
