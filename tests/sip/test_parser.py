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


def test_folds_anywhere_are_undone() -> None:
    folded = BASE.replace(
        b"To: <sip:bob@example.org>", b"To:\r\n <sip:bob@example.org>\r\n\t;tag=x"
    )
    msg = parse_message(folded + b"Subject: a\r\n b\r\n\r\n")
    assert msg.to.tag == "x"
    assert msg.headers.get("To") == "<sip:bob@example.org> ;tag=x"
    assert msg.headers.get("Subject") == "a b"


def test_fold_right_after_the_start_line_joins_it() -> None:
    # RFC 3261 §7.3.1: the start line itself may not be folded; the join makes it malformed.
    with pytest.raises(ParseError, match="request line"):
        parse_message(BASE.replace(b"SIP/2.0\r\n", b"SIP/2.0\r\n x\r\n", 1) + b"\r\n")


def test_many_physical_lines_folded_into_few_are_within_the_limit() -> None:
    folds = b"".join(b"\r\n f%d" % i for i in range(MAX_HEADER_COUNT))
    msg = parse_message(BASE + b"Subject: s" + folds + b"\r\n\r\n")
    assert (msg.headers.get("Subject") or "").count(" f") == MAX_HEADER_COUNT


def test_names_with_space_before_the_colon_and_values_trimmed() -> None:
    msg = parse_message(BASE + b"X-A \t:\t  v  w \t\r\nX-B:\r\n\r\n")
    assert list(msg.headers)[-2:] == [("X-A", "v  w"), ("X-B", "")]


@pytest.mark.parametrize(
    "tail",
    [
        b"X: a\rb\r\n\r\n",  # bare CR
        b"X: a\r\n: b\r\n\r\n",  # no name
        b"X a\r\n\r\n",  # no colon
        b"X Y: a\r\n\r\n",  # name is not a token
        b"Via SIP/2.0/TLS h\r\n\r\n",  # a known name without its colon
    ],
)
def test_malformed_lines_are_rejected(tail: bytes) -> None:
    with pytest.raises(ParseError, match="malformed header line"):
        parse_message(BASE + tail)


def test_too_many_lines_reports_a_malformed_line_first() -> None:
    lines = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADER_COUNT)) + b"bad line\r\n"
    with pytest.raises(ParseError, match="malformed header line"):
        parse_message(BASE + lines + b"\r\n")


def test_unusual_spellings_take_the_general_path_with_the_same_result() -> None:
    usual = parse_message(REGISTER_BYTES)
    odd = parse_message(
        REGISTER_BYTES.replace(b"SIP/2.0/TLS", b"SIP / 2.0 / tls")
        .replace(b"<sips:alice@example.com>;tag", b"<SIPS:alice@example.com> ; TAG")
        .replace(b"Content-Length: 0", b"l: 000")
    )
    assert odd.vias == usual.vias
    assert odd.from_ == usual.from_
    assert odd.contacts == usual.contacts
    assert odd.body == usual.body == b""


def test_contacts_are_built_on_first_read_and_cached() -> None:
    msg = parse_message(REGISTER_BYTES)
    first = msg.contacts
    assert [str(c.uri) for c in first] == ["sips:alice@192.0.2.10:5061;transport=tls"]
    assert first[0].expires == 3600
    assert msg.contacts is first


@pytest.mark.parametrize(
    "contact",
    [b"<sip:a@h:99999>", b"<sip:a@[1::2::3]>", b"sip:a@h, ", b'"open <sip:a@h>'],
)
def test_bad_contacts_are_rejected_at_parse_time(contact: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(BASE + b"Contact: " + contact + b"\r\n\r\n")


def _reason(data: bytes) -> str:
    msg = parse_message(data)
    assert isinstance(msg, Response)
    return msg.reason


def test_responses_with_control_characters_in_the_reason_are_rejected() -> None:
    assert _reason(OK_BYTES.replace(b"200 OK", b"200 OK\tfine")) == "OK\tfine"
    assert _reason(OK_BYTES.replace(b"200 OK", "200 Größe".encode())) == "Größe"
    with pytest.raises(ParseError, match="control"):
        parse_message(OK_BYTES.replace(b"200 OK", b"200 O\x01K"))
