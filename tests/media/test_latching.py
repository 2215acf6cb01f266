"""Symmetric RTP learning (`SourceLatch`), sans-IO: the SDP's source latches at once, another
source only after `LATCH_PACKETS` in sequence within the learning time, and never again after."""

from __future__ import annotations

from sipua.media.latching import LATCH_PACKETS, LEARNING_SECONDS, SourceLatch

SDP = ("192.0.2.5", 4000)
NAT = ("198.51.100.7", 61000)
STRANGER = ("203.0.113.9", 5555)


def _latch(symmetric: bool = True) -> SourceLatch:
    return SourceLatch(SDP, symmetric=symmetric)


def test_the_sdp_source_latches_at_once_even_after_a_stranger_started() -> None:
    latch = _latch()
    assert not latch.learn(STRANGER, 1, 100.0)  # one packet: on probation, not played
    assert not latch.settled(100.1)
    assert latch.learn(SDP, 500, 100.1)
    assert latch.settled(100.1)
    assert latch.latched
    assert latch.peer == SDP
    assert latch.refused == 1
    # Latched for good: the stranger's packets, even a run in sequence, stay refused.
    assert not any(latch.learn(STRANGER, seq, 100.2) for seq in range(2, 12))
    assert latch.peer == SDP


def test_another_source_latches_after_packets_in_sequence() -> None:
    latch = _latch()
    for seq in range(65535 - LATCH_PACKETS + 2, 65536):  # up to the wrap
        assert not latch.learn(NAT, seq, 100.5)
    assert latch.refused == LATCH_PACKETS - 1
    assert latch.learn(NAT, 0, 100.6)  # 65535 -> 0 is in sequence
    assert latch.peer == NAT
    assert latch.latched
    assert latch.refused == 0  # its probation packets were the peer's
    assert not latch.learn(SDP, 7, 100.7)  # never re-latched, not even onto the SDP's source
    assert latch.peer == NAT


def test_sources_that_interleave_or_skip_never_latch() -> None:
    latch = _latch()
    sent = 0
    for seq in range(1, 40):
        assert not latch.learn(NAT, seq, 101.0)
        assert not latch.learn(STRANGER, seq, 101.0)
        sent += 2
    for seq in range(100, 200, 2):  # in order, but every other one missing
        assert not latch.learn(NAT, seq, 102.0)
        sent += 1
    assert not latch.latched
    assert latch.peer == SDP
    assert latch.refused == sent


def test_when_the_learning_time_ends_the_sdp_source_stays_the_peer() -> None:
    latch = _latch()
    assert not latch.learn(STRANGER, 1, 100.0)  # the first packet starts the learning time
    for seq in range(1, LATCH_PACKETS):
        assert not latch.learn(NAT, seq, 104.0)
    end = 100.0 + LEARNING_SECONDS
    assert latch.settled(end)
    assert not latch.latched
    assert latch.peer == SDP
    assert not latch.learn(NAT, LATCH_PACKETS, end)  # too late to finish the probation
    assert latch.learn(SDP, 9, end + 1)
    assert latch.refused == LATCH_PACKETS


def test_the_learning_time_starts_with_the_first_packet_however_late() -> None:
    # A callee behind a NAT that rings long after its 183 (or stays silent at first): its
    # media, starting minutes into the call, is still learnt. The time once ran from the
    # start of the media, and such a peer was never heard.
    latch = _latch()
    assert not latch.settled(10_000.0)
    start = 10_000.0
    for seq in range(1, LATCH_PACKETS):
        assert not latch.learn(NAT, seq, start + seq * 0.02)
    assert latch.learn(NAT, LATCH_PACKETS, start + 0.1)
    assert latch.peer == NAT


def test_without_symmetric_rtp_only_the_sdp_source_counts() -> None:
    latch = _latch(symmetric=False)
    assert latch.settled(100.0)
    assert not any(latch.learn(NAT, seq, 100.0) for seq in range(1, 10))
    assert latch.learn(SDP, 1, 100.0)
    assert latch.peer == SDP
    assert not latch.latched
