"""TlsStream: conformance with trio's stream contract, handshake results, ends and failures."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable

import OpenSSL.SSL
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from sipua.errors import (
    EXIT_TLS,
    ConnectionLost,
    HandshakeFailed,
    PeerNotTrusted,
    TlsAlertReceived,
)
from sipua.tls.connection import events, sockio
from sipua.tls.connection.context import server_context
from sipua.tls.connection.engine import TlsEngine
from sipua.tls.connection.stream import BrokenByTlsAlert, BrokenTlsStream, TlsStream
from tests.support.tls_pair import (
    TlsWorld,
    handshake_both,
    tls_lockstep_pair,
    tls_memory_pair,
)

VERSIONS = ["1.2", "1.3"]


@pytest.fixture(scope="module")
def world() -> TlsWorld:
    return TlsWorld()


@pytest.mark.parametrize("version", VERSIONS)
async def test_check_two_way_stream(world: TlsWorld, version: str) -> None:
    client_config = world.client_config(max_version=version)

    async def memory() -> tuple[TlsStream, TlsStream]:
        return tls_memory_pair(world, client_config=client_config)

    async def lockstep() -> tuple[TlsStream, TlsStream]:
        # Handshake up front: otherwise a server in wait_send_all_might_not_block and a client
        # whose receive_some starts the handshake by sending would wait for each other.
        client, server = tls_lockstep_pair(world, client_config=client_config)
        await handshake_both(client, server)
        return client, server

    await trio.testing.check_two_way_stream(memory, lockstep)


# -- what the handshake reports -----------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_trusted_peer_completes_with_the_verdict(world: TlsWorld, version: str) -> None:
    verifier = world.verifier(name="example.com")
    client, server = tls_memory_pair(
        world, client_config=world.client_config(max_version=version), client_verifier=verifier
    )
    await handshake_both(client, server)
    completed = client.handshake_event
    assert isinstance(completed, events.HandshakeCompleted)
    assert completed.version == f"TLSv{version}"
    assert completed.cipher
    assert completed.verified
    assert completed.verification is not None
    assert completed.verification.code == "ok"
    assert completed.peer_chain[0] == world.server_identity.certificate
    assert verifier.seen == [completed.peer_chain]
    assert completed.server_name == "example.com"
    # OpenSSL's advisory verdicts were recorded (the CA is in its store, so they are ok).
    assert completed.openssl_verdicts
    assert all(v.ok for v in completed.openssl_verdicts)
    server_side = server.handshake_event
    assert isinstance(server_side, events.HandshakeCompleted)
    assert server_side.sni == "example.com"
    assert server_side.verification is None  # no client certificate was asked for


async def test_openssl_verdicts_name_each_certificate_on_demand(world: TlsWorld) -> None:
    client, server = tls_memory_pair(world, client_verifier=world.verifier(name="example.com"))
    await handshake_both(client, server)
    completed = client.handshake_event
    assert isinstance(completed, events.HandshakeCompleted)
    by_depth = {v.depth: v for v in completed.openssl_verdicts}
    # The leaf's subject is formatted when read, from the certificate OpenSSL judged.
    leaf_subject = world.server_identity.certificate.subject.rfc4514_string()
    assert by_depth[0].subject == leaf_subject
    assert by_depth[0].error == 0
    # Neither the repr nor equality drag the certificate object along.
    assert "certificate" not in repr(by_depth[0])
    assert by_depth[0] == events.OpenSslVerdict(depth=0, ok=True, error=0)
    assert events.OpenSslVerdict(depth=0, ok=True, error=0).subject == "<not recorded>"


@pytest.mark.parametrize(
    ("verifier_args", "code"),
    [({"name": "other.example"}, "name-mismatch"), ({}, "untrusted-issuer")],
)
async def test_refused_peer_raises_and_sends_no_data(
    world: TlsWorld, verifier_args: dict[str, str], code: str
) -> None:
    if code == "untrusted-issuer":
        verifier = TlsWorld().verifier()  # trusts another CA only
    else:
        verifier = world.verifier(**verifier_args)
    client, server = tls_memory_pair(world, client_verifier=verifier)
    received: list[bytes | BaseException] = []

    async def serve() -> None:
        try:
            await server.do_handshake()
            received.append(await server.receive_some())
        except (HandshakeFailed, ConnectionLost) as exc:
            received.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        with pytest.raises(PeerNotTrusted) as info:
            await client.send_all(b"REGISTER sips:example.com SIP/2.0\r\n")
    assert info.value.code == code
    event = client.handshake_event
    assert isinstance(event, events.HandshakeFailed)
    assert event.code == code
    assert event.verification is not None
    assert not event.verification.ok
    # The server never saw a plaintext byte: it saw the connection end instead.
    assert len(received) == 1
    assert isinstance(received[0], (HandshakeFailed, ConnectionLost))
    # Later use keeps failing with the same verdict.
    with pytest.raises(PeerNotTrusted):
        await client.do_handshake()


async def test_untrusted_peer_passes_when_only_trusted_is_off(world: TlsWorld) -> None:
    verifier = TlsWorld().verifier(only_trusted=False)
    client, server = tls_memory_pair(world, client_verifier=verifier)
    await handshake_both(client, server)
    completed = client.handshake_event
    assert isinstance(completed, events.HandshakeCompleted)
    assert not completed.verified
    assert completed.verification is not None
    assert completed.verification.code == "untrusted-issuer"


async def test_real_verify_chain_is_the_default_verifier(world: TlsWorld) -> None:
    from sipua.tls.trust.policy import TrustPolicy

    transports = trio.testing.memory_stream_pair()
    client = TlsStream.client(transports[0], world.client_config())
    server = TlsStream.server(transports[1], world.server_config(), verifier=world.verifier())
    await handshake_both(client, server)
    completed = client.handshake_event
    assert isinstance(completed, events.HandshakeCompleted)
    assert completed.verified

    # Wrong name: refused while CN validation is on, even with only_trusted=False (CN
    # validation is mandatory when on); with it off the name is not checked.
    for policy in (
        TrustPolicy(),
        TrustPolicy(only_trusted=False),
        TrustPolicy(only_trusted=False, cn_validation=False),
    ):
        transports = trio.testing.memory_stream_pair()
        config = world.client_config(server_name="other.example", policy=policy)
        client = TlsStream.client(transports[0], config)
        server = TlsStream.server(transports[1], world.server_config(), verifier=world.verifier())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_quietly, server.do_handshake)
            if policy.cn_validation:
                with pytest.raises(PeerNotTrusted) as info:
                    await client.do_handshake()
                assert info.value.code == "name-mismatch"
            else:
                completed = await client.do_handshake()
                assert completed.verified
                assert completed.verification is not None
                assert completed.verification.code == "ok"


async def _quietly(afn: Callable[[], Awaitable[object]]) -> None:
    with contextlib.suppress(HandshakeFailed, ConnectionLost, PeerNotTrusted):
        await afn()


# -- ends ---------------------------------------------------------------------------------


async def test_clean_close_is_reported(world: TlsWorld) -> None:
    client, server = tls_memory_pair(world)
    await handshake_both(client, server)
    await client.send_all(b"bye")
    await client.aclose()
    assert await server.receive_some() == b"bye"
    assert await server.receive_some() == b""
    assert server.close_event == events.TlsClosed(clean=True, reason="the peer sent close_notify")
    assert client.close_event is not None
    assert client.close_event.clean


async def test_truncation_is_an_error_and_an_unclean_close(world: TlsWorld) -> None:
    client, server = tls_memory_pair(world)
    await handshake_both(client, server)
    await trio.aclose_forcefully(server.transport_stream)
    with pytest.raises(BrokenTlsStream, match="without a TLS close_notify") as info:
        await client.receive_some()
    assert isinstance(info.value, ConnectionLost)
    assert isinstance(info.value, trio.BrokenResourceError)
    assert client.close_event is not None
    assert not client.close_event.clean


async def test_send_eof_is_not_supported(world: TlsWorld) -> None:
    client, _ = tls_memory_pair(world)
    with pytest.raises(NotImplementedError):
        await client.send_eof()


# -- failing peers ------------------------------------------------------------------------


async def test_silent_peer_hits_the_handshake_timeout(
    world: TlsWorld, autojump_clock: trio.testing.MockClock
) -> None:
    client, _server = tls_memory_pair(world)  # the server never runs
    with pytest.raises(HandshakeFailed, match="within 7 s") as info:
        await client.do_handshake(timeout=7)
    assert isinstance(info.value, trio.BrokenResourceError)
    assert trio.current_time() == pytest.approx(7)
    event = client.handshake_event
    assert isinstance(event, events.HandshakeFailed)
    assert event.code == "timeout"
    with pytest.raises(HandshakeFailed):
        await client.send_all(b"x")


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"REGISTER sip:x SIP/2.0\r\n\r\n", bytes(range(256))],
)
async def test_garbage_instead_of_a_client_hello(world: TlsWorld, garbage: bytes) -> None:
    transport, peer = trio.testing.memory_stream_pair()
    server = TlsStream.server(transport, world.server_config(), verifier=world.verifier())
    await peer.send_all(garbage)
    with pytest.raises(HandshakeFailed, match="TLS handshake failed") as info:
        await server.do_handshake(timeout=5)
    # One sipua error that trio code understands too; OpenSSL's exception is only the cause.
    assert isinstance(info.value, trio.BrokenResourceError)
    assert isinstance(info.value.__cause__, OpenSSL.SSL.Error)
    event = server.handshake_event
    assert isinstance(event, events.HandshakeFailed)
    assert event.code == "handshake"


async def test_truncated_client_hello(world: TlsWorld) -> None:
    # Capture a real ClientHello, send half of it, then end the transport.
    hello_transport, hello_peer = trio.testing.memory_stream_pair()
    client = TlsStream.client(hello_transport, world.client_config(), verifier=world.verifier())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_quietly, client.do_handshake)
        hello = await hello_peer.receive_some()
        nursery.cancel_scope.cancel()
    transport, peer = trio.testing.memory_stream_pair()
    server = TlsStream.server(transport, world.server_config(), verifier=world.verifier())
    await peer.send_all(hello[: len(hello) // 2])
    await peer.send_eof()
    with pytest.raises(HandshakeFailed, match="closed the connection during the handshake"):
        await server.do_handshake(timeout=5)


# -- interoperability with the standard library's TLS (trio.SSLStream) -----------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_stdlib_client_against_our_server(world: TlsWorld, version: str) -> None:
    context = ssl.create_default_context()
    world.ca.configure_trust(context)
    context.maximum_version = ssl.TLSVersion[f"TLSv1_{version[-1]}"]
    ours, theirs = trio.testing.memory_stream_pair()
    server = TlsStream.server(ours, world.server_config(), verifier=world.verifier())
    client = trio.SSLStream(theirs, context, server_hostname="example.com")

    async def stdlib_side() -> None:
        await client.send_all(b"OPTIONS")
        assert await client.receive_some() == b"200 OK"
        await client.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stdlib_side)
        completed = await server.do_handshake()
        assert completed.version == f"TLSv{version}"
        assert completed.sni == "example.com"
        assert await server.receive_some() == b"OPTIONS"
        await server.send_all(b"200 OK")
        assert await server.receive_some() == b""
    await server.aclose()


async def test_our_client_against_a_stdlib_server(world: TlsWorld) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    world.ca.issue_cert("example.com").configure_cert(context)
    ours, theirs = trio.testing.memory_stream_pair()
    client = TlsStream.client(ours, world.client_config(), verifier=world.verifier())
    server = trio.SSLStream(theirs, context, server_side=True)

    async def stdlib_side() -> None:
        assert await server.receive_some() == b"REGISTER"
        await server.send_all(b"401")
        await server.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stdlib_side)
        completed = await client.do_handshake()
        assert completed.verified
        await client.send_all(b"REGISTER")
        assert await client.receive_some() == b"401"
        assert await client.receive_some() == b""
    await client.aclose()


async def test_tls13_refusal_of_our_client_certificate_is_a_tls_error(world: TlsWorld) -> None:
    # Under TLS 1.3 the client's handshake is over before the server checks the client
    # certificate; the server's refusal arrives as an alert on the next read. That is a TLS
    # failure (exit code 3) naming the alert, not a dropped connection (exit code 5).
    client, server = tls_memory_pair(
        world,
        client_config=world.client_config(max_version="1.3"),
        server_config=world.server_config(client_certs="require"),
    )

    async def refuse() -> None:
        with pytest.raises(HandshakeFailed):
            await server.do_handshake()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refuse)
        await client.do_handshake()
    with pytest.raises(BrokenByTlsAlert) as info:
        await client.receive_some(100)
    assert isinstance(info.value, TlsAlertReceived)
    assert isinstance(info.value, trio.BrokenResourceError)
    assert info.value.exit_code == EXIT_TLS
    assert "certificate required" in str(info.value)
    assert "sipua cert export-ca" in str(info.value)


# -- sends larger than one TLS record ------------------------------------------------------

# Around one, two, four and eight records (16 KiB each) and a non-multiple in between.
LARGE_SIZES = [16_383, 16_384, 16_385, 32_769, 65_536, 100_000, 131_072]


async def _loopback_pair(world: TlsWorld, version: str) -> tuple[TlsStream, TlsStream]:
    """A client and a server TlsStream over a real TCP connection on 127.0.0.1."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client_tcp = await trio.open_tcp_stream("127.0.0.1", port)
    server_tcp = await listeners[0].accept()
    await listeners[0].aclose()
    client = TlsStream.client(
        client_tcp,
        world.client_config(max_version=version),
        verifier=world.verifier(name="example.com"),
    )
    server = TlsStream.server(server_tcp, world.server_config(), verifier=world.verifier())
    await handshake_both(client, server)
    return client, server


