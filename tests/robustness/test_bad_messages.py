"""Malformed and abusive SIP on one connection: clear error responses, the connection lives.

`sipua.sip.rejection` recovers Via, From, To, Call-ID and CSeq from a request the parser
refuses; `SipConnection` answers it with the parser's status hint and a Warning, and only a
framing error (the stream cannot be resynchronised) closes the connection (RFC 3261 §18.3).
"""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing

from sipua.sip import Request, Response, make_response, parse_message, serialize
from sipua.sip.errors import ParseError
from sipua.sip.rejection import (
    MAX_HEAD_BYTES,
    MAX_RECOVERED_VIAS,
    MAX_WARNING_CHARS,
    error_response,
    unreadable_response_key,
    warning,
)
from sipua.transport.connection import SipConnection

OPTIONS = (
    b"OPTIONS sips:alice@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK1\r\n"
    b"From: <sips:bob@example.test>;tag=1\r\nTo: <sips:alice@example.test>\r\nCall-ID: c\r\n"
    b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def refused(data: bytes) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_message(data)
    return info.value


@pytest.mark.parametrize(
    ("bad", "status", "words"),
    [
        (OPTIONS.replace(b" SIP/2.0\r\nVia", b" SIP/3.0\r\nVia"), 505, "SIP/3.0"),
        (OPTIONS.replace(b"sips:alice@127.0.0.1", b"sips:@@@"), 400, "URI"),
        (
            OPTIONS.replace(b"Content-Length: 0", b"Max-Forwards: many\r\nContent-Length: 0"),
            400,
            "Max-Forwards",
        ),
        (
            OPTIONS.replace(b" SIP/2.0\r\nVia:", b" SIP/3.0\r\nv:").replace(b"Call-ID:", b"i:"),
            505,
            "SIP/3.0",
        ),
    ],
    ids=["version", "uri", "max-forwards", "compact-forms"],
)
def test_error_response_names_the_problem(bad: bytes, status: int, words: str) -> None:
    error = refused(bad)
    assert error.status_hint == status
    response = error_response(bad, error.status_hint, str(error), to_tag="t1")
    assert response is not None
    assert response.status == status
    assert response.headers.get("Call-ID") == "c"
    assert response.cseq.method == "OPTIONS"
    assert response.top_via.branch == "z9hG4bK1"
    assert response.to.tag == "t1"
    assert words in (response.headers.get("Warning") or "")


@pytest.mark.parametrize(
    ("bad", "copied"),
    [
        (
            OPTIONS.replace(b"Via: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK1", b"Via: garbage"),
            ("Via", "garbage"),
        ),
        (
            OPTIONS.replace(b"From: <sips:bob@example.test>;tag=1", b'From: "open <x>'),
            ("From", '"open <x>'),
        ),
        (OPTIONS.replace(b"Call-ID: c\r\n", b""), ("CSeq", "1 OPTIONS")),
        (OPTIONS.replace(b"OPTIONS sips", b"N\x00PE sips"), ("Call-ID", "c")),
    ],
    ids=["bad-via", "bad-from", "no-call-id", "odd-method"],
)
def test_garbled_fields_are_copied_verbatim(bad: bytes, copied: tuple[str, str]) -> None:
    # Over a stream the answer goes back on the request's connection (RFC 3261 §18.2.2), so
    # a field that does not parse is no reason to stay silent: it is copied as it came.
    response = error_response(bad, 400, "x", to_tag="t")
    assert response is not None
    assert response.status == 400
    name, value = copied
    assert response.headers.get(name) == value
    assert response.headers.get("To") == "<sips:alice@example.test>;tag=t"
    wire = serialize(response)
    assert wire.startswith(b"SIP/2.0 400 Bad Request\r\n")
    assert wire.endswith(b"Content-Length: 0\r\n\r\n")


def test_a_bare_line_break_in_a_copied_field_cannot_start_a_new_one() -> None:
    bad = OPTIONS.replace(b"Call-ID: c", b"Call-ID: c\nInjected: yes").replace(
        b"SIP/2.0\r", b"SIP/9\r", 1
    )
    response = error_response(bad, 505, "x", to_tag="t")
    assert response is not None
    assert b"\r\nInjected" not in serialize(response)
    assert b"\nInjected" not in serialize(response)


@pytest.mark.parametrize(
    "bad",
    [
        OPTIONS.replace(b"OPTIONS sips", b"ACK sips").replace(b"1 OPTIONS", b"1 ACK"),
        OPTIONS.replace(b"1 OPTIONS", b"1 ACK"),
        b"\x00\xff\xfe binary junk\r\nContent-Length: 0\r\n\r\n",
        b"SIP/2.0 999 Nonsense\r\n" + OPTIONS.split(b"\r\n", 1)[1],
        OPTIONS.replace(b"CSeq: 1 OPTIONS\r\n", b""),
    ],
    ids=["ack", "ack-by-cseq", "junk", "bad-response", "no-cseq"],
)
def test_no_response_when_nothing_valid_can_answer(bad: bytes) -> None:
    assert error_response(bad, 400, "x", to_tag="t") is None


def test_a_flood_of_vias_cannot_crowd_out_the_fields_that_match_the_answer() -> None:
    # RFC 3261 §8.2.6.2: From, To, Call-ID and CSeq are copied whatever the Vias before them.
    def flood(count: int) -> bytes:
        vias = b"".join(
            b"Via: SIP/2.0/TLS 127.0.0.%d;branch=z9hG4bK%d\r\n" % (i % 250, i) for i in range(count)
        )
        return OPTIONS.replace(b"Via: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK1\r\n", vias)

    # Past the examined head, CSeq is out of sight: no answer rather than an unmatched one.
    assert len(flood(5000)) > MAX_HEAD_BYTES
    assert error_response(flood(5000), 513, "too large", to_tag="t") is None
    assert len(flood(300)) < MAX_HEAD_BYTES
    response = error_response(flood(300), 400, "too many Vias", to_tag="t")
    assert response is not None
    names = [name for name, _ in response.headers]
    assert names.count("Via") == MAX_RECOVERED_VIAS
    assert response.headers.get("Via") == "SIP/2.0/TLS 127.0.0.0;branch=z9hG4bK0"
    for single in ("From", "To", "Call-ID", "CSeq"):
        assert names.count(single) == 1, single
    assert response.headers.get("To") == "<sips:alice@example.test>;tag=t"


def test_warning_is_printable_quoted_and_bounded() -> None:
    value = warning('evil "quote" \\ \r\nInjected: yes\x00' + "é" * 500)
    assert "\r" not in value
    assert "\n" not in value
    assert value.startswith('399 sipua "')
    assert value.endswith('"')
    assert '\\"quote\\"' in value
    assert len(value) <= MAX_WARNING_CHARS * 2 + 20
    assert all(" " <= ch <= "~" for ch in value)


def connection_pair(
    log: list[Request | Response], *, idle_timeout: float | None = None
) -> tuple[SipConnection, trio.abc.Stream]:
    ours, theirs = trio.testing.memory_stream_pair()

    async def handler(connection: SipConnection, message: Request | Response) -> None:
        log.append(message)
        if isinstance(message, Request):
            await connection.send(make_response(message, 200, to_tag="t"))

    connection = SipConnection(
        ours,
        peer="127.0.0.1:5061",
        local="127.0.0.1:40000",
        tls_name=None,
        handler=handler,
        idle_timeout=idle_timeout,
    )
    return connection, theirs


async def read_responses(stream: trio.abc.Stream, count: int) -> list[Response]:
    data = b""
    with trio.fail_after(5):
        while data.count(b"\r\n\r\n") < count:
            data += await stream.receive_some(65536)
    messages = [parse_message(part + b"\r\n\r\n") for part in data.split(b"\r\n\r\n")[:count]]
    assert all(isinstance(m, Response) for m in messages)
    return [m for m in messages if isinstance(m, Response)]


async def test_malformed_request_gets_400_and_the_connection_serves_the_next() -> None:
    log: list[Request | Response] = []
    connection, peer = connection_pair(log)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        await peer.send_all(OPTIONS.replace(b"sips:alice@127.0.0.1", b"sips:@@@"))
        await peer.send_all(OPTIONS.replace(b" SIP/2.0\r\nVia", b" SIP/7.0\r\nVia"))
        await peer.send_all(OPTIONS)
        bad, version, good = await read_responses(peer, 3)
        assert bad.status == 400
        assert "URI" in (bad.headers.get("Warning") or "")
        assert version.status == 505
        assert good.status == 200
        assert connection.dropped_messages == 2
        assert connection.error_responses == 2
        assert connection.is_open
        assert len(log) == 1  # the handler saw only the good request
        nursery.cancel_scope.cancel()


async def test_malformed_response_is_dropped_silently() -> None:
    log: list[Request | Response] = []
    connection, peer = connection_pair(log)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        await peer.send_all(b"SIP/2.0 999 Nonsense\r\n" + OPTIONS.split(b"\r\n", 1)[1])
        await peer.send_all(OPTIONS)
        [good] = await read_responses(peer, 1)
        assert good.status == 200
        assert connection.dropped_messages == 1
        assert connection.error_responses == 0
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (OPTIONS.replace(b"Content-Length: 0\r\n", b""), 400, "no Content-Length"),
        (OPTIONS.replace(b"Content-Length: 0", b"Content-Length: -5"), 400, "non-negative"),
        (
            OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 3"),
            400,
            "conflicting",
        ),
        (OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 999999999"), 513, "exceeds"),
    ],
    ids=["missing", "negative", "conflicting", "oversized"],
)
async def test_framing_error_is_answered_then_the_connection_closes(
    data: bytes, status: int, words: str
) -> None:
    connection, peer = connection_pair([])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        await peer.send_all(data)
        [response] = await read_responses(peer, 1)
        assert response.status == status
        assert words in (response.headers.get("Warning") or "")
        with trio.fail_after(5):
            await connection.closed.wait()
        assert connection.closed_reason is not None
        assert connection.closed_reason.startswith("framing error")
        nursery.cancel_scope.cancel()


