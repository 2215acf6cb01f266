from __future__ import annotations

import pytest

from sipua.sip import ParseError, Request, Response, parse_message
from sipua.sip.parser import MAX_HEADER_COUNT
from tests.support.messages import OK_BYTES, REGISTER_BYTES

BASE = (
    b"OPTIONS sip:bob@example.org SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS h;branch=z9hG4bK1\r\n"
    b"From: <sip:a@b>;tag=1\r\n"
    b"To: <sip:bob@example.org>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
)


def test_leading_crlfs_are_skipped() -> None:
    msg = parse_message(b"\r\n\r\n" + REGISTER_BYTES)
    assert isinstance(msg, Request)
    assert msg.method == "REGISTER"


def test_folding_and_odd_spacing() -> None:
    msg = parse_message(BASE + b"Subject :  a\r\n  b \r\nContent-Length: 0\r\n\r\n")
    assert msg.headers.get("Subject") == "a b"


def test_body_by_content_length_or_to_the_end() -> None:
    assert parse_message(BASE + b"Content-Length: 3\r\n\r\nabcdef").body == b"abc"
    assert parse_message(BASE + b"\r\nabcdef").body == b"abcdef"


def test_response_with_empty_reason() -> None:
    msg = parse_message(OK_BYTES.replace(b"200 OK", b"100 "))
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (100, "")


@pytest.mark.parametrize(
    ("data", "status", "match"),
    [
        (BASE.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1) + b"\r\n", 505, "version"),
        (BASE + b"Bad line\r\n\r\n", 400, "malformed header line"),
        (BASE + b"X: a\nY: b\r\n\r\n", 400, "malformed header line"),
        (BASE + b"Content-Length: 10\r\n\r\nabc", 400, "larger"),
        (BASE + b"Content-Length: 1\r\nl: 2\r\n\r\nab", 400, "conflicting"),
        (BASE + b"Call-ID: c2\r\n\r\n", 400, "appears 2 times"),
        (BASE.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE") + b"\r\n", 400, "does not match"),
        (BASE + b"Max-Forwards: 256\r\n\r\n", 400, "out of range"),
        (BASE + b"Date: Fri, 01 Jan 2010 16:00:00 EST\r\n\r\n", 400, "Date"),
        (BASE, 400, "no empty line"),
        (b"SIP/2.0 1000 OK\r\n" + BASE.split(b"\r\n", 1)[1] + b"\r\n", 400, "status code"),
        (
            BASE + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADER_COUNT)) + b"\r\n",
            400,
            "limit",
        ),
    ],
)
def test_rejections(data: bytes, status: int, match: str) -> None:
    with pytest.raises(ParseError, match=match) as info:
        parse_message(data)
    assert info.value.status_hint == status


def test_missing_mandatory_header() -> None:
    with pytest.raises(ParseError, match="missing CSeq"):
        parse_message(BASE.replace(b"CSeq: 1 OPTIONS\r\n", b"") + b"\r\n")