async def _raw_loopback_pair(
    world: TlsWorld, version: str, *, handshake: bool = True
) -> tuple[TlsStream, TlsStream]:
    """As `_loopback_pair`, both sides on non-blocking stdlib sockets (`raw_socket`)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client_sock = sockio.client_socket("127.0.0.1")
        await sockio.connect(client_sock, listener.getsockname())
        server_sock, _ = listener.accept()
    server_sock.setblocking(False)
    client = TlsStream.client(
        trio.SocketStream(trio.socket.from_stdlib_socket(client_sock)),
        world.client_config(max_version=version),
        verifier=world.verifier(name="example.com"),
        raw_socket=client_sock,
    )
    server = TlsStream(
        trio.SocketStream(trio.socket.from_stdlib_socket(server_sock)),
        TlsEngine(server_context(world.server_config()), server_side=True),
        verifier=world.verifier(),
        raw_socket=server_sock,
    )
    if handshake:
        await handshake_both(client, server)
    return client, server


@pytest.mark.parametrize("version", VERSIONS)
async def test_check_two_way_stream_on_raw_sockets(world: TlsWorld, version: str) -> None:
    async def raw() -> tuple[TlsStream, TlsStream]:
        return await _raw_loopback_pair(world, version, handshake=False)

    await trio.testing.check_two_way_stream(raw, None)


class _StepCounter(trio.abc.Instrument):
    """Counts the scheduler's steps of one task."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


