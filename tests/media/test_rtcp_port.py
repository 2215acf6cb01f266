"""Where RTCP goes: rtcp-mux, a=rtcp (RFC 3605) or the RTP port + 1, and the offers and answers
whose RTP port of 65535 leaves no RTCP port at all; a destination no datagram can reach is a
`MediaError`, never an exception out of the session."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import trio
import trio.testing

from sipua.media import rtcp
from sipua.media.errors import MediaError, MediaRefused
from sipua.media.negotiation import MediaPlan, accept_answer, answer_offer, make_offer
from sipua.media.rtp import RtpPacket, build_rtp
from sipua.media.sdp import SdpError, parse_offer
from sipua.media.session import MediaSession, PortRange
from sipua.media.sources import MediaSpec, make_source
from sipua.ua.call_media import CallMedia
from tests.ua.test_agent import wait_until
from tests.ua.test_call_media import FakeConnection, _responses, call_handler
from tests.ua.test_calls import request

PORTS = PortRange(45000, 45999)


def _sdp(port: int, *extra: str) -> bytes:
    lines = [
        "v=0",
        "o=bob 1 1 IN IP4 192.0.2.5",
        "s=-",
        "c=IN IP4 192.0.2.5",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def _answer(offer: bytes) -> MediaPlan:
    return answer_offer(
        offer,
        policy="disabled",
        signalling_secure=True,
        address="192.0.2.1",
        port=4000,
        session_id=1,
        random_bytes=random.Random(1).randbytes,
    )[1]


def test_a_rtcp_is_read_with_its_port_and_optional_address() -> None:
    (plain,) = parse_offer(_sdp(4000))
    assert (plain.rtcp_port, plain.rtcp_address) == (None, None)
    (port_only,) = parse_offer(_sdp(4000, "a=rtcp:4003"))
    assert (port_only.rtcp_port, port_only.rtcp_address) == (4003, None)
    (with_address,) = parse_offer(_sdp(4000, "a=rtcp:53020 IN IP6 2001:db8::7"))
    assert (with_address.rtcp_port, with_address.rtcp_address) == (53020, "2001:db8::7")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a=rtcp:0", "has port '0', not 1-65535"),
        ("a=rtcp:65536", "has port '65536', not 1-65535"),
        ("a=rtcp:", "has port '', not 1-65535"),
        ("a=rtcp:4001 IN IP4", "is not 'IN IP4|IP6 <address>'"),
    ],
)
def test_a_bad_a_rtcp_line_is_an_sdp_error(line: str, message: str) -> None:
    with pytest.raises(SdpError, match=message):
        parse_offer(_sdp(4000, line))


@pytest.mark.parametrize(
    ("port", "extra", "rtcp"),
    [
        (4000, (), ("192.0.2.5", 4001)),  # RFC 3550 §11: the port above
        (65535, ("a=rtcp-mux",), ("192.0.2.5", 65535)),  # RFC 5761: the same port
        (65535, ("a=rtcp:65534",), ("192.0.2.5", 65534)),  # RFC 3605
        (4000, ("a=rtcp:5009 IN IP4 192.0.2.9",), ("192.0.2.9", 5009)),
    ],
)
def test_the_answerer_sends_rtcp_where_the_offer_says(
    port: int, extra: tuple[str, ...], rtcp: tuple[str, int]
) -> None:
    plan = _answer(_sdp(port, *extra))
    assert (plan.remote_address, plan.remote_port) == ("192.0.2.5", port)
    assert plan.remote_rtcp == rtcp


def test_an_offer_on_port_65535_without_an_rtcp_port_is_refused() -> None:
    with pytest.raises(MediaRefused) as refused:
        _answer(_sdp(65535))
    assert refused.value.status == 488
    assert str(refused.value) == (
        "RTP port 65535 without a=rtcp-mux or a=rtcp leaves no RTCP port (65536); "
        "use an even RTP port, rtcp-mux or a=rtcp"
    )


@pytest.mark.parametrize("offer_mux", [False, True])
def test_an_answer_on_port_65535_needs_rtcp_mux_on_both_sides(offer_mux: bool) -> None:
    local = make_offer(
        policy="disabled",
        signalling_secure=True,
        address="192.0.2.1",
        port=4000,
        session_id=1,
        random_bytes=random.Random(1).randbytes,
        rtcp_mux=offer_mux,
    )
    answer = _sdp(65535, "a=rtcp-mux")
    if offer_mux:
        plan = accept_answer(local, answer, policy="disabled", signalling_secure=True)
        assert plan.remote_rtcp == ("192.0.2.5", 65535)
    else:  # we did not offer rtcp-mux, so RTCP would go to 65536
        with pytest.raises(MediaRefused, match="leaves no RTCP port"):
            accept_answer(local, answer, policy="disabled", signalling_secure=True)
    with pytest.raises(MediaRefused, match="leaves no RTCP port"):
        accept_answer(local, _sdp(65535), policy="disabled", signalling_secure=True)


async def test_an_inbound_offer_on_port_65535_is_answered_488_with_the_reason() -> None:
    published: list[tuple[str, dict[str, object]]] = []
    offer = _sdp(65535).replace(b"192.0.2.5", b"127.0.0.1")
    async with trio.open_nursery() as nursery:
        handler = call_handler(nursery, published, media=CallMedia(srtp="disabled", ports=PORTS))
        connection = FakeConnection()
        await handler.handle_message(
            connection, request("INVITE", "sips:alice@x", call_id="p65535", body=offer)
        )
        await wait_until(lambda: bool(_responses(connection)), 2)
        (refused,) = _responses(connection)
        assert refused.status == 488
        assert "RTP port 65535 without a=rtcp-mux or a=rtcp" in (
            refused.headers.get("Warning") or ""
        )
        assert handler.active_calls == 0
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("stream", ["RTP", "RTCP"])
async def test_a_destination_no_datagram_can_reach_ends_the_media_with_a_media_error(
    stream: str, autojump_clock: trio.testing.MockClock
) -> None:
    session = MediaSession.open("127.0.0.1", PORTS)
    plan = _answer(_sdp(40000).replace(b"192.0.2.5", b"127.0.0.1"))
    if stream == "RTP":
        plan = replace(plan, remote_port=65536)
    else:  # receive only: the first RTCP report (after 2.5 s) is the first datagram sent
        plan = replace(plan, remote_rtcp=("127.0.0.1", 65536), direction="recvonly")
    try:
        with trio.fail_after(10):
            with pytest.raises(MediaError, match=f"cannot send {stream} to 127.0.0.1:65536"):
                await session.run(plan, make_source(MediaSpec("silence"), plan.codec))
    finally:
        session.close()


async def test_rtcp_from_the_a_rtcp_address_is_taken_with_symmetric_rtp() -> None:
    # RFC 3605: the peer's RTCP comes from the address and port a=rtcp names; with symmetric
    # RTP (the default) only the RTP peer's host was accepted, so it counted as wrong_source.
    rtp_peer = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
    rtcp_peer = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
    with rtp_peer, rtcp_peer:
        await rtp_peer.bind(("127.0.0.1", 0))
        await rtcp_peer.bind(("127.0.0.5", 0))
        rtcp_port = rtcp_peer.getsockname()[1]
        offer = _sdp(rtp_peer.getsockname()[1], f"a=rtcp:{rtcp_port} IN IP4 127.0.0.5")
        plan = _answer(offer.replace(b"192.0.2.5", b"127.0.0.1"))
        assert plan.remote_rtcp == ("127.0.0.5", rtcp_port)
        session = MediaSession.open("127.0.0.1", PORTS)
        try:
            async with trio.open_nursery() as nursery:
                source = make_source(MediaSpec("silence"), plan.codec)
                await nursery.start(session.run, plan, source)
                for seq in range(1, 6):  # from the SDP's address: latched at once
                    packet = RtpPacket(payload_type=0, sequence=seq, timestamp=seq * 160,
                                       ssrc=77, payload=b"\xff" * 160)  # fmt: skip
                    await rtp_peer.sendto(build_rtp(packet), ("127.0.0.1", session.port))
                report = rtcp.build_report(ssrc=77, cname="bob", sender=None, block=None)
                await rtcp_peer.sendto(report, ("127.0.0.1", session.port + 1))
                await trio.sleep(0.2)
                nursery.cancel_scope.cancel()
        finally:
            session.close()
    measured = session.report()
    assert measured.rtcp_received == 1
    assert measured.wrong_source == 0


def test_an_a_rtcp_address_of_the_other_family_is_refused() -> None:
    with pytest.raises(MediaRefused, match="a=rtcp address 2001:db8::7 is IPv6"):
        _answer(_sdp(4000, "a=rtcp:4001 IN IP6 2001:db8::7"))
