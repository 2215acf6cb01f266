"""Symmetric RTP over real UDP sockets on 127.0.0.0/8: a third party's packet does not take a
call's media over, a peer behind a NAT (another source than its SDP's) is learnt after a few
packets in sequence, and the report names where the media went."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

from sipua.media.latching import LATCH_PACKETS
from sipua.media.negotiation import MediaPlan, answer_offer
from sipua.media.session import MediaSession, PortRange
from sipua.media.sources import MediaSpec, make_source

PORTS = PortRange(46000, 46999)
STRANGER_HOST = "127.0.0.9"  # a loopback address of its own: no part of the call


def _packet(seq: int, payload_type: int = 0, ssrc: int = 1234) -> bytes:
    return struct.pack("!BBHII", 0x80, payload_type, seq, 160 * seq, ssrc) + b"\xff" * 160


@contextmanager
def _udp(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, 0))
        sock.setblocking(False)
        yield sock
    finally:
        sock.close()


def _drain(sock: socket.socket) -> list[int]:
    """The RTP sequence numbers waiting on `sock`."""
    sequences = []
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return sequences
        sequences.append(int.from_bytes(data[2:4], "big"))


def _plan(sdp_port: int) -> MediaPlan:
    offer = (
        "v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {sdp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()
    return answer_offer(
        offer,
        policy="disabled",
        signalling_secure=True,
        address="127.0.0.1",
        port=4000,
        session_id=1,
        random_bytes=bytes,
    )[1]


async def _send(sock: socket.socket, port: int, packets: list[bytes]) -> None:
    for packet in packets:
        sock.sendto(packet, ("127.0.0.1", port))
        await trio.sleep(0.02)


async def test_one_packet_from_a_third_party_does_not_take_the_media_over() -> None:
    session = MediaSession.open("127.0.0.1", PORTS)
    with _udp() as caller, _udp(STRANGER_HOST) as stranger:
        caller_port = caller.getsockname()[1]
        plan = _plan(caller_port)
        async with trio.open_nursery() as nursery:
            await nursery.start(session.run, plan, make_source(MediaSpec("silence"), "pcmu"))
            stranger.sendto(_packet(1), ("127.0.0.1", session.port))  # before the caller
            await trio.sleep(0.05)
            await _send(caller, session.port, [_packet(100 + i) for i in range(10)])
            stranger.sendto(_packet(2), ("127.0.0.1", session.port))  # and after
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        session.close()
        assert _drain(stranger) == []
        assert len(_drain(caller)) >= 10
    report = session.report()
    assert report.remote == f"127.0.0.1:{caller_port}"
    assert report.packets_received == 10
    assert report.wrong_source == 2
    assert report.malformed == 0


async def test_a_peer_behind_a_nat_is_learnt_after_packets_in_sequence() -> None:
    session = MediaSession.open("127.0.0.1", PORTS)
    with _udp() as signalled, _udp() as nat, _udp(STRANGER_HOST) as stranger:
        nat_port = nat.getsockname()[1]
        plan = _plan(signalled.getsockname()[1])  # the SDP's port, where nothing comes from
        async with trio.open_nursery() as nursery:
            await nursery.start(session.run, plan, make_source(MediaSpec("silence"), "pcmu"))
            await _send(nat, session.port, [_packet(7 + i) for i in range(LATCH_PACKETS + 6)])
            await trio.sleep(0.1)
            sent_before = len(_drain(signalled))  # before the latch, media went to the SDP's
            stranger.sendto(_packet(8), ("127.0.0.1", session.port))  # too late to matter
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        session.close()
        assert sent_before >= 1
        assert len(_drain(nat)) >= 5
        assert _drain(stranger) == []
        assert _drain(signalled) == []  # nothing more once latched
    report = session.report()
    assert report.remote == f"127.0.0.1:{nat_port}"
    assert report.packets_received == 7  # the 4th on: the first three were its probation
    assert report.wrong_source == 1  # the stranger's


@pytest.mark.parametrize("payload_type", [13, 96])  # comfort noise, a format not negotiated
async def test_packets_of_a_format_the_call_did_not_agree_on_teach_nothing(
    payload_type: int,
) -> None:
    session = MediaSession.open("127.0.0.1", PORTS)
    with _udp() as signalled, _udp() as other:
        signalled_port = signalled.getsockname()[1]
        plan = _plan(signalled_port)
        async with trio.open_nursery() as nursery:
            await nursery.start(session.run, plan, make_source(MediaSpec("silence"), "pcmu"))
            packets = [_packet(i, payload_type) for i in range(1, 2 * LATCH_PACKETS)]
            await _send(other, session.port, packets)
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        session.close()
        assert _drain(other) == []
    report = session.report()
    assert report.remote == f"127.0.0.1:{signalled_port}"
    assert report.malformed == 2 * LATCH_PACKETS - 1
    assert report.packets_received == 0