# The client's real waits: TLS 1.3 one round trip (the server's flight), TLS 1.2 two.
@pytest.mark.parametrize(("version", "waits"), [("1.3", 1), ("1.2", 2)])
async def test_a_raw_socket_handshake_goes_through_the_scheduler_only_to_wait(
    world: TlsWorld, version: str, waits: int
) -> None:
    client, server = await _raw_loopback_pair(world, version, handshake=False)
    counter: _StepCounter | None = None

    async def client_side() -> None:
        nonlocal counter
        counter = _StepCounter(trio.lowlevel.current_task())
        trio.lowlevel.add_instrument(counter)
        try:
            await client.do_handshake()
        finally:
            trio.lowlevel.remove_instrument(counter)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        nursery.start_soon(client_side)
    assert counter is not None
    # One step to run after each real wait; no trip for a send the kernel took at once.
    assert counter.steps == waits
    await client.aclose()
    await server.aclose()


async def _receive_exactly(stream: TlsStream, size: int) -> bytes:
    received = bytearray()
    with trio.fail_after(10):
        while len(received) < size:
            chunk = await stream.receive_some(65_536)
            assert chunk, f"stream ended after {len(received)} of {size} bytes"
            received += chunk
    return bytes(received)


@pytest.mark.parametrize("raw", [False, True], ids=["trio-streams", "raw-sockets"])
@pytest.mark.parametrize("version", VERSIONS)
async def test_large_sends_arrive_whole_both_ways_over_loopback(
    world: TlsWorld, version: str, raw: bool
) -> None:
    pair = _raw_loopback_pair if raw else _loopback_pair
    client, server = await pair(world, version)
    for size in LARGE_SIZES:
        for sender, receiver in ((client, server), (server, client)):
            # A pattern that shows a cut or a repeated record, not just a wrong length.
            payload = bytes(i * 7 % 251 for i in range(size))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender.send_all, payload)
                got = await _receive_exactly(receiver, size)
            assert got == payload, (
                f"{size} bytes from the {'client' if sender is client else 'server'}"
            )
    # Nothing more than what was sent arrived.
    with trio.move_on_after(0.2):
        extra = await server.receive_some(1)
        pytest.fail(f"unexpected bytes after the sends: {extra!r}")
    await client.aclose()
    await server.aclose()


