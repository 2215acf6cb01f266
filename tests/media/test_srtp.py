"""SRTP through libsrtp per suite, SDES keys, and the SRTP policy over SDP offer/answer."""

from __future__ import annotations

import random

import pytest

from sipua.media.errors import MediaRefused, SrtpAuthFailed, SrtpError
from sipua.media.negotiation import accept_answer, answer_offer, make_offer
from sipua.media.rtp import RtpPacket, build_rtp
from sipua.media.sdp import parse_offer
from sipua.media.srtp import (
    SUITES,
    SrtpContext,
    SrtpSuite,
    decode_key_params,
    inline_key,
    new_master_key,
)

RNG = random.Random(7)


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_round_trip_and_auth_failure_per_suite(suite: SrtpSuite) -> None:
    ours, theirs = new_master_key(suite, RNG.randbytes), new_master_key(suite, RNG.randbytes)
    sender = SrtpContext(suite, local_key=ours, remote_key=theirs)
    receiver = SrtpContext(suite, local_key=theirs, remote_key=ours)
    for seq in range(3):
        rtp = build_rtp(RtpPacket(0, seq, seq * 160, 99, bytes([seq]) * 160))
        protected = sender.protect(rtp)
        assert protected[12:] != rtp[12:]  # encrypted
        assert len(protected) > len(rtp)  # with its tag
        assert receiver.unprotect(protected) == rtp
    tampered = bytearray(sender.protect(build_rtp(RtpPacket(0, 10, 1600, 99, bytes(160)))))
    tampered[30] ^= 0x01
    with pytest.raises(SrtpAuthFailed):
        receiver.unprotect(bytes(tampered))
    # A key of the other side does not authenticate either.
    stranger = SrtpContext(suite, local_key=theirs, remote_key=theirs)
    with pytest.raises(SrtpAuthFailed):
        stranger.unprotect(sender.protect(build_rtp(RtpPacket(0, 11, 1760, 99, bytes(160)))))
    report = b"\x80\xc9\x00\x01\x00\x00\x00\x63"
    assert receiver.unprotect_rtcp(sender.protect_rtcp(report)) == report
    with pytest.raises(SrtpError):
        receiver.unprotect(b"\x80" * 5)


def test_sdes_key_params() -> None:
    suite = SUITES[0]
    key = bytes(range(30))
    assert decode_key_params(suite, inline_key(key)) == key
    assert decode_key_params(suite, inline_key(key) + "|2^20") == key
    for bad, words in [
        ("inline:" + "A" * 10, "not 30"),
        (inline_key(key) + "|2^20|1:4", "MKI"),
        ("key:abc", "inline"),
        ("inline:@@@@", "inline"),
    ]:
        with pytest.raises(SrtpError, match=words):
            decode_key_params(suite, bad)


def _offer(policy: str, secure: bool = True):  # type: ignore[no-untyped-def]
    return make_offer(
        policy=policy,  # type: ignore[arg-type]
        signalling_secure=secure,
        address="127.0.0.1",
        port=40000,
        session_id=1,
        random_bytes=RNG.randbytes,
    )


def _answer(offer: bytes, policy: str, secure: bool = True):  # type: ignore[no-untyped-def]
    return answer_offer(
        offer,
        policy=policy,  # type: ignore[arg-type]
        signalling_secure=secure,
        address="127.0.0.1",
        port=50000,
        session_id=2,
        random_bytes=RNG.randbytes,
    )


def test_offers_per_policy() -> None:
    (compulsory,) = parse_offer(_offer("compulsory").body)
    assert compulsory.proto == "RTP/SAVP"
    assert [c.suite for c in compulsory.crypto] == [s.name for s in SUITES]
    assert compulsory.rtcp_mux
    (optional,) = parse_offer(_offer("optional").body)
    assert optional.proto == "RTP/AVP"
    assert len(optional.crypto) == len(SUITES)
    (disabled,) = parse_offer(_offer("disabled").body)
    assert (disabled.proto, disabled.crypto) == ("RTP/AVP", [])
    # No keys without TLS: optional offers plain RTP, compulsory refuses to offer.
    (insecure,) = parse_offer(_offer("optional", secure=False).body)
    assert insecure.crypto == []
    with pytest.raises(MediaRefused, match="not TLS"):
        _offer("compulsory", secure=False)


