"""Write the seed corpus of a fuzz target into a directory.

Usage: python scripts/fuzz/seeds.py TARGET DIR

Seeds come from the repository, never from the network: the RFC 4475 torture messages in
`tests/corpus/rfc4475/`, the canned messages of `tests/support/messages.py`, URIs, addresses and
challenges taken from those, and certificates and keys made on the spot with
`tests/support/certs.py`. The saved reproducers under `tests/robustness/corpus/TARGET/` are
added too, so a run starts from every known-interesting input.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sipua.media import dtmf, rtcp  # noqa: E402
from sipua.media.negotiation import answer_offer, make_offer  # noqa: E402
from sipua.media.rtp import RtpPacket, build_rtp  # noqa: E402
from sipua.media.sdp import build_offer  # noqa: E402
from sipua.sip import ParseError, Request, Response, parse_message  # noqa: E402 - after sys.path
from tests.support import certs, messages  # noqa: E402

RFC4475 = ROOT / "tests" / "corpus" / "rfc4475"
REPRODUCERS = ROOT / "tests" / "robustness" / "corpus"


def sip_messages() -> Iterator[bytes]:
    """RFC 4475 torture messages and the canned test messages."""
    for path in sorted(RFC4475.glob("*.dat")):
        yield path.read_bytes()
    yield from messages.MIX


def _parsed() -> Iterator[Request | Response]:
    for data in sip_messages():
        try:
            yield parse_message(data)
        except ParseError:
            continue


def stream_seeds() -> Iterator[bytes]:
    """Streams: each canned message, pipelined pairs, keepalives, under each framer cap."""
    mix = messages.MIX
    streams = [*mix, mix[0] + mix[1], b"\r\n\r\n" + mix[2] + b"\r\n" + mix[3], b"\r\n\r\n\r\n"]
    streams += [d for d in sip_messages() if b"Content-Length" in d or b"\r\nl:" in d]
    for index, stream in enumerate(streams):
        for cap_selector in (3, 4):
            yield bytes([cap_selector, index % 256, 7]) + stream


def uri_seeds() -> Iterator[bytes]:
    """Request-URIs and From/To/Contact/Via/Route values of every message that parses."""
    extra = [
        "sips:alice@[2001:db8::10]:5061;transport=tls",
        "sip:%61lice:pa%73s@example.com;maddr=239.255.255.1;ttl=15?subject=hi&priority=urgent",
        "tel:+1-201-555-0123;phone-context=example.com",
        '"Bell, Alexander" <sip:a.g.bell@bell-tel.com>;tag=43',
        "*",
    ]
    yield from (e.encode() for e in extra)
    for msg in _parsed():
        if isinstance(msg, Request):
            yield str(msg.uri).encode("utf-8", "surrogateescape")
        for name in ("From", "To", "Contact", "Via", "Route", "Record-Route"):
            for value in msg.headers.get_fields(name):
                yield value.encode("utf-8", "surrogateescape")


def digest_seeds() -> Iterator[bytes]:
    """Challenges and credentials from the canned messages, and the RFC 7616/8760 variants."""
    challenges = [
        'Digest realm="example.com", nonce="abc", qop="auth,auth-int", algorithm=SHA-256',
        'Digest realm="example.com", nonce="abc", algorithm=MD5-sess, stale=TRUE, opaque=""',
        'Digest realm="a\\"b", nonce="n\\\\", qop="auth-int", algorithm=SHA-512-256-sess',
        'Digest realm="r", nonce="n", domain="sips:a.example.com sips:b.example.com"',
        "Negotiate YII=",
        'Digest realm="r", nonce="n", algorithm=AKAv1-MD5',
    ]
    for msg in _parsed():
        for name in ("WWW-Authenticate", "Proxy-Authenticate", "Authorization"):
            challenges += msg.headers.get_fields(name)
    for challenge in challenges:
        yield challenge.encode("utf-8", "surrogateescape")
        yield (challenge + "\x00sips:bob@example.org;transport=tls").encode()


def certificate_seeds() -> Iterator[bytes]:
    """PEM and DER certificates, a bundle, keys (plain and encrypted), made now."""
    ca = certs.make_ca()
    leaf = certs.make_leaf(ca, dns=["sip.example.com"], uris=["sip:example.com"], ips=["::1"])
    no_san = certs.make_leaf(ca, san=False, key_kind="rsa-2048", critical_unknown=True)
    yield from (ca.pem, ca.der, leaf.pem, leaf.der, no_san.der, certs.pem_bundle(ca, leaf))
    yield leaf.key_pem
    yield leaf.encrypted_key_pem(b"fuzz")
    yield b"\x00" + ca.pem


def sdp_seeds() -> Iterator[bytes]:
    """The SDP bodies of the canned and RFC 4475 messages, our own offer, and edge cases."""
    for msg in _parsed():
        if msg.body.startswith(b"v=0"):
            yield msg.body
    yield build_offer(address="192.0.2.1", port=4000, session_id=1)
    yield b"v=0\r\nc=IN IP6 ::1\r\nm=audio 5000/2 RTP/AVP 0 101\r\na=sendonly\r\n"
    yield b"v=0\nm=audio 5000 RTP/AVP 8\na=rtpmap:8 PCMA/8000\nm=video 0 RTP/AVP 31\n"
    yield from _srtp_sdp()


def _srtp_sdp() -> Iterator[bytes]:
    """Offers and answers with SDES crypto lines (fixed keys, not secrets)."""
    for policy in ("optional", "compulsory"):
        offer = make_offer(
            policy=policy,  # type: ignore[arg-type]
            signalling_secure=True,
            address="192.0.2.1",
            port=4000,
            session_id=1,
            random_bytes=bytes,
        )
        yield offer.body
        yield answer_offer(
            offer.body,
            policy=policy,  # type: ignore[arg-type]
            signalling_secure=True,
            address="192.0.2.2",
            port=5000,
            session_id=2,
            random_bytes=bytes,
        )[0]
    yield (
        b"v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 4000 RTP/SAVP 8 101\r\na=rtcp-mux\r\n"
        b"a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:" + b"QUJD" * 10 + b"|2^31|1:4\r\n"
        b"a=crypto:2 AEAD_AES_128_GCM inline:" + b"QUJD" * 10 + b"\r\n"
        b"a=crypto:3 F8_128_HMAC_SHA1_80 inline:QUJD UNENCRYPTED_SRTP\r\n"
    )


def rtp_seeds() -> Iterator[bytes]:
    """RTP, RFC 4733 and RTCP packets, plain (selector 255) and for each SRTP suite."""
    packets = [
        build_rtp(RtpPacket(0, 65535, 160, 1, b"\xff" * 160, marker=True)),
        build_rtp(RtpPacket(8, 1, 2, 3, b"\xd5" * 20, csrcs=(4, 5), extension=(0xBEDE, b"1234"))),
        build_rtp(RtpPacket(101, 7, 8, 9, dtmf.event_payloads("5")[0].payload)),
        build_rtp(RtpPacket(0, 1, 2, 3, b"ab"))[:-2] + b"\x00\x02",
        rtcp.build_report(
            ssrc=1,
            cname="sipua",
            sender=rtcp.SenderInfo(1, 2, 3, 4),
            block=rtcp.ReportBlock(5, 6, -7, 8, 9, 10, 11),
        ),
    ]
    for selector in (0, 1, 2, 3, 255):
        for packet in packets:
            yield bytes([selector]) + packet


def sdp_crypto_seeds() -> Iterator[bytes]:
    """Every SDP seed under each policy, TLS flag and direction (offer or answer)."""
    bodies = list(sdp_seeds())
    for selector in (0, 1, 2, 4, 5, 6, 12, 13, 14):
        for body in bodies:
            yield bytes([selector]) + body


def _call_message(
    method: str, *, branch: str, cseq: int = 1, to_tag: str = "", body: bytes = b""
) -> bytes:
    to = "<sips:alice@example.test>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} sips:alice@127.0.0.1:5061 SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 127.0.0.2:5061;branch=z9hG4bK{branch}\r\n"
        "Max-Forwards: 70\r\nFrom: <sips:bob@example.test>;tag=b1\r\n"
        f"To: {to}\r\nCall-ID: seed-call\r\nCSeq: {cseq} {method}\r\n"
        "Contact: <sips:bob@127.0.0.2:5061>\r\n"
        + ("Content-Type: application/sdp\r\n" if body else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def endpoint_seeds() -> Iterator[bytes]:
    """Call flows (ring, answer, ACK, BYE; CANCEL; retransmissions) and the canned messages."""
    from oracles import ENDPOINT_SEPARATOR

    offer = build_offer(address="127.0.0.2", port=40000, session_id=1)
    invite = _call_message("INVITE", branch="i1", body=offer)
    flows = [
        [(0, invite), (8, _call_message("ACK", branch="a1", to_tag="x")), (16, invite)],
        [(0, invite), (1, _call_message("CANCEL", branch="i1")), (40, invite)],
        [(0, invite), (3, invite), (2, _call_message("INVITE", branch="i2", body=offer))],
        [(0, invite), (9, _call_message("BYE", branch="b1", cseq=2, to_tag="x"))],
        [(selector, message) for selector, message in enumerate(messages.MIX)],
    ]
    for flow in flows:
        yield ENDPOINT_SEPARATOR.join(bytes([selector]) + message for selector, message in flow)


def http_response_seeds() -> Iterator[bytes]:
    """Answers a provisioning server gives: a file, chunked, an error, a redirect, garbage."""
    pem = certs.make_ca().pem
    yield b"\x07\x00\x01HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(pem) + pem
    yield (
        b"\x07\x01\x02HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    yield b"\x00\x00\x03HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    yield b"\x03\x00\x04HTTP/1.1 302 Found\r\nLocation: http://x/\r\n\r\n"
    yield b"\x01\x00\x05HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nbody"


def provisioned_file_seeds() -> Iterator[bytes]:
    """Trusted bundles (PEM, DER) and device bundles (key, leaf, chain), made now."""
    ca = certs.make_ca()
    leaf = certs.make_leaf(ca, dns=["sip.example.com"])
    other = certs.make_leaf(ca, cn="other")
    yield b"\x00" + certs.pem_bundle(ca, leaf)
    yield b"\x00" + ca.der
    yield b"\x01" + leaf.key_pem + leaf.pem + ca.pem
    yield b"\x01" + other.key_pem + leaf.pem
    yield b"\x00" + leaf.key_pem + leaf.pem


def known_keys_seeds() -> Iterator[bytes]:
    """A known-keys file as sipua writes it, and near misses."""
    pin = b"sha256/" + b"A" * 43 + b"="
    yield b"# sipua known registrar keys\nexample.test " + pin + b"\n[2001:db8::1] " + pin + b"\n"
    yield b"example.test sha256/short=\n"
    yield b"example.test " + pin + b"\nEXAMPLE.test " + pin + b"\n"


def phone_config_seeds() -> Iterator[bytes]:
    """Phone provisioning files: security and account keys, quoted values, near misses."""
    yield (
        b"#!version:1.0.0.1\nstatic.security.trust_certificates = 1\n"
        b"static.security.cn_validation = 0\nstatic.trusted_certificates.url = https://p/ca.pem\n"
        b"static.trusted_certificates.delete = http://localhost/all\n"
        b"account.1.user_name = 100\naccount.1.password = secret1\n"
        b'account.1.label = "Front desk"\naccount.1.sip_server.1.address = pbx.example.test\n'
        b"account.1.sip_server.1.port = 5061\naccount.1.sip_server.1.transport_type = 2\n"
    )
    yield b"#!version:1.0.0.1\naccount.2.user_name = 2\naccount.2.sip_server.1.address = h\n"
    yield b"#!version:1.0.0.1\nstatic.security.ca_cert = 1\nlocal_time.time_zone = +1\n"
    yield b"account.1.enable = 1\n"


SEEDS = {
    "parse_message": sip_messages,
    "stream_framer": stream_seeds,
    "sip_uri": uri_seeds,
    "digest_challenge": digest_seeds,
    "certificates": certificate_seeds,
    "sdp_offer": sdp_seeds,
    "endpoint": endpoint_seeds,
    "rtp_packet": rtp_seeds,
    "sdp_crypto": sdp_crypto_seeds,
    "http_response": http_response_seeds,
    "provisioned_files": provisioned_file_seeds,
    "known_keys": known_keys_seeds,
    "phone_config": phone_config_seeds,
}


def main() -> None:
    target, directory = sys.argv[1], Path(sys.argv[2])
    directory.mkdir(parents=True, exist_ok=True)
    items = list(SEEDS[target]())
    saved = REPRODUCERS / target
    if saved.is_dir():
        items += [p.read_bytes() for p in sorted(saved.iterdir()) if p.is_file()]
    for data in items:
        (directory / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)
    print(f"{target}: {len(items)} seeds in {directory}")


if __name__ == "__main__":
    main()
