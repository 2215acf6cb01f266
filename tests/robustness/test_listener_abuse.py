"""The inbound TLS listener under abuse, over real loopback sockets.

Every test keeps one well-behaved TLS peer connected and checks it is still served after the
abuse: plaintext SIP, random bytes, a truncated ClientHello, a client that never speaks, a
client that stalls mid-message, more connections than the cap, a flood of silent connections
from one address (or from many, against the places kept for the registrar), a source that is
not a configured server while only servers are accepted, an oversized message (sent slowly,
so the peer is still sending when the answer comes) and a message with a lying
Content-Length. Clients choose their source address in 127.0.0.0/8 (Linux answers on all of
it): 127.0.0.2 and up are the abusers, 127.0.0.1 the legitimate caller or registrar. Timeouts
are short and every wait is bounded.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import trio
from structlog.testing import capture_logs

from sipua.sip import (
    NEED_DATA,
    MessageFramed,
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_message,
)
from sipua.tls.connection.context import TlsServerConfig
from sipua.tls.trust.policy import TrustPolicy
from sipua.transport import connection as connection_module
from sipua.transport.connection import SipConnection
from sipua.transport.listener import LOG_LINES_PER_WINDOW, ServerAddresses, serve_tls
from tests.support.certs import make_ca, make_leaf
from tests.transport.test_listener import OPTIONS, client_context, server_config

HANDSHAKE_TIMEOUT = 0.5
IDLE_TIMEOUT = 1.0


@dataclass
class Server:
    host: str
    port: int
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)
    served: int = 0


async def handler(connection: SipConnection, message: Request | Response) -> None:
    if isinstance(message, Request):
        await connection.send(make_response(message, 200, to_tag="t"))


@asynccontextmanager
async def listening(
    *,
    max_connections: int = 16,
    idle_timeout: float = 30.0,
    config: TlsServerConfig | None = None,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    **admission: Any,
) -> AsyncIterator[Server]:
    server = Server("", 0)

    def on_handshake(_peer: str, outcome: object) -> None:
        server.outcomes.append((type(outcome).__name__, str(outcome)))

    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(
            lambda task_status: serve_tls(
                "127.0.0.1",
                0,
                config or server_config(),
                handler,
                handshake_timeout=handshake_timeout,
                idle_timeout=idle_timeout,
                max_connections=max_connections,
                on_handshake=on_handshake,
                task_status=task_status,
                **admission,
            )
        )
        server.host, server.port = host, port
        yield server
        nursery.cancel_scope.cancel()


async def tcp_from(source: str, server: Server) -> trio.SocketStream:
    """A TCP connection to the server from `source` (an address in 127.0.0.0/8)."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        await sock.bind((source, 0))
        await sock.connect((server.host, server.port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


class Peer:
    """A well-behaved TLS client (stdlib ssl) speaking SIP."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        self.stream = stream
        self.framer = StreamFramer()

    @classmethod
    async def connect(cls, server: Server, source: str = "127.0.0.1") -> Peer:
        tcp = await tcp_from(source, server)
        stream = trio.SSLStream(tcp, client_context(), server_hostname="device.test")
        try:
            with trio.fail_after(5):
                await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return cls(stream)

    async def request(self, data: bytes = OPTIONS) -> Response:
        await self.stream.send_all(data)
        return await self.response()

    async def response(self) -> Response:
        with trio.fail_after(5):
            while True:
                event = self.framer.next_event()
                if isinstance(event, MessageFramed):
                    message = parse_message(event.data)
                    assert isinstance(message, Response)
                    return message
                if event is NEED_DATA:
                    data = await self.stream.receive_some(65536)
                    assert data, "the server closed the well-behaved peer's connection"
                    self.framer.receive_data(bytes(data))

    async def aclose(self) -> None:
        with trio.move_on_after(2):
            await self.stream.aclose()


async def closed_by_server(stream: trio.abc.Stream, within: float = 5.0) -> bytes:
    """Reads until the server closes (EOF or reset); returns what it sent before."""
    received = b""
    with trio.fail_after(within):
        try:
            while data := await stream.receive_some(65536):
                received += data
        except trio.BrokenResourceError:
            pass  # a reset: closed all the same
    return received


def client_hello() -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="device.test")
    with suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16"  # a TLS handshake record
    return hello


async def test_bad_clients_fail_alone_and_the_good_peer_is_served() -> None:
    async with listening() as server:
        good = await Peer.connect(server)
        assert (await good.request()).status == 200

        # Plaintext SIP on the TLS port: refused at the handshake.
        plain = await trio.open_tcp_stream(server.host, server.port)
        await plain.send_all(OPTIONS)
        assert b"SIP/2.0" not in await closed_by_server(plain)
        assert (await good.request()).status == 200

        # Random bytes.
        noise = await trio.open_tcp_stream(server.host, server.port)
        await noise.send_all(os.urandom(4096))
        await closed_by_server(noise)
        assert (await good.request()).status == 200

        # A truncated ClientHello, then EOF.
        hello = client_hello()
        cut = await trio.open_tcp_stream(server.host, server.port)
        await cut.send_all(hello[: len(hello) // 2])
        await cut.send_eof()
        await closed_by_server(cut)
        assert (await good.request()).status == 200

        # A truncated ClientHello and then silence: the handshake timeout ends it.
        stall = await trio.open_tcp_stream(server.host, server.port)
        await stall.send_all(hello[:20])
        start = trio.current_time()
        await closed_by_server(stall, within=HANDSHAKE_TIMEOUT + 3)
        assert trio.current_time() - start >= HANDSHAKE_TIMEOUT * 0.9

        # A client that connects and never speaks: the same, and accept() was never blocked.
        silent = await trio.open_tcp_stream(server.host, server.port)
        other = await Peer.connect(server)  # handshakes while the silent one waits
        assert (await other.request()).status == 200
        await closed_by_server(silent, within=HANDSHAKE_TIMEOUT + 3)
        assert (await good.request()).status == 200

        # Each refusal was reported with its own reason.
        reasons = [message for kind, message in server.outcomes if kind != "HandshakeCompleted"]
        assert len(reasons) == 5
        assert "http request" in reasons[0]
        assert "wrong version number" in reasons[1]
        assert "closed the connection during the handshake" in reasons[2]
        assert all("did not finish within 0.5 s" in reason for reason in reasons[3:])
        for stream in (plain, noise, cut, stall, silent):
            await stream.aclose()
        await other.aclose()
        await good.aclose()


async def test_client_stalling_mid_message_is_closed_by_the_idle_timeout() -> None:
    async with listening(idle_timeout=IDLE_TIMEOUT) as server:
        good = await Peer.connect(server)
        staller = await Peer.connect(server)
        await staller.stream.send_all(OPTIONS[:40])  # half a request line, then nothing
        with trio.fail_after(IDLE_TIMEOUT + 3):
            for _ in range(4):  # the good peer keeps talking while the other stalls
                assert (await good.request()).status == 200
                await trio.sleep(IDLE_TIMEOUT / 4)
            assert await closed_by_server(staller.stream, within=IDLE_TIMEOUT + 3) == b""
        assert (await good.request()).status == 200
        await good.aclose()
        await trio.aclose_forcefully(staller.stream)


async def test_connections_over_the_cap_are_refused_without_harming_others() -> None:
    cap = 3
    async with listening(max_connections=cap) as server:
        peers = [await Peer.connect(server) for _ in range(cap)]
        for peer in peers:
            assert (await peer.request()).status == 200
        # One more: closed at once, before any TLS byte.
        excess = await trio.open_tcp_stream(server.host, server.port)
        assert await closed_by_server(excess, within=2.0) == b""
        await excess.aclose()
        # A burst of them changes nothing either.
        burst = [await trio.open_tcp_stream(server.host, server.port) for _ in range(20)]
        for stream in burst:
            assert await closed_by_server(stream, within=2.0) == b""
            await stream.aclose()
        for peer in peers:
            assert (await peer.request()).status == 200
        # A place that frees up is available again.
        await peers.pop().aclose()
        with trio.fail_after(5):
            while True:
                try:
                    replacement = await Peer.connect(server)
                    break
                except (trio.BrokenResourceError, ssl.SSLError):
                    await trio.sleep(0.05)  # the server has not noticed the close yet
        assert (await replacement.request()).status == 200
        for peer in [*peers, replacement]:
            await peer.aclose()


async def test_oversized_message_gets_513_and_only_its_connection_closes() -> None:
    async with listening() as server:
        good = await Peer.connect(server)
        big = await Peer.connect(server)
        oversized = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 100000000")
        answer = await big.request(oversized)
        assert answer.status == 513
        assert "exceeds" in (answer.headers.get("Warning") or "")
        await closed_by_server(big.stream)
        await trio.aclose_forcefully(big.stream)
        assert (await good.request()).status == 200
        await good.aclose()


async def test_lying_content_length_only_costs_the_liar() -> None:
    async with listening() as server:
        good = await Peer.connect(server)
        liar = await Peer.connect(server)
        # Claims a 50-byte body and sends none: its next request is eaten as that body, and
        # what follows cannot be framed. Nothing of it reaches the handler as a request.
        await liar.stream.send_all(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 50"))
        assert (await good.request()).status == 200
        await liar.stream.send_all(OPTIONS + b"garbage without a content length\r\n\r\n")
        first = await liar.response()
        assert first.status == 200  # the first request, with 50 bytes of the second as body
        # The rest of the second request has no start line (dropped, unanswerable), then
        # the garbage has no Content-Length: a framing error closes the liar's connection.
        assert await closed_by_server(liar.stream) == b""
        await trio.aclose_forcefully(liar.stream)
        assert (await good.request()).status == 200
        await good.aclose()


async def test_tls_below_the_configured_minimum_is_refused() -> None:

    from tests.support.tls_pair import with_changes

    async with listening(config=with_changes(server_config(), {"min_version": "1.3"})) as server:
        context = client_context()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        tcp = await trio.open_tcp_stream(server.host, server.port)
        old = trio.SSLStream(tcp, context, server_hostname="device.test")
        try:
            with trio.fail_after(5):
                await old.do_handshake()
            refused = False
        except trio.BrokenResourceError:
            refused = True
        finally:
            await trio.aclose_forcefully(old)
        assert refused
        good = await Peer.connect(server)
        assert good.stream.version() == "TLSv1.3"
        assert (await good.request()).status == 200
        [(kind, reason), _] = server.outcomes
        assert kind == "TlsHandshakeError"
        assert "unsupported protocol" in reason
        await good.aclose()


async def watch_closed(streams: list[trio.SocketStream], within: float) -> int:
    """How many of `streams` the server closes (EOF or reset) within `within` seconds."""
    closed = 0

    async def watch(stream: trio.SocketStream) -> None:
        nonlocal closed
        with trio.move_on_after(within):
            with suppress(trio.BrokenResourceError):
                await stream.receive_some(1)
            closed += 1

    async with trio.open_nursery() as nursery:
        for stream in streams:
            nursery.start_soon(watch, stream)
    return closed


async def test_300_silent_connections_from_one_address_do_not_lock_out_another() -> None:
    # The default bounds (256 at once, 8 per address) and a handshake timeout as long as the
    # outbound one, 10 s: the flood must not hold the places until then.
    from sipua.transport.listener import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PER_ADDRESS

    with capture_logs() as logs:
        async with listening(
            max_connections=DEFAULT_MAX_CONNECTIONS, handshake_timeout=10.0
        ) as server:
            flood = [await tcp_from("127.0.0.2", server) for _ in range(300)]
            start = trio.current_time()
            with trio.fail_after(2.0):
                caller = await Peer.connect(server, "127.0.0.1")
                assert (await caller.request()).status == 200
            assert trio.current_time() - start < 2.0
            # All but the address's share were closed at once, before any TLS byte.
            assert await watch_closed(flood, within=1.0) == 300 - DEFAULT_MAX_PER_ADDRESS
            assert (await caller.request()).status == 200
            await caller.aclose()
            for stream in flood:
                await stream.aclose()
    refused = [entry for entry in logs if entry["event"] == "inbound-connection-refused"]
    assert len(refused) == LOG_LINES_PER_WINDOW  # the other refusals are counted, not logged
    assert all(entry["peer"].startswith("127.0.0.2:") for entry in refused)
    assert all("max_connections_per_address" in entry["reason"] for entry in refused)
    assert all(entry["log_level"] == "info" for entry in refused)


async def test_the_registrar_keeps_places_when_many_addresses_flood() -> None:
    servers = ServerAddresses()
    servers.add("127.0.0.1")
    cap, per_address = 32, 4  # a quarter of the places (8) is kept for the servers
    async with listening(
        max_connections=cap, max_per_address=per_address, is_server=servers, handshake_timeout=10.0
    ) as server:
        # Ten addresses, four connections each: 24 are held, the other 16 refused.
        flood = [await tcp_from(f"127.0.0.{2 + i // per_address}", server) for i in range(40)]
        assert await watch_closed(flood, within=1.0) == 40 - (cap - 8)
        stranger = await tcp_from("127.0.0.100", server)
        assert await closed_by_server(stranger, within=2.0) == b""
        await stranger.aclose()
        # The registrar gets the kept places, more than one address's share.
        registrar = [await Peer.connect(server, "127.0.0.1") for _ in range(8)]
        for peer in registrar:
            assert (await peer.request()).status == 200
        # And no more than the whole: the cap holds for it too.
        over = await tcp_from("127.0.0.1", server)
        assert await closed_by_server(over, within=2.0) == b""
        await over.aclose()
        for peer in registrar:
            await peer.aclose()
        for stream in flood:
            await stream.aclose()


async def test_one_address_holds_at_most_its_share_and_gets_a_freed_place_back() -> None:
    with capture_logs() as logs:
        async with listening(max_per_address=3) as server:
            peers = [await Peer.connect(server, "127.0.0.2") for _ in range(3)]
            for peer in peers:
                assert (await peer.request()).status == 200
            extra = await tcp_from("127.0.0.2", server)
            assert await closed_by_server(extra, within=2.0) == b""
            await extra.aclose()
            other = await Peer.connect(server, "127.0.0.1")
            assert (await other.request()).status == 200
            await peers.pop().aclose()
            with trio.fail_after(5):
                while True:
                    try:
                        replacement = await Peer.connect(server, "127.0.0.2")
                        break
                    except (trio.BrokenResourceError, ssl.SSLError):
                        await trio.sleep(0.05)  # the server has not noticed the close yet
            assert (await replacement.request()).status == 200
            for peer in [*peers, replacement, other]:
                await peer.aclose()
    refused = [entry for entry in logs if entry["event"] == "inbound-connection-refused"]
    assert refused
    assert refused[0]["peer"].startswith("127.0.0.2:")
    assert refused[0]["reason"] == (
        "3 connections from this address held already (listen.max_connections_per_address)"
    )
    closed = [entry for entry in logs if entry["event"] == "inbound-connection-closed"]
    assert any(entry["reason"] == "closed by peer" for entry in closed)


async def test_only_the_configured_servers_are_accepted_when_asked() -> None:
    servers = ServerAddresses()
    servers.add("127.0.0.1")
    with capture_logs() as logs:
        async with listening(is_server=servers, servers_only=True) as server:
            stranger = await tcp_from("127.0.0.2", server)
            assert await closed_by_server(stranger, within=2.0) == b""
            await stranger.aclose()
            registrar = await Peer.connect(server, "127.0.0.1")
            assert (await registrar.request()).status == 200
            servers.add("127.0.0.2")  # the flow re-resolved to a second server
            second = await Peer.connect(server, "127.0.0.2")
            assert (await second.request()).status == 200
            await registrar.aclose()
            await second.aclose()
    [refusal] = [entry for entry in logs if entry["event"] == "inbound-connection-refused"]
    assert refusal["peer"].startswith("127.0.0.2:")
    assert "listen.servers_only" in refusal["reason"]
    # The stranger never reached the handshake.
    assert [kind for kind, _ in server.outcomes] == ["HandshakeCompleted"] * 2


async def test_a_peer_still_sending_an_oversized_message_reads_the_513() -> None:
    # The peer sends its message in pieces: the 513 goes out after the first, while it is
    # still sending. Closing then would reset the connection under the peer's sends.
    size = 200_000
    with capture_logs() as logs:
        async with listening() as server:
            good = await Peer.connect(server)
            big = await Peer.connect(server)
            await big.stream.send_all(
                OPTIONS.replace(b"Content-Length: 0", b"Content-Length: %d" % size)
            )
            piece = b"x" * 8192
            with trio.fail_after(5):
                for _ in range(size // len(piece)):
                    await big.stream.send_all(piece)
                    await trio.sleep(0.005)
            answer = await big.response()
            assert answer.status == 513
            start = trio.current_time()
            assert await closed_by_server(big.stream) == b""
            assert trio.current_time() - start < 1.5  # the peer went quiet: closed soon
            await trio.aclose_forcefully(big.stream)
            assert (await good.request()).status == 200
            await good.aclose()
    [dropped] = [
        entry
        for entry in logs
        if entry["event"] == "inbound-connection-closed" and "framing error" in entry["reason"]
    ]
    assert dropped["log_level"] == "info"
    assert "exceeds the 65536-byte limit" in dropped["reason"]
    assert dropped["error_responses"] == 1
    assert 0 < dropped["discarded_bytes"] <= size


async def test_client_that_pings_and_never_reads_loses_its_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # RFC 5626 pings are answered with pongs; a client that pings without reading fills its
    # window, and the pong it does not take closes its connection (it used to block the reader
    # for ever, past the idle timeout, keeping the address's only place).
    monkeypatch.setattr(connection_module, "SEND_STALL_SECONDS", 0.5)
    async with listening(idle_timeout=IDLE_TIMEOUT, max_per_address=1) as server:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
        await sock.bind(("127.0.0.2", 0))
        await sock.connect((server.host, server.port))
        pinger = trio.SSLStream(
            trio.SocketStream(sock), client_context(), server_hostname="device.test"
        )
        with trio.fail_after(5):
            await pinger.do_handshake()
        # Until sipua stops taking our pings (or, soon after, closes the connection).
        with trio.move_on_after(3 * IDLE_TIMEOUT), suppress(trio.BrokenResourceError):
            while True:
                await pinger.send_all(b"\r\n\r\n" * 4096)
        await trio.sleep(1.0)  # more than the send bound: the pinger has been closed
        again = await Peer.connect(server, "127.0.0.2")  # the address's place is free
        assert (await again.request()).status == 200
        await again.aclose()
        await trio.aclose_forcefully(pinger)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_a_client_with_an_intermediate_issued_certificate_is_served_on_reconnect(
    tmp_path: Path, version: ssl.TLSVersion
) -> None:
    # Mutual TLS: a resumed session carries no Certificate message and OpenSSL kept only the
    # client's leaf, so a client whose certificate an intermediate issued was refused on its
    # second connection (untrusted-issuer). Sessions are not resumed when clients are judged.
    root = make_ca("Client Root")
    intermediate = make_ca("Client Intermediate", issuer=root)
    leaf = make_leaf(intermediate, cn="caller.example.test")
    (tmp_path / "c.pem").write_bytes(leaf.pem + intermediate.pem)
    (tmp_path / "c.key").write_bytes(leaf.key_pem)
    config = replace(
        server_config(),
        client_certs="require",
        trusted=(root.cert,),
        policy=TrustPolicy(accepted_ca="custom"),
    )

    def two_connections(port: int) -> list[tuple[bool, bytes]]:
        context = client_context()
        context.maximum_version = version
        context.load_cert_chain(tmp_path / "c.pem", tmp_path / "c.key")
        session = None
        seen = []
        for _ in range(2):
            tcp = socket.create_connection(("127.0.0.1", port), timeout=5)
            with context.wrap_socket(tcp, session=session) as tls:
                tls.sendall(OPTIONS)
                seen.append((tls.session_reused, tls.recv(12)))
                session = tls.session
        return seen

    async with listening(config=config) as server:
        seen = await trio.to_thread.run_sync(two_connections, server.port)
    assert seen == [(False, b"SIP/2.0 200 "), (False, b"SIP/2.0 200 ")]
    assert [kind for kind, _ in server.outcomes] == ["HandshakeCompleted"] * 2