async def test_endless_header_block_closes_without_answer() -> None:
    connection, peer = connection_pair([])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        with trio.fail_after(10):
            while connection.is_open:
                await peer.send_all(b"X-Filler: " + b"a" * 4000 + b"\r\n")
                await trio.lowlevel.checkpoint()
        assert connection.closed_reason is not None
        assert "exceeds" in connection.closed_reason
        nursery.cancel_scope.cancel()


async def test_lying_content_length_swallows_then_idles_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Content-Length larger than the body: the framer waits for bytes that never come; the
    # idle timeout ends the connection instead of holding it forever.
    log: list[Request | Response] = []
    connection, peer = connection_pair(log, idle_timeout=30.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        await peer.send_all(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 40"))
        with trio.fail_after(60):
            await connection.closed.wait()
        assert connection.closed_reason == "idle for 30 s"
        assert log == []
        nursery.cancel_scope.cancel()


async def test_short_content_length_leaves_garbage_that_is_not_delivered() -> None:
    # Content-Length smaller than the body: the tail is framed as the next "message", which
    # has no Content-Length, so the connection is closed rather than misreading the stream.
    log: list[Request | Response] = []
    connection, peer = connection_pair(log)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.run)
        body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n\r\n"
        lying = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 4") + body
        await peer.send_all(lying)
        with trio.fail_after(5):
            await connection.closed.wait()
        assert connection.closed_reason is not None
        assert connection.closed_reason.startswith("framing error")
        assert len(log) == 1  # the first 4 bytes of body made one (odd) message
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("call_id", ["two words", "a@b@c", "caf\u00e9"])
def test_invalid_call_id_is_a_400(call_id: str) -> None:
    error = refused(OPTIONS.replace(b"Call-ID: c", f"Call-ID: {call_id}".encode()))
    assert error.status_hint == 400
    assert "Call-ID" in str(error)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS h;branch=z9hG4bKa;rport\r\nCSeq: 2 REGISTER\r\n\r\n",
         ("z9hG4bKa", "REGISTER")),
        (b"SIP/2.0 200 OK\r\nv: SIP/2.0/TLS h ; BRANCH = z9hG4bKb, SIP/2.0/TLS p;branch=z9hG4bKp"
         b"\r\nCSeq: 9 INVITE\r\n\r\n", ("z9hG4bKb", "INVITE")),
        (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS h\r\nCSeq: 2 REGISTER\r\n\r\n", None),
        (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS h;branch=z9hG4bKa\r\n\r\n", None),
        (OPTIONS, None),  # a request: answered, not matched
        (b"\x00\xff junk\r\n\r\n", None),
    ],
)  # fmt: skip
def test_an_unreadable_response_names_the_transaction_it_answers(
    data: bytes, key: tuple[str, str] | None
) -> None:
    assert unreadable_response_key(data) == key
