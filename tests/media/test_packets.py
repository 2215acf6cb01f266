"""RTP and RTCP packets, RFC 4733 events, receive statistics and the G.711 codecs."""

from __future__ import annotations

import hashlib
import struct

import pytest

from sipua.media import g711, rtcp
from sipua.media.dtmf import DtmfReceiver, event_payloads, parse_event
from sipua.media.errors import RtpError
from sipua.media.rtp import RtpPacket, build_rtp, is_rtcp, parse_rtp
from sipua.media.stats import ReceiveStats


def test_rtp_round_trip_with_csrcs_and_extension() -> None:
    packet = RtpPacket(
        8,
        65535,
        0xFFFFFFF0,
        0xDEADBEEF,
        b"\xd5" * 160,
        marker=True,
        csrcs=(1, 2),
        extension=(0xBEDE, b"\x10\xff\x00\x00"),
    )
    data = build_rtp(packet)
    assert len(data) == 12 + 8 + 4 + 4 + 160
    assert data[0] == 0x80 | 0x10 | 2
    assert parse_rtp(data) == packet


def test_rtp_padding_is_removed() -> None:
    data = bytearray(build_rtp(RtpPacket(0, 1, 2, 3, b"abcd")))
    data[0] |= 0x20
    data += b"\x00\x00\x03"
    assert parse_rtp(bytes(data)).payload == b"abcd"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x80\x00", "shorter than the 12-byte header"),
        (b"\x40" + bytes(11), "version 1"),
        (b"\x8f" + bytes(11), "CSRC count 15"),
        (b"\x90" + bytes(11) + b"\x00\x00\x00\x09", "extension of 9 words"),
        (b"\x90" + bytes(11), "extension is longer"),
        (b"\xa0" + bytes(11) + b"\x20", "padding of 32"),
        (b"\xa0" + bytes(11) + b"\x00", "padding of 0"),
        (b"\x80\xc8" + bytes(10), "RTCP"),
        (b"\x80" + bytes(1500), "over 1500"),
    ],
)
def test_bad_rtp_is_an_rtp_error(data: bytes, words: str) -> None:
    with pytest.raises(RtpError, match=words):
        parse_rtp(data)


def test_rtcp_is_told_from_rtp() -> None:
    assert is_rtcp(b"\x80\xc8")
    assert not is_rtcp(build_rtp(RtpPacket(0, 1, 2, 3, b"", marker=True)))


def test_sender_report_round_trip() -> None:
    block = rtcp.ReportBlock(7, 25, -3, 70000, 80, 0x12345678, 65536)
    sender = rtcp.SenderInfo(rtcp.ntp_timestamp(1.5), 160, 50, 8000)
    data = rtcp.build_report(ssrc=9, cname="sipua-x", sender=sender, block=block)
    assert len(data) % 4 == 0
    report = rtcp.parse_compound(data)
    assert report.ssrc == 9
    assert report.sender == sender
    assert report.blocks == (block,)
    assert rtcp.ntp_timestamp(1.5) == (rtcp.NTP_UNIX_OFFSET + 1) << 32 | 1 << 31


def test_a_reduced_size_packet_has_no_report() -> None:
    # baresip's keep-alive: an APP packet "PING" alone (RFC 5506 reduced-size RTCP).
    report = rtcp.parse_compound(bytes.fromhex("80cc0003bab3b38150494e47504f4e47"))
    assert (report.ssrc, report.sender, report.blocks) == (0xBAB3B381, None, ())


def test_receiver_report_and_bye() -> None:
    data = rtcp.build_report(ssrc=1, cname="c", sender=None, block=None)
    data += struct.pack("!BBHI", 0x81, rtcp.BYE, 1, 1)
    report = rtcp.parse_compound(data)
    assert report.sender is None
    assert report.blocks == ()
    assert report.bye


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x80\xcc\x00\x00\x80\xc9\x00\x01" + bytes(4), "shorter than its SSRC"),
        (b"\x80\xc9\x00\x09" + bytes(8), "overruns"),
        (b"\x81\xc9\x00\x01" + bytes(4), "1 blocks"),
        (b"\x80\xc8\x00\x01" + bytes(4), "sender info"),
        (b"\x80\xc9\x00\x01" + bytes(4) + b"\x80", "stray"),
        (b"\x80\xc9\x00\x01" + bytes(4) + b"\x80\xca\x00\x00" * 20, "more than 16"),
    ],
)
def test_bad_rtcp_is_an_rtp_error(data: bytes, words: str) -> None:
    with pytest.raises(RtpError, match=words):
        rtcp.parse_compound(data)


