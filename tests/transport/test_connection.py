from __future__ import annotations

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from sipua.errors import EXIT_TLS, ClientCertificateRefused, ConnectionLost, TlsAlertReceived
from sipua.sip import Request, Response
from sipua.tls.connection.stream import BrokenByTlsAlert
from sipua.transport.connection import SEND_STALL_SECONDS, SipConnection

OPTIONS = (
    b"OPTIONS sips:alice@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK1\r\n"
    b"From: <sips:bob@example.test>;tag=1\r\nTo: <sips:alice@example.test>\r\nCall-ID: c\r\n"
    b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
PING_BYTES = b"\r\n\r\n"


def pair(
    handler_log: list[Request | Response], *, idle_timeout: float | None = None
) -> tuple[SipConnection, trio.abc.Stream, list[tuple[str, bytes]]]:
    ours, theirs = trio.testing.memory_stream_pair()
    traced: list[tuple[str, bytes]] = []

    async def handler(connection: SipConnection, message: Request | Response) -> None:
        handler_log.append(message)
        if isinstance(message, Request):
            from sipua.sip import make_response

            await connection.send(make_response(message, 200, to_tag="t"))

    connection = SipConnection(
        ours,
        peer="127.0.0.1:5061",
        local="127.0.0.1:40000",
        tls_name="example.test",
        handler=handler,
        trace=lambda direction, _conn, data: traced.append((direction, data)),
        idle_timeout=idle_timeout,
    )
    return connection, theirs, traced


async def read_until(stream: trio.abc.Stream, marker: bytes) -> bytes:
    data = b""
    with trio.fail_after(5):
        while marker not in data:
            data += await stream.receive_some(65536)
    return data


async def test_messages_in_pieces_are_handled_and_answered() -> None:
    log: list[Request | Response] = []
    connection, peer, traced = pair(log)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        for i in range(0, len(OPTIONS), 7):  # arbitrary splits
            await peer.send_all(OPTIONS[i : i + 7])
        answer = await read_until(peer, b"\r\n\r\n")
        assert answer.startswith(b"SIP/2.0 200 OK\r\n")
        assert isinstance(log[0], Request)
        assert [d for d, _ in traced] == ["received", "sent"]
        await peer.aclose()
        await connection.closed.wait()
        assert connection.closed_reason == "closed by peer"
        nursery.cancel_scope.cancel()


async def test_ping_is_answered_with_pong() -> None:
    connection, peer, _ = pair([])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        await peer.send_all(b"\r\n\r\n")
        assert await read_until(peer, b"\r\n") == b"\r\n"
        await connection.aclose()
    assert connection.closed_reason == "closed by us"


async def test_garbage_is_dropped_and_connection_lives() -> None:
    log: list[Request | Response] = []
    connection, peer, _ = pair(log)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        await peer.send_all(b"NOT SIP AT ALL\r\nContent-Length: 0\r\n\r\n")
        await peer.send_all(OPTIONS)
        await read_until(peer, b"\r\n\r\n")
        assert connection.dropped_messages == 1
        assert connection.is_open
        nursery.cancel_scope.cancel()


async def test_framing_error_kills_the_connection() -> None:
    connection, peer, _ = pair([])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        await peer.send_all(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
        with trio.fail_after(5):
            await connection.closed.wait()
        assert connection.closed_reason is not None
        assert connection.closed_reason.startswith("framing error")
        nursery.cancel_scope.cancel()


async def test_idle_timeout_closes(autojump_clock: trio.testing.MockClock) -> None:
    connection, _peer, _ = pair([], idle_timeout=30.0)
    reason = await connection.run()
    assert reason == "idle for 30 s"
    assert trio.current_time() == 30.0


async def test_send_after_close_raises_connection_lost() -> None:
    connection, _peer, _ = pair([])
    await connection.aclose()
    with pytest.raises(ConnectionLost, match="closed"):
        await connection.send_ping()


async def test_pongs_are_reported_and_pings_answered() -> None:
    # When to ping and what a missing pong means is the endpoint's; the connection reports.
    ours, theirs = trio.testing.memory_stream_pair()
    pongs: list[SipConnection] = []
    connection = SipConnection(
        ours,
        peer="127.0.0.1:5061",
        local="127.0.0.1:40000",
        tls_name="example.test",
        handler=pair([])[0]._handler,
        on_pong=pongs.append,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        await connection.send_ping()
        assert await read_until(theirs, b"\r\n\r\n") == b"\r\n\r\n"
        await theirs.send_all(b"\r\n")
        with trio.fail_after(5):
            while not pongs:  # noqa: ASYNC110 - the reader reports it
                await trio.sleep(0.01)
        assert pongs == [connection]
        nursery.cancel_scope.cancel()


async def test_idle_timeout_never_interrupts_the_handler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Regression: the idle deadline also covered the handler, so a handler still answering
    # (a new call sending 100/180) could be cancelled half-way.
    finished: list[float] = []
    ours, theirs = trio.testing.memory_stream_pair()

    async def slow(connection: SipConnection, message: Request | Response) -> None:
        await trio.sleep(5.0)
        finished.append(trio.current_time())

    connection = SipConnection(
        ours, peer="p:1", local="l:2", tls_name=None, handler=slow, idle_timeout=1.0
    )
    await theirs.send_all(OPTIONS)
    reason = await connection.run()
    assert finished == [5.0]
    assert reason == "idle for 1 s"
    assert trio.current_time() == 6.0


class AlertOnSend(trio.abc.Stream):
    """A stream whose peer sends `incoming` then waits, and refuses every send with an alert."""

    def __init__(self, incoming: bytes) -> None:
        self.incoming = incoming
        self.closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        raise BrokenByTlsAlert("the peer sent TLS alert 'certificate required'")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data, self.incoming = self.incoming, b""
        if data:
            await trio.lowlevel.checkpoint()
            return data
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


def alert_connection(incoming: bytes) -> SipConnection:
    return SipConnection(
        AlertOnSend(incoming),
        peer="127.0.0.1:5061",
        local="127.0.0.1:40000",
        tls_name="example.test",
        handler=pair([])[0]._handler,
    )


@pytest.mark.parametrize("incoming", [b"\r\n\r\n", OPTIONS], ids=["pong", "response"])
async def test_tls_alert_while_answering_ends_only_the_connection(incoming: bytes) -> None:
    # Regression: the alert escaped run() as a TlsError and ended the process.
    connection = alert_connection(incoming)
    with trio.fail_after(5):
        reason = await connection.run()
    assert "certificate required" in reason
    assert isinstance(connection.closed_error, TlsAlertReceived)
    with pytest.raises(ConnectionLost) as info:
        await connection.send_ping()
    assert isinstance(info.value.__cause__, TlsAlertReceived)


async def test_tls_alert_on_a_keepalive_ping_ends_only_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    connection = alert_connection(b"")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        with pytest.raises(ConnectionLost):
            await connection.send_ping()
        with trio.fail_after(60):
            await connection.closed.wait()  # and the reader ends with it
    assert connection.closed_reason is not None
    assert "certificate required" in connection.closed_reason
    assert isinstance(connection.closed_error, TlsAlertReceived)


def asked_for_certificate(stream: trio.abc.Stream) -> SipConnection:
    return SipConnection(
        stream,
        peer="127.0.0.1:5061",
        local="127.0.0.1:40000",
        tls_name="example.test",
        handler=pair([])[0]._handler,
        certificate_requested=True,
    )


async def test_close_before_any_answer_after_a_certificate_request_is_a_refusal() -> None:
    # pjsip under TLS 1.3: it asked for our certificate, refused it after our handshake was
    # done, and closed without an alert. That is a TLS failure (exit 3), not a lost network.
    ours, theirs = trio.testing.memory_stream_pair()
    connection = asked_for_certificate(ours)
    assert connection.awaiting_acceptance
    await theirs.aclose()
    with trio.fail_after(5):
        reason = await connection.run()
    assert reason == "closed by peer"
    error = connection.closed_error
    assert isinstance(error, ClientCertificateRefused)
    assert error.exit_code == EXIT_TLS
    assert "probably refused" in str(error)
    assert "sipua cert export-ca" in str(error)


async def test_send_failing_before_any_answer_after_a_certificate_request_is_a_refusal() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    connection = asked_for_certificate(ours)
    await theirs.aclose()
    with pytest.raises(ConnectionLost) as info:
        await connection.send_ping()
    assert isinstance(info.value.__cause__, trio.BrokenResourceError)
    assert isinstance(connection.closed_error, ClientCertificateRefused)


async def test_close_after_the_first_answer_is_only_a_lost_connection() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    connection = asked_for_certificate(ours)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        await theirs.send_all(OPTIONS)
        await read_until(theirs, b"\r\n\r\n")
        assert not connection.awaiting_acceptance
        await theirs.aclose()
        with trio.fail_after(5):
            await connection.closed.wait()
    assert connection.closed_reason == "closed by peer"
    assert connection.closed_error is None


async def test_an_alert_beats_the_probable_refusal() -> None:
    # The peer said why (Kamailio sends "unknown ca"): keep its alert, it says more.
    connection = SipConnection(
        AlertOnSend(b""),
        peer="127.0.0.1:5061",
        local="127.0.0.1:40000",
        tls_name="example.test",
        handler=pair([])[0]._handler,
        certificate_requested=True,
    )
    with pytest.raises(ConnectionLost):
        await connection.send_ping()
    assert isinstance(connection.closed_error, TlsAlertReceived)
    assert not isinstance(connection.closed_error, ClientCertificateRefused)


async def test_no_certificate_request_means_a_close_is_only_a_lost_connection() -> None:
    log: list[Request | Response] = []
    connection, peer, _ = pair(log)
    assert not connection.awaiting_acceptance
    await peer.aclose()
    with trio.fail_after(5):
        await connection.run()
    assert connection.closed_error is None


async def test_a_peer_that_pings_and_never_reads_is_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Regression: the pong was sent inline without a bound, so once the peer's window was full
    # the reader blocked in send_all for ever and the idle timeout (around the receive only)
    # never fired: the peer kept its connection and its admission slot.
    ours, theirs = trio.testing.lockstep_stream_pair()  # a send waits for the peer to read
    connection = SipConnection(
        ours,
        peer="p:1",
        local="l:2",
        tls_name=None,
        handler=pair([])[0]._handler,
        idle_timeout=30.0,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(theirs.send_all, PING_BYTES)  # then never reads
        with trio.fail_after(60):
            reason = await connection.run()
        nursery.cancel_scope.cancel()
    assert reason == f"peer does not read: a send stayed blocked for {SEND_STALL_SECONDS:g} s"
    assert trio.current_time() == pytest.approx(SEND_STALL_SECONDS)
    with pytest.raises(ConnectionLost, match="peer does not read"):
        await connection.send_ping()


async def test_a_send_the_peer_does_not_take_closes_the_connection_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, _theirs = trio.testing.lockstep_stream_pair()
    connection = SipConnection(
        ours, peer="p:1", local="l:2", tls_name=None, handler=pair([])[0]._handler
    )
    failures: list[str] = []

    async def ping() -> None:
        try:
            await connection.send_ping()
        except ConnectionLost as exc:
            failures.append(str(exc))

    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.run)
            for _ in range(3):  # the second and third wait behind the first
                nursery.start_soon(ping)
            with trio.fail_after(60):
                await connection.closed.wait()
    assert len(failures) == 3
    assert trio.current_time() == pytest.approx(SEND_STALL_SECONDS)
    assert connection.closed_reason is not None
    assert connection.closed_reason.startswith("peer does not read")
    assert [log["event"] for log in logs].count("connection-not-reading") == 1


async def test_no_idle_timeout_while_the_connection_is_in_use(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A call without session timers sends no SIP: while the endpoint says the connection
    # carries one, the idle timeout does not run; once it no longer does, a full period starts.
    connection, _peer, _ = pair([], idle_timeout=1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        await trio.sleep(0.5)
        connection.set_in_use(True)  # while the reader waits for bytes
        assert connection.in_use
        await trio.sleep(600.0)
        assert connection.is_open
        connection.set_in_use(False)
        released = trio.current_time()
        with trio.fail_after(10):
            await connection.closed.wait()
        assert trio.current_time() == pytest.approx(released + 1.0)
    assert connection.closed_reason == "idle for 1 s"
