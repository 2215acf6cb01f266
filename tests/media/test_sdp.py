from __future__ import annotations

import re

import pytest

from sipua.media.sdp import SdpError, build_answer, build_offer, parse_offer

OFFER = (
    b"v=0\r\no=bob 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    b"m=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
)


def test_answer_picks_first_supported_codec_and_refuses_video() -> None:
    answer = build_answer(OFFER, address="127.0.0.1", port=4000, session_id=42)
    assert answer is not None
    lines = answer.decode().split("\r\n")
    assert lines[0] == "v=0"
    assert "o=sipua 42 1 IN IP4 127.0.0.1" in lines
    assert "c=IN IP4 127.0.0.1" in lines
    assert "m=audio 4000 RTP/AVP 8 101" in lines
    assert "a=rtpmap:8 PCMA/8000" in lines
    assert "a=fmtp:101 0-16" in lines
    assert "m=video 0 RTP/AVP 96" in lines  # same number of m= lines, refused (RFC 3264 §6)
    assert answer.endswith(b"\r\n")


def test_static_payload_without_rtpmap_and_ipv6() -> None:
    offer = b"v=0\r\nc=IN IP6 ::1\r\nm=audio 5000 RTP/AVP 0\r\n"
    answer = build_answer(offer, address="::1", port=4000, session_id=1)
    assert answer is not None
    assert b"c=IN IP6 ::1" in answer
    assert b"a=rtpmap:0 PCMU/8000" in answer


@pytest.mark.parametrize(
    "offer",
    [
        b"v=0\r\nm=audio 5000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
        b"v=0\r\nm=audio 5000 RTP/SAVP 0\r\n",
        b"v=0\r\nm=audio 0 RTP/AVP 0\r\n",
    ],
)
def test_no_acceptable_stream_gives_none(offer: bytes) -> None:
    assert build_answer(offer, address="127.0.0.1", port=4000, session_id=1) is None


@pytest.mark.parametrize(
    "offer",
    [
        b"",
        b"hello",
        b"v=0\r\nm=audio x RTP/AVP 0\r\n",
        b"v=0\r\n" + b"m=audio 1 RTP/AVP 0\r\n" * 17,
        b"\xff",
    ],
)
def test_bad_offers_raise(offer: bytes) -> None:
    with pytest.raises(SdpError):
        parse_offer(offer)


@pytest.mark.parametrize(
    ("offer", "words"),
    [
        ("v=0\r\nm=audio \u00b2000 RTP/AVP 0\r\n", "port '\u00b2000'"),
        ("v=0\r\nm=audio 70000 RTP/AVP 0\r\n", "not 0-65535"),
        ("v=0\r\nm=audio " + "9" * 4000 + " RTP/AVP 0\r\n", "not 0-65535"),
        ("v=0\r\nm=audio 5000/0 RTP/AVP 0\r\n", "port count"),
        ("v=0\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:\u0661 PCMU/8000\r\n", "payload type"),
        ("v=0\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n", "<encoding>/<rate>"),
        ("v=0\r\nc=IN IP4\r\nm=audio 5000 RTP/AVP 0\r\n", "c= line"),
        ("v=0\r\nhello\r\n", "'<letter>=<value>'"),
        ("v=0\r\n" + "a=x\r\n" * 600, "more than 512 lines"),
    ],
)
def test_bad_offers_name_what_is_wrong(offer: str, words: str) -> None:
    with pytest.raises(SdpError, match=re.escape(words)) as caught:
        parse_offer(offer.encode())
    assert len(str(caught.value)) < 300  # the offending line is quoted, bounded


def test_answer_mirrors_the_offered_direction() -> None:
    offer = b"v=0\r\na=sendonly\r\nm=audio 5000 RTP/AVP 0\r\n"
    answer = build_answer(offer, address="127.0.0.1", port=4000, session_id=1)
    assert answer is not None
    assert b"a=recvonly\r\n" in answer  # RFC 3264 §6.1


def test_our_offer_is_answerable_and_names_telephone_event() -> None:
    offer = build_offer(address="127.0.0.1", port=4000, session_id=3)
    assert b"m=audio 4000 RTP/AVP 0 8 101\r\n" in offer
    streams = parse_offer(offer)
    assert streams[0].rtpmap["101"] == "telephone-event/8000"
    assert build_answer(offer, address="127.0.0.2", port=4002, session_id=4) is not None


def test_crypto_rtcp_mux_ptime_and_addresses_are_read() -> None:
    offer = (
        b"v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 4000 RTP/SAVP 0\r\na=rtcp-mux\r\na=ptime:30\r\n"
        b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJD|2^20 UNENCRYPTED_SRTCP\r\n"
        b"m=audio 5000 RTP/AVP 0\r\nc=IN IP6 2001:db8::1\r\n"
    )
    first, second = parse_offer(offer)
    assert (first.address, second.address) == ("192.0.2.5", "2001:db8::1")
    assert first.rtcp_mux
    assert not second.rtcp_mux
    assert first.ptime == 30
    (crypto,) = first.crypto
    assert (crypto.tag, crypto.suite, crypto.key_params) == (
        1,
        "AES_CM_128_HMAC_SHA1_80",
        "inline:QUJD|2^20",
    )
    assert crypto.session_params == "UNENCRYPTED_SRTCP"
    assert "QUJD" not in repr(crypto)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("a=crypto:x AES inline:abc", "a=crypto line"),
        ("a=crypto:1 AES", "a=crypto line"),
        ("a=ptime:0", "a=ptime"),
    ],
)
def test_bad_crypto_and_ptime_lines(line: str, words: str) -> None:
    with pytest.raises(SdpError, match=words) as caught:
        parse_offer(f"v=0\r\nm=audio 4000 RTP/SAVP 0\r\n{line}\r\n".encode())
    assert "inline" not in str(caught.value)  # a key is never quoted back