def test_telephone_event_round_trip() -> None:
    payloads = event_payloads("#", duration_ms=60)
    assert [p.marker for p in payloads] == [True, False, False, False, False]
    events = [parse_event(p.payload) for p in payloads]
    assert [e.duration for e in events] == [160, 320, 480, 480, 480]
    assert [e.end for e in events] == [False, False, True, True, True]
    assert {e.digit for e in events} == {"#"}
    receiver = DtmfReceiver()
    assert [receiver.feed(1000, p.payload) for p in payloads] == ["#", None, None, None, None]
    assert receiver.feed(2000, event_payloads("5")[0].payload) == "5"
    with pytest.raises(ValueError, match="not a DTMF digit"):
        event_payloads("x")
    with pytest.raises(RtpError):
        parse_event(b"\x10\x00\x00\x00")


def test_loss_counts_gaps_across_the_sequence_wrap() -> None:
    stats = ReceiveStats()
    sequences = [65533, 65534, 0, 3, 4, 2]  # 65535 and 1 lost, 2 late
    for index, seq in enumerate(sequences):
        stats.on_packet(sequence=seq, timestamp=index * 160, arrival=index * 0.02, octets=160)
    assert stats.extended_max == 65536 + 4
    assert stats.expected == 8
    assert stats.packets == 6
    assert stats.lost == 2
    assert stats.fraction_lost() == (2 << 8) // 8


def test_a_sequence_restart_is_confirmed_by_the_next_packet() -> None:
    stats = ReceiveStats()
    for index, seq in enumerate([10, 11, 30000, 30001, 30002]):
        stats.on_packet(sequence=seq, timestamp=index * 160, arrival=index * 0.02, octets=1)
    assert stats.packets == 2  # the restart resets the count, then 30001 and 30002
    assert stats.lost == 0


def test_jitter_follows_rfc3550_a8() -> None:
    stats = ReceiveStats()
    arrivals = [0.0, 0.020, 0.045, 0.060, 0.085]  # 0, +5 ms, -5 ms, +5 ms deviations
    for index, arrival in enumerate(arrivals):
        stats.on_packet(sequence=index, timestamp=index * 160, arrival=arrival, octets=160)
    # Hand computed: D = 0, 40, 40, 40 samples; J += (|D| - J) / 16.
    jitter = 0.0
    for d in (0, 40, 40, 40):
        jitter += (d - jitter) / 16
    assert stats.jitter == pytest.approx(jitter)
    assert stats.jitter_ms == pytest.approx(jitter / 8)
    assert stats.jitter == pytest.approx(7.041015625)  # 2.5, 4.84375, 7.041015625


@pytest.mark.parametrize("restart", [False, True], ids=["timestamp-jump", "sequence-restart"])
def test_a_new_timestamp_base_is_not_taken_for_jitter(restart: bool) -> None:
    # A peer that restarts (or a forged packet) jumps its timestamps by hours of samples: A.8
    # as written would carry that jump in the jitter for the rest of the call.
    stats = ReceiveStats()
    for index in range(5):
        stats.on_packet(sequence=index, timestamp=index * 160, arrival=index * 0.02, octets=1)
    base = 30000 if restart else 5
    for index in range(5, 10):
        stats.on_packet(
            sequence=base + index,
            timestamp=3_000_000_000 + index * 160,
            arrival=index * 0.02,
            octets=1,
        )
    assert stats.jitter == 0.0
    assert stats.jitter_ms < 1.0


# Digests of audioop's lin2ulaw/lin2alaw over every 16-bit sample and ulaw2lin/alaw2lin over
# every byte, taken with Python 3.11's audioop: the tables give its results byte for byte.
_ENCODE_DIGESTS = {
    "pcmu": "81d633c9e6972a18c74a58720b96cb8ca0bdd096d4060b646dd708c3b846019a",
    "pcma": "38488f6fd710f4686360edc4d38639f96c491595ef93f8eb8d62d5e07ca6ce7b",
}
_DECODE_DIGESTS = {
    "pcmu": "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827",
    "pcma": "e04788d110e58ff8c70c93b8480190d973e3b67876b6119abbaec766cc75c174",
}


@pytest.mark.parametrize("codec", g711.CODECS)
def test_g711_matches_the_reference_tables(codec: g711.Codec) -> None:
    every_sample = struct.pack("<65536h", *range(-32768, 32768))
    encoded = g711.encode(codec, every_sample)
    assert hashlib.sha256(encoded).hexdigest() == _ENCODE_DIGESTS[codec]
    decoded = g711.decode(codec, bytes(range(256)))
    assert hashlib.sha256(decoded).hexdigest() == _DECODE_DIGESTS[codec]
    # Decoding then encoding every code gives it back (G.711 is idempotent on its codes),
    # apart from mu-law's two zeros (0x7F and 0xFF both decode to 0).
    again = g711.encode(codec, decoded)
    assert [b for b in range(256) if again[b] != b] == ([0x7F] if codec == "pcmu" else [])
    assert g711.encode(codec, b"\x00\x00") == bytes([g711.SILENCE_BYTE[codec]])


def test_g711_known_values() -> None:
    assert g711.decode("pcmu", b"\x00\x80\xff") == struct.pack("<3h", -32124, 32124, 0)
    assert g711.decode("pcma", b"\xd5\x55\xaa") == struct.pack("<3h", 8, -8, 32256)
