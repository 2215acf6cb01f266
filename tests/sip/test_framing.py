from __future__ import annotations

import pytest

from sipua.sip import (
    NEED_DATA,
    FramingError,
    KeepalivePing,
    KeepalivePong,
    MessageFramed,
    StreamFramer,
)
from tests.support.messages import INVITE_BYTES, MIX, REGISTER_BYTES


def _drain(framer: StreamFramer) -> list[object]:
    events: list[object] = []
    for _ in range(100):
        event = framer.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
    raise AssertionError("framer never asked for data")


def test_messages_and_keepalives_in_one_read() -> None:
    framer = StreamFramer()
    framer.receive_data(b"\r\n\r\n" + REGISTER_BYTES + b"\r\n" + INVITE_BYTES)
    assert _drain(framer) == [
        KeepalivePing(),
        MessageFramed(REGISTER_BYTES),
        KeepalivePong(),
        MessageFramed(INVITE_BYTES),
    ]


def test_byte_at_a_time() -> None:
    framer = StreamFramer()
    stream = b"".join(MIX)
    events: list[object] = []
    for i in range(len(stream)):
        framer.receive_data(stream[i : i + 1])
        events += _drain(framer)
    assert events == [MessageFramed(m) for m in MIX]
    framer.receive_data(None)
    assert framer.next_event() is NEED_DATA


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n", "no Content-Length"),
        (b"OPTIONS sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n", "not a non-negative"),
        (b"OPTIONS sip:a SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab", "conflicting"),
        (b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 99999999\r\n\r\n", "exceeds"),
    ],
)
def test_framing_errors(data: bytes, match: str) -> None:
    framer = StreamFramer()
    framer.receive_data(data)
    with pytest.raises(FramingError, match=match):
        framer.next_event()


def test_oversized_header_block_and_eof_mid_message() -> None:
    framer = StreamFramer(max_message_bytes=1000)
    framer.receive_data(b"X" * 1001)
    with pytest.raises(FramingError, match="exceeds") as info:
        framer.next_event()
    assert info.value.status_hint == 513
    framer = StreamFramer()
    framer.receive_data(REGISTER_BYTES[:50])
    assert framer.next_event() is NEED_DATA
    framer.receive_data(None)
    with pytest.raises(FramingError, match="closed in the middle"):
        framer.next_event()
    with pytest.raises(FramingError, match="after EOF"):
        framer.receive_data(b"x")


def test_folded_content_length_is_found() -> None:
    framer = StreamFramer()
    data = b"OPTIONS sip:a SIP/2.0\r\nContent-Length:\r\n 3\r\n\r\nabc"
    framer.receive_data(data)
    assert framer.next_event() == MessageFramed(data)


def test_body_in_one_byte_pieces_reads_the_header_block_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Content-Length is read once per message, however small the body's pieces are.
    framer = StreamFramer()
    calls = []
    original = framer._content_length

    def counting(buffer: bytearray, head_end: int) -> int:
        calls.append(head_end)
        return original(buffer, head_end)

    monkeypatch.setattr(framer, "_content_length", counting)
    body = b"x" * 300
    message = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 300\r\n\r\n" + body
    events = []
    for i in range(len(message)):
        framer.receive_data(message[i : i + 1])
        while (event := framer.next_event()) is not NEED_DATA:
            events.append(event)
    assert events == [MessageFramed(message)]
    assert len(calls) == 1
