from __future__ import annotations

import dataclasses

import pytest

from sipua.sip import Headers, ParseError, Request, Response, make_response, parse_message
from tests.support.messages import INVITE_BYTES, OK_BYTES, REGISTER_BYTES, request


def test_typed_accessors_on_invite() -> None:
    msg = parse_message(INVITE_BYTES)
    assert isinstance(msg, Request)
    assert [v.host for v in msg.vias] == [
        "proxy2.example.org",
        "proxy1.example.com",
        "[2001:db8::10]",
    ]
    assert msg.top_via.branch == "z9hG4bK4b43c2ff8.1"
    assert msg.from_.display_name == "Alice"
    assert msg.from_.tag == "1928301774"
    assert msg.to.tag is None
    assert msg.cseq.seq == 314159
    assert msg.call_id == "a84b4c76e66711@example.com"
    assert msg.max_forwards == 68
    assert msg.content_type == "application/sdp"
    assert [str(r.uri) for r in msg.record_routes] == [
        "sips:proxy2.example.org;lr",
        "sips:proxy1.example.com;lr",
    ]
    assert msg.routes == []
    assert msg.supported == ["replaces", "timer"]
    assert msg.require == []
    assert msg.contacts[0].uri.host == "[2001:db8::10]"  # type: ignore[union-attr]


def test_register_contact_expires_and_expires_headers() -> None:
    msg = parse_message(REGISTER_BYTES)
    assert msg.contacts[0].expires == 3600
    assert msg.expires is None
    assert msg.min_expires is None
    msg.headers.add("Min-Expires", "1800")
    assert msg.min_expires == 1800
    msg.headers.add("Expires", "soon")
    with pytest.raises(ParseError):
        _ = msg.expires


def test_accessors_see_header_changes() -> None:
    msg = request()
    assert msg.cseq.seq == 1
    msg.headers.set("CSeq", "2 OPTIONS")
    assert msg.cseq.seq == 2
    msg.headers.remove("Call-ID")
    with pytest.raises(ParseError, match="missing Call-ID"):
        _ = msg.call_id


def test_make_response_copies_rfc3261_8_2_6_2_headers() -> None:
    req = parse_message(INVITE_BYTES)
    assert isinstance(req, Request)
    resp = make_response(req, 180, to_tag="abc")
    assert resp.reason == "Ringing"
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.to.tag == "abc"
    assert resp.from_ == req.from_
    assert resp.call_id == req.call_id
    assert resp.cseq == req.cseq
    assert resp.body == b""
    assert make_response(req, 699).reason == "Global Failure"
    assert make_response(req, 486, "Busy").reason == "Busy"
    tagged = request(to_tag="keep")
    assert make_response(tagged, 200, to_tag="new").to.tag == "keep"
    with pytest.raises(ValueError):
        make_response(req, 700)


def test_equality_ignores_content_length_and_replace_works() -> None:
    a = request(body=b"hi")
    b = request(body=b"hi", extra=(("Content-Length", "2"),))
    assert a == b
    assert a != request(body=b"ho")
    c = dataclasses.replace(a, method="INFO")
    assert c.method == "INFO"
    assert a.method == "OPTIONS"


def test_response_fields() -> None:
    msg = parse_message(OK_BYTES)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (200, "OK")
    assert msg.to.tag == "37GkEhwl6"
    assert msg != Response(200, "OK", Headers())