@pytest.mark.parametrize(
    ("offerer", "answerer", "encrypted"),
    [
        ("compulsory", "compulsory", True),
        ("compulsory", "optional", True),
        ("optional", "compulsory", True),
        ("optional", "optional", True),
        ("optional", "disabled", False),
        ("disabled", "optional", False),
        ("disabled", "disabled", False),
    ],
)
def test_policies_that_agree(offerer: str, answerer: str, encrypted: bool) -> None:
    offer = _offer(offerer)
    body, answer_plan = _answer(offer.body, answerer)
    offer_plan = accept_answer(offer, body, policy=offerer, signalling_secure=True)  # type: ignore[arg-type]
    assert answer_plan.security.encrypted is encrypted
    assert offer_plan.security.encrypted is encrypted
    assert (offer_plan.remote_port, answer_plan.remote_port) == (50000, 40000)
    assert offer_plan.codec == answer_plan.codec == "pcmu"
    assert offer_plan.event_payload_type == answer_plan.event_payload_type == 101
    if encrypted:
        assert offer_plan.srtp is not None
        assert answer_plan.srtp is not None
        assert offer_plan.srtp.suite.name == "AES_CM_128_HMAC_SHA1_80"
        assert offer_plan.srtp.local_key == answer_plan.srtp.remote_key
        assert offer_plan.srtp.remote_key == answer_plan.srtp.local_key
        assert "SDES" in offer_plan.security.reason
        assert repr(offer_plan.srtp.local_key) not in repr(offer_plan)
    else:
        assert offer_plan.srtp is None
        assert answer_plan.srtp is None


@pytest.mark.parametrize(
    ("offerer", "answerer", "secure", "words"),
    [
        ("compulsory", "disabled", True, "SRTP is disabled"),
        ("disabled", "compulsory", True, "no usable SDES crypto"),
        ("optional", "compulsory", False, "not TLS"),
    ],
)
def test_answerer_refusals(offerer: str, answerer: str, secure: bool, words: str) -> None:
    offer = _offer(offerer, secure=secure)
    with pytest.raises(MediaRefused, match=words) as caught:
        _answer(offer.body, answerer, secure=secure)
    assert caught.value.status == 488


def test_compulsory_offerer_refuses_a_plain_answer() -> None:
    offer = _offer("optional")
    plain = _offer("disabled").body  # an answer without crypto
    with pytest.raises(MediaRefused, match="compulsory and the answer is plain"):
        accept_answer(offer, plain, policy="compulsory", signalling_secure=True)
    plan = accept_answer(offer, plain, policy="optional", signalling_secure=True)
    assert plan.security.reason == "the peer answered plain RTP"


def test_an_answer_must_match_an_offered_crypto_line() -> None:
    offer = _offer("compulsory")
    body, _ = _answer(offer.body, "compulsory")
    forged = body.replace(b"a=crypto:1 ", b"a=crypto:9 ")
    with pytest.raises(MediaRefused, match="tag 9"):
        accept_answer(offer, forged, policy="compulsory", signalling_secure=True)


def test_unsupported_suites_and_gcm() -> None:
    offer = (
        b"v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 4000 RTP/SAVP 8\r\n"
        b"a=crypto:1 F8_128_HMAC_SHA1_80 inline:" + b"A" * 40 + b"\r\n"
    )
    with pytest.raises(MediaRefused, match="suites offered: F8_128_HMAC_SHA1_80"):
        _answer(offer, "compulsory")
    gcm_key = inline_key(bytes(44)).encode()
    offer += b"a=crypto:2 AEAD_AES_256_GCM " + gcm_key + b"\r\n"
    body, plan = _answer(offer, "optional")
    assert plan.srtp is not None
    assert plan.srtp.suite.name == "AEAD_AES_256_GCM"
    assert plan.codec == "pcma"
    assert b"a=crypto:2 AEAD_AES_256_GCM inline:" in body
    assert b"m=audio 50000 RTP/SAVP 8" in body


def test_keys_from_a_plain_hop_are_ignored_under_optional() -> None:
    offer = _offer("optional")
    body, plan = _answer(offer.body, "optional", secure=False)
    assert b"a=crypto" not in body
    assert plan.srtp is None
    assert "not TLS" in plan.security.reason


def test_malformed_offers_are_refused_with_the_reason() -> None:
    with pytest.raises(MediaRefused, match="malformed SDP offer"):
        _answer(b"v=0\r\nm=audio x RTP/AVP 0\r\n", "optional")
    with pytest.raises(MediaRefused, match="no c= connection address"):
        _answer(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n", "optional")
    with pytest.raises(MediaRefused, match="not an IP address"):
        _answer(b"v=0\r\nc=IN IP4 pbx.example\r\nm=audio 4000 RTP/AVP 0\r\n", "optional")