_PROPERTY_WORLD = TlsWorld()  # one CA for every example: key generation is slow


@settings(max_examples=25, deadline=None)
@given(size=st.integers(min_value=1, max_value=4 * 16_384 + 3))
def test_any_send_size_arrives_whole_in_memory(size: int) -> None:
    world = _PROPERTY_WORLD

    async def main() -> None:
        client, server = tls_memory_pair(world)
        await handshake_both(client, server)
        payload = bytes(i % 253 for i in range(size))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, payload)
            assert await _receive_exactly(server, size) == payload

    trio.run(main)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("client_certs", ["none", "request"])
async def test_client_side_knows_whether_its_certificate_was_asked_for(
    world: TlsWorld, version: str, client_certs: str
) -> None:
    # A server that asks for the client certificate may still refuse it after a TLS 1.3
    # handshake is done on our side; the transport needs to know it was asked.
    client, server = tls_memory_pair(
        world,
        client_config=world.client_config(max_version=version),
        server_config=world.server_config(client_certs=client_certs),
    )
    await handshake_both(client, server)
    completed = client.handshake_event
    assert isinstance(completed, events.HandshakeCompleted)
    assert completed.certificate_requested is (client_certs != "none")
    server_side = server.handshake_event
    assert isinstance(server_side, events.HandshakeCompleted)
    assert server_side.certificate_requested is False
