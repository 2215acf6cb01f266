from __future__ import annotations

from sipua.sip import Headers, Response, parse_message, serialize
from tests.support.messages import request


def test_exact_bytes_and_computed_content_length() -> None:
    msg = request("MESSAGE", body=b"hello")
    assert serialize(msg) == (
        b"MESSAGE sips:bob@example.org SIP/2.0\r\n"
        b"Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK-test-1\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sips:alice@example.com>;tag=ftag1\r\n"
        b"To: <sips:bob@example.org>\r\n"
        b"Call-ID: test-call-1@192.0.2.10\r\n"
        b"CSeq: 1 MESSAGE\r\n"
        b"Content-Length: 5\r\n"
        b"\r\n"
        b"hello"
    )


def test_stale_content_length_is_replaced_in_place() -> None:
    msg = Response(200, "OK", Headers([("l", "99"), ("X", "1"), ("Content-Length", "7")]))
    assert serialize(msg) == b"SIP/2.0 200 OK\r\nl: 0\r\nX: 1\r\n\r\n"


def test_utf8_and_raw_bytes_survive() -> None:
    raw = (
        b"SIP/2.0 200 \xe2\x9c\x93 \xff\r\nVia: SIP/2.0/TLS h;branch=z9hG4bKx\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n"
        b"X: caf\xc3\xa9 \xfe\r\nContent-Length: 0\r\n\r\n"
    )
    assert serialize(parse_message(raw)) == raw
