"""Two media sessions on 127.0.0.1: SRTP tone against echo, and what bad datagrams do."""

from __future__ import annotations

import random
import socket

import pytest
import trio

from sipua.media import g711
from sipua.media.errors import PortRangeExhausted
from sipua.media.negotiation import accept_answer, answer_offer, make_offer
from sipua.media.session import MediaSession, PortRange
from sipua.media.sources import EchoSource, MediaSpec, make_source

PORTS = PortRange(41000, 41999)


def _rng(seed: int) -> random.Random:
    return random.Random(seed)


async def _call(
    policy: str, seconds: float, interfere: bool = False
) -> tuple[MediaSession, MediaSession, EchoSource]:
    rng_a, rng_b = _rng(1), _rng(2)
    caller = MediaSession.open("127.0.0.1", PORTS, random_bytes=rng_a.randbytes)
    callee = MediaSession.open("127.0.0.1", PORTS, random_bytes=rng_b.randbytes)
    offer = make_offer(
        policy=policy,  # type: ignore[arg-type]
        signalling_secure=True,
        address="127.0.0.1",
        port=caller.port,
        session_id=1,
        random_bytes=rng_a.randbytes,
    )
    answer, callee_plan = answer_offer(
        offer.body,
        policy=policy,  # type: ignore[arg-type]
        signalling_secure=True,
        address="127.0.0.1",
        port=callee.port,
        session_id=2,
        random_bytes=rng_b.randbytes,
    )
    caller_plan = accept_answer(offer, answer, policy=policy, signalling_secure=True)  # type: ignore[arg-type]
    echo = EchoSource(callee_plan.codec)
    async with trio.open_nursery() as nursery:
        await nursery.start(callee.run, callee_plan, echo)
        await nursery.start(
            caller.run, caller_plan, make_source(MediaSpec("tone"), caller_plan.codec)
        )
        caller.send_digits("1#")
        if interfere:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
                await trio.sleep(0.3)
                stranger.sendto(b"\x80\x00garbage-from-elsewhere", ("127.0.0.1", callee.port))
                # From the peer's own socket: garbage, and a tampered copy of a real packet.
                peer = caller._rtp
                await peer.sendto(b"not rtp", ("127.0.0.1", callee.port))
                await peer.sendto(b"\x80\x00" + bytes(200), ("127.0.0.1", callee.port))
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    caller.close()
    callee.close()
    return caller, callee, echo


Calls = dict[str, tuple[MediaSession, MediaSession, EchoSource]]


@pytest.fixture(scope="module")
def calls() -> Calls:
    """The module's real-time calls, run side by side once (each would otherwise hold the
    suite for its whole length)."""
    plans = {
        "compulsory": ("compulsory", 1.5, False),
        "optional": ("optional", 1.5, False),
        "disabled": ("disabled", 1.5, False),
        "interfered": ("compulsory", 0.8, True),
    }
    results: Calls = {}

    async def run_all() -> None:
        async def one(name: str, plan: tuple[str, float, bool]) -> None:
            results[name] = await _call(*plan)

        async with trio.open_nursery() as nursery:
            for name, plan in plans.items():
                nursery.start_soon(one, name, plan)

    trio.run(run_all)
    return results


@pytest.mark.parametrize("policy", ["compulsory", "optional", "disabled"])
def test_tone_against_echo_flows_both_ways(calls: Calls, policy: str) -> None:
    caller, callee, _ = calls[policy]
    sent, back = caller.report(), callee.report()
    # 1.5 s at 50 packets/s is 75 ticks; the two digits take 14 of them and their pauses 10
    # send nothing, and the pacing may lose a tick at the edges.
    assert sent.packets_sent >= 60
    assert back.packets_received >= 45
    assert back.packets_lost == 0
    assert sent.packets_received >= 40  # the echo came back
    assert back.jitter_ms < 20
    assert back.first_packet_after is not None
    assert back.first_packet_after < 0.2
    assert back.digits_received == "1#"
    assert back.srtp_auth_failures == back.wrong_source == back.malformed == 0
    encrypted = policy != "disabled"
    assert sent.srtp_suite == ("AES_CM_128_HMAC_SHA1_80" if encrypted else None)
    assert sent.security is not None
    assert sent.security.encrypted is encrypted
    assert back.as_event()["encrypted"] is encrypted


def test_garbage_strangers_and_forgeries_are_counted_not_fatal(calls: Calls) -> None:
    _, callee, _ = calls["interfered"]
    report = callee.report()
    # Latched on the caller's port: the stranger's datagram is from the wrong source.
    assert report.wrong_source == 1
    # Short garbage is not SRTP; the 202-byte packet fails authentication.
    assert report.malformed == 1
    assert report.srtp_auth_failures == 1
    assert report.packets_received >= 30


def test_the_echo_plays_back_what_it_received_in_order_and_silence_in_between() -> None:
    echo = EchoSource("pcmu")
    frames = [bytes([value]) * 160 for value in (0x10, 0x20, 0x30)]
    for frame in frames:
        echo.received(frame)
    assert [echo.frame() for _ in range(4)] == [*frames, bytes([0xFF]) * 160]
    assert g711.decode("pcmu", echo.frame()) == bytes(320)  # PCMU silence is 0xFF


async def test_an_exhausted_port_range_is_a_clear_error() -> None:
    taken: list[MediaSession] = []
    ports = PortRange(42000, 42003)
    try:
        taken = [MediaSession.open("127.0.0.1", ports) for _ in range(2)]
        with pytest.raises(PortRangeExhausted, match="42000-42003"):
            MediaSession.open("127.0.0.1", ports)
        assert sorted(s.port for s in taken) == [42000, 42002]
    finally:
        for session in taken:
            session.close()


async def test_queued_digits_are_bounded() -> None:
    session = MediaSession.open("127.0.0.1", PORTS)
    try:
        session.send_digits("1" * 32)
        with pytest.raises(ValueError, match="at most 32 DTMF digits"):
            session.send_digits("2")
    finally:
        session.close()
    fresh = MediaSession.open("127.0.0.1", PORTS)
    try:
        with pytest.raises(ValueError, match="not a DTMF digit"):
            fresh.send_digits("12x")
        fresh.send_digits("12")  # nothing of the refused string was queued
        assert len(fresh._dtmf_out) == 2 * 12
    finally:
        fresh.close()
