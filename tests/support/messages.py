"""Canned SIP messages for tests: wire bytes and builders.

Every builder returns a fresh message, so tests may mutate the headers freely.
"""

from __future__ import annotations

from sipua.sip import Headers, Request, Response, SipUri, parse_message

SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0\r\n"
)

REGISTER_BYTES = (
    b"REGISTER sips:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sips:alice@example.com>;tag=1928301774\r\n"
    b"To: <sips:alice@example.com>\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.10\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Contact: <sips:alice@192.0.2.10:5061;transport=tls>;expires=3600\r\n"
    b'Authorization: Digest username="alice", realm="example.com", '
    b'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="sips:example.com", '
    b'response="6629fae49393a05397450978507c4ef1", algorithm=MD5, qop=auth, nc=00000001, '
    b'cnonce="0a4f113b"\r\n'
    b"User-Agent: sipua/0.1\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

UNAUTHORIZED_BYTES = (
    b"SIP/2.0 401 Unauthorized\r\n"
    b"Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK776asdhds;rport=5061;received=192.0.2.10\r\n"
    b"From: <sips:alice@example.com>;tag=1928301774\r\n"
    b"To: <sips:alice@example.com>;tag=37GkEhwl6\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.10\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b'WWW-Authenticate: Digest realm="example.com", qop="auth", '
    b'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41", '
    b"algorithm=MD5\r\n"
    b"Server: Kamailio\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

INVITE_BYTES = (
    b"INVITE sips:bob@example.org SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS proxy2.example.org:5061;branch=z9hG4bK4b43c2ff8.1\r\n"
    b"Via: SIP/2.0/TLS proxy1.example.com:5061;branch=z9hG4bK776asdhds.1;received=192.0.2.1\r\n"
    b"Via: SIP/2.0/TLS [2001:db8::10]:5061;branch=z9hG4bKnashds8;rport=5061\r\n"
    b"Max-Forwards: 68\r\n"
    b'To: "Bob" <sips:bob@example.org>\r\n'
    b'From: "Alice" <sips:alice@example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66711@example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sips:alice@[2001:db8::10]:5061;transport=tls>\r\n"
    b"Record-Route: <sips:proxy2.example.org;lr>, <sips:proxy1.example.com;lr>\r\n"
    b"Supported: replaces, timer\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

OK_BYTES = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK776asdhds;rport=5061;received=192.0.2.10\r\n"
    b"From: <sips:alice@example.com>;tag=1928301774\r\n"
    b"To: <sips:alice@example.com>;tag=37GkEhwl6\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.10\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Contact: <sips:alice@192.0.2.10:5061;transport=tls>;expires=3600\r\n"
    b"Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

#: The benchmark mix: REGISTER with credentials, 401 challenge, INVITE with SDP, 200 OK.
MIX: tuple[bytes, ...] = (REGISTER_BYTES, UNAUTHORIZED_BYTES, INVITE_BYTES, OK_BYTES)


def request(
    method: str = "OPTIONS",
    uri: str = "sips:bob@example.org",
    *,
    branch: str = "z9hG4bK-test-1",
    call_id: str = "test-call-1@192.0.2.10",
    cseq: int = 1,
    from_tag: str = "ftag1",
    to_tag: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
) -> Request:
    """A minimal valid request (RFC 3261 §8.1.1 headers) with optional extra headers."""
    to = "<sips:bob@example.org>" + ("" if to_tag is None else f";tag={to_tag}")
    headers = Headers(
        [
            ("Via", f"SIP/2.0/TLS 192.0.2.10:5061;branch={branch}"),
            ("Max-Forwards", "70"),
            ("From", f"<sips:alice@example.com>;tag={from_tag}"),
            ("To", to),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            *extra,
        ]
    )
    return Request(method, SipUri.parse(uri), headers, body)


def response(status: int = 200, reason: str = "OK", *, method: str = "OPTIONS") -> Response:
    """A minimal valid response to `request(method)`."""
    headers = Headers(
        [
            ("Via", "SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK-test-1"),
            ("From", "<sips:alice@example.com>;tag=ftag1"),
            ("To", "<sips:bob@example.org>;tag=ttag1"),
            ("Call-ID", "test-call-1@192.0.2.10"),
            ("CSeq", f"1 {method}"),
        ]
    )
    return Response(status, reason, headers)


def parsed(data: bytes) -> Request | Response:
    """Parse canned bytes (shorthand for tests)."""
    return parse_message(data)
