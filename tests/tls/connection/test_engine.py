"""TlsEngine without I/O: two engines pumped into each other by hand."""

from __future__ import annotations

import pytest
import trio.testing

from sipua.errors import ConnectionLost, HandshakeFailed
from sipua.tls.connection.context import client_context, server_context
from sipua.tls.connection.engine import WANT_READ, TlsEngine
from sipua.tls.connection.stream import TlsStream
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


def _learning_handshake(world: TlsWorld, server_groups: str | None) -> tuple[int, int, str]:
    """(ClientHello bytes, client flights, group) of one handshake with key-share memory."""
    client = TlsEngine(
        client_context(world.client_config()),
        server_side=False,
        server_name="shares.example",
        learn_key_share=True,
    )
    server = TlsEngine(server_context(world.server_config(groups=server_groups)), server_side=True)
    client.handshake()
    hello = client.data_to_send()
    server.receive_data(hello)
    flights = 1
    for _ in range(MAX_ROUNDS):
        server.handshake()
        client.receive_data(server.data_to_send())
        done = client.handshake()
        outgoing = client.data_to_send()
        if outgoing:
            flights += 1
            server.receive_data(outgoing)
        if done:
            break
    assert client.handshake_done
    client.remember_key_share()
    return len(hello), flights, client._conn.get_group_name() or ""


def test_a_classical_server_gets_only_its_key_share_the_next_time() -> None:
    world = TlsWorld(server_name="shares.example")
    first_hello, _, group = _learning_handshake(world, "X25519:P-256")
    assert group == "x25519"
    # OpenSSL's default: the hybrid post-quantum share (~1.2 KB) beside X25519's.
    assert first_hello > 1_000
    second_hello, flights, group = _learning_handshake(world, "X25519:P-256")
    assert group == "x25519"
    assert flights == 2  # ClientHello, Finished: no HelloRetryRequest
    assert second_hello < first_hello - 1_000


def test_a_server_that_prefers_the_hybrid_still_gets_it_and_is_remembered() -> None:
    world = TlsWorld(server_name="shares.example")
    _learning_handshake(world, "X25519:P-256")  # learned: X25519 only
    # The server now prefers the post-quantum hybrid: a HelloRetryRequest asks for its share.
    _, flights, group = _learning_handshake(world, None)
    assert group == "X25519MLKEM768"
    assert flights == 3
    # Remembered: the next ClientHello carries the hybrid share again, no retry.
    hello, flights, group = _learning_handshake(world, None)
    assert (group, flights) == ("X25519MLKEM768", 2)
    assert hello > 1_000


def test_only_streams_on_the_default_groups_learn_key_shares(world: TlsWorld) -> None:
    transport, _ = trio.testing.memory_stream_pair()
    default = TlsStream.client(transport, world.client_config())
    chosen = TlsStream.client(transport, world.client_config(groups="P-256"))
    assert default._engine._learn_key_share
    assert not chosen._engine._learn_key_share
