"""Media addresses of the other IP family than ours are refused, not sent to in vain: a socket
bound for IPv4 cannot send to an IPv6 address (every packet failed with EAFNOSUPPORT and was
skipped, so the call had no media and no word of why)."""

from __future__ import annotations

import random

import pytest

from sipua.media.errors import MediaRefused
from sipua.media.negotiation import MediaPlan, accept_answer, answer_offer, make_offer


def _sdp(address: str) -> bytes:
    kind = "IP6" if ":" in address else "IP4"
    lines = [
        "v=0",
        f"o=bob 1 1 IN {kind} {address}",
        "s=-",
        f"c=IN {kind} {address}",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def _answered_from(ours: str, offer: bytes) -> MediaPlan:
    """Our plan answering `offer` with our media on `ours` (plain RTP, port 4000)."""
    return answer_offer(
        offer,
        policy="disabled",
        signalling_secure=True,
        address=ours,
        port=4000,
        session_id=1,
        random_bytes=random.Random(1).randbytes,
    )[1]


@pytest.mark.parametrize(
    ("ours", "theirs", "words"),
    [
        ("192.0.2.1", "2001:db8::5", "is IPv6 and this call's media is IPv4"),
        ("2001:db8::1", "192.0.2.5", "is IPv4 and this call's media is IPv6"),
    ],
)
def test_an_address_of_the_other_family_is_refused_both_ways(
    ours: str, theirs: str, words: str
) -> None:
    with pytest.raises(MediaRefused, match=words) as refused:
        _answered_from(ours, _sdp(theirs))
    assert refused.value.status == 488
    local = make_offer(
        policy="disabled",
        signalling_secure=True,
        address=ours,
        port=4000,
        session_id=1,
        random_bytes=random.Random(1).randbytes,
    )
    with pytest.raises(MediaRefused, match=words):
        accept_answer(local, _sdp(theirs), policy="disabled", signalling_secure=True)


def test_the_same_family_is_taken() -> None:
    for ours, theirs in (("192.0.2.1", "192.0.2.5"), ("2001:db8::1", "2001:db8::5")):
        assert _answered_from(ours, _sdp(theirs)).remote_address == theirs
