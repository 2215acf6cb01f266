"""TlsListener and open_tls_stream over real loopback TCP."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from sipua.errors import ConnectFailed, HandshakeFailed, PeerNotTrusted, TlsError
from sipua.tls.connection import events
from sipua.tls.connection.listener import (
    TlsListener,
    open_tls_listeners,
    open_tls_stream,
)
from sipua.tls.connection.stream import TlsStream
from tests.support.tls_pair import TlsWorld


@pytest.fixture(scope="module")
def world() -> TlsWorld:
    return TlsWorld()


def port_of(listener: TlsListener) -> int:
    sock = listener.transport_listener.socket  # type: ignore[attr-defined]
    return int(sock.getsockname()[1])


class Served:
    """What a server on TlsListener saw: verified connections and refusals."""

    def __init__(self) -> None:
        self.completed: list[events.HandshakeCompleted] = []
        self.failures: list[TlsError] = []
        self.changed = trio.Event()

    async def handler(self, stream: TlsStream, completed: events.HandshakeCompleted) -> None:
        self.completed.append(completed)
        self.changed.set()
        data = await stream.receive_some()
        await stream.send_all(data.upper())

    def on_failure(self, stream: TlsStream, error: TlsError) -> None:
        self.failures.append(error)
        self.changed.set()

    async def wait(self, count: int) -> None:
        with trio.fail_after(60):
            while len(self.completed) + len(self.failures) < count:
                self.changed = trio.Event()
                await self.changed.wait()


async def start_server(
    nursery: trio.Nursery, world: TlsWorld, served: Served, *, handshake_timeout: float = 5
) -> int:
    listeners = await open_tls_listeners(
        0,
        world.server_config(),
        host="127.0.0.1",
        handshake_timeout=handshake_timeout,
        verifier=world.verifier(),
    )

    async def serve_one(stream: TlsStream) -> None:
        # What the SIP listener does with each accepted stream: the handshake, bounded, in
        # the connection's own task.
        try:
            completed = await stream.do_handshake(timeout=listeners[0].handshake_timeout)
        except (HandshakeFailed, PeerNotTrusted) as exc:
            served.on_failure(stream, exc)
            return
        try:
            await served.handler(stream, completed)
        finally:
            with trio.move_on_after(2):
                await stream.aclose()

    await nursery.start(trio.serve_listeners, serve_one, listeners)
    return port_of(listeners[0])


async def test_serves_a_verified_client(world: TlsWorld) -> None:
    served = Served()
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, world, served)
        stream = await open_tls_stream(
            "127.0.0.1",
            port,
            world.client_config(),
            peer="the listener",
            verifier=world.verifier(name="example.com"),
        )
        await stream.send_all(b"register")
        with trio.fail_after(5):
            assert await stream.receive_some() == b"REGISTER"
            assert await stream.receive_some() == b""  # the server closed with close_notify
        await stream.aclose()
        nursery.cancel_scope.cancel()
    assert served.completed[0].sni == "example.com"


@pytest.mark.parametrize(
    "payload", [b"GET / HTTP/1.0\r\n\r\n" * 3, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]
)
async def test_garbage_and_truncated_client_hello_are_refused(
    world: TlsWorld, payload: bytes
) -> None:
    served = Served()
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, world, served)
        raw = await trio.open_tcp_stream("127.0.0.1", port)
        await raw.send_all(payload)
        await raw.send_eof()  # a truncated ClientHello ends here
        await served.wait(1)
        await raw.aclose()
        nursery.cancel_scope.cancel()
    assert served.completed == []
    assert isinstance(served.failures[0], HandshakeFailed)
    assert "TLS handshake failed" in str(served.failures[0])


async def test_silent_client_times_out_without_blocking_others(
    world: TlsWorld, autojump_clock: trio.testing.MockClock
) -> None:
    served = Served()
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, world, served, handshake_timeout=30)
        silent = await trio.open_tcp_stream("127.0.0.1", port)
        # While the silent client holds its connection, another one is served.
        stream = await open_tls_stream(
            "127.0.0.1", port, world.client_config(), peer="the listener", verifier=world.verifier()
        )
        await stream.send_all(b"x")
        assert await stream.receive_some() == b"X"
        await stream.aclose()
        await served.wait(2)
        assert trio.current_time() >= 30
        await silent.aclose()
        nursery.cancel_scope.cancel()
    assert len(served.completed) == 1
    assert "did not finish within 30 s" in str(served.failures[0])


async def test_connect_refused_is_connect_failed(world: TlsWorld) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The error names the peer as the caller labelled it.
    with pytest.raises(ConnectFailed, match=f"cannot connect to registrar.test:{port}: "):
        await open_tls_stream(
            "127.0.0.1",
            port,
            world.client_config(),
            peer=f"registrar.test:{port}",
            connect_timeout=5,
        )


async def test_a_connect_that_does_not_complete_times_out(world: TlsWorld) -> None:
    # A listener whose accept queue is full: the kernel drops further SYNs, so a connect
    # stays in progress (the first connection fills the queue of a listen(0) socket).
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        with (
            socket.create_connection(("127.0.0.1", port)),
            pytest.raises(
                ConnectFailed, match=rf"connecting to 127\.0\.0\.1:{port} timed out after 0\.3 s"
            ),
        ):
            await open_tls_stream(
                "127.0.0.1",
                port,
                world.client_config(),
                peer=f"127.0.0.1:{port}",
                connect_timeout=0.3,
            )


async def test_accept_does_not_handshake(world: TlsWorld) -> None:
    listeners = await open_tls_listeners(0, world.server_config(), host="127.0.0.1")
    listener = listeners[0]
    silent = await trio.open_tcp_stream("127.0.0.1", port_of(listener))
    with trio.fail_after(5):
        stream = await listener.accept()  # returns although the client said nothing
    assert stream.handshake_event is None
    assert stream.server_side
    await stream.aclose()
    await silent.aclose()
    await listener.aclose()
