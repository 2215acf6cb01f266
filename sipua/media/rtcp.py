"""RTCP sender and receiver reports (RFC 3550 §6.4), sans-IO, as much as call statistics need.

`build_report` makes a compound packet (§6.1: SR when we sent since the last report, else RR,
with one reception report block, then SDES CNAME). `parse_compound` reads a peer's compound
packet and returns its sender info and report blocks; every length is checked against the
datagram, the number of packets is bounded, and only `RtpError` escapes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from sipua.media.errors import RtpError
from sipua.media.rtp import MAX_PACKET_BYTES, RTP_VERSION

SR: Final = 200
RR: Final = 201
SDES: Final = 202
BYE: Final = 203
#: Packets read from one compound datagram (a report, SDES, BYE and a few extra is normal).
MAX_COMPOUND_PACKETS: Final = 16
#: Seconds between 1900 (NTP's epoch) and 1970 (the Unix epoch).
NTP_UNIX_OFFSET: Final = 2_208_988_800
_BLOCK: Final = struct.Struct("!IIIIII")


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """A reception report block (§6.4.1): how one source's stream is received."""

    ssrc: int
    fraction_lost: int  # lost fraction since the previous report, out of 256
    cumulative_lost: int  # signed 24-bit
    highest_sequence: int  # extended highest sequence number received
    jitter: int  # interarrival jitter, in timestamp units
    last_sr: int  # middle 32 bits of the last SR's NTP timestamp
    delay_since_last_sr: int  # in units of 1/65536 s


@dataclass(frozen=True, slots=True)
class SenderInfo:
    """The sender information of an SR (§6.4.1)."""

    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int


@dataclass(frozen=True, slots=True)
class RtcpReport:
    """What one compound RTCP packet told us."""

    ssrc: int
    sender: SenderInfo | None
    blocks: tuple[ReportBlock, ...]
    bye: bool = False


def ntp_timestamp(unix_time: float) -> int:
    """The 64-bit NTP timestamp of a Unix time (RFC 3550 §4)."""
    seconds = int(unix_time) + NTP_UNIX_OFFSET
    fraction = int((unix_time % 1.0) * (1 << 32))
    return (seconds & 0xFFFFFFFF) << 32 | (fraction & 0xFFFFFFFF)


def _header(count: int, packet_type: int, words: int) -> bytes:
    return struct.pack("!BBH", RTP_VERSION << 6 | count, packet_type, words)


def build_report(
    *,
    ssrc: int,
    cname: str,
    sender: SenderInfo | None,
    block: ReportBlock | None,
) -> bytes:
    """A compound SR or RR packet with at most one report block, and an SDES CNAME."""
    blocks = b"" if block is None else _encode_block(block)
    count = 0 if block is None else 1
    if sender is not None:
        body = struct.pack(
            "!IQIII",
            ssrc,
            sender.ntp_timestamp,
            sender.rtp_timestamp,
            sender.packet_count & 0xFFFFFFFF,
            sender.octet_count & 0xFFFFFFFF,
        )
        report = _header(count, SR, (4 + len(body) + len(blocks)) // 4 - 1) + body + blocks
    else:
        report = _header(count, RR, (8 + len(blocks)) // 4 - 1) + struct.pack("!I", ssrc) + blocks
    name = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, 1, len(name)) + name + b"\x00"  # CNAME item, end of list
    chunk += b"\x00" * (-len(chunk) % 4)
    sdes = _header(1, SDES, len(chunk) // 4) + chunk
    return report + sdes


def _encode_block(block: ReportBlock) -> bytes:
    lost = block.cumulative_lost
    lost = max(-0x800000, min(0x7FFFFF, lost)) & 0xFFFFFF
    return _BLOCK.pack(
        block.ssrc,
        (block.fraction_lost & 0xFF) << 24 | lost,
        block.highest_sequence & 0xFFFFFFFF,
        max(0, block.jitter) & 0xFFFFFFFF,
        block.last_sr & 0xFFFFFFFF,
        block.delay_since_last_sr & 0xFFFFFFFF,
    )


def _decode_blocks(data: bytes, offset: int, count: int, end: int) -> tuple[ReportBlock, ...]:
    if offset + count * _BLOCK.size > end:
        raise RtpError(f"RTCP report with {count} blocks is longer than its packet")
    blocks = []
    for index in range(count):
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(
            data, offset + index * _BLOCK.size
        )
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr))
    return tuple(blocks)


def parse_compound(data: bytes) -> RtcpReport:
    """Reads a compound RTCP packet (RFC 3550 §6.1): the first SR or RR, and whether a BYE
    came with it. Other packet types (SDES, APP, feedback) are skipped by their length; a
    packet that does not start with SR or RR (RFC 5506 reduced size) gives a report without
    sender info or blocks.

    Raises:
        RtpError: not RTCP, a length that runs past the datagram, or more than
            `MAX_COMPOUND_PACKETS` packets.
    """
    size = len(data)
    if size < 8 or size > MAX_PACKET_BYTES:
        raise RtpError(f"RTCP packet of {size} bytes is not 8-{MAX_PACKET_BYTES}")
    offset = 0
    report: RtcpReport | None = None
    bye = False
    for _ in range(MAX_COMPOUND_PACKETS):
        if offset == size:
            break
        if offset + 4 > size:
            raise RtpError(f"RTCP compound packet has {size - offset} stray bytes at its end")
        first, packet_type, words = struct.unpack_from("!BBH", data, offset)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTCP version {first >> 6}, not 2")
        end = offset + 4 * (words + 1)
        if end > size:
            raise RtpError(f"RTCP packet type {packet_type} of {words + 1} words overruns")
        count = first & 0x1F
        if report is None and packet_type not in (SR, RR):
            # A reduced-size packet (RFC 5506: an APP or feedback packet alone, as baresip's
            # keep-alives are): no report in it.
            if end - offset < 8:
                raise RtpError(f"RTCP packet type {packet_type} is shorter than its SSRC")
            (ssrc,) = struct.unpack_from("!I", data, offset + 4)
            report = RtcpReport(ssrc, None, ())
        elif packet_type in (SR, RR) and report is None:
            if offset + 8 > end:
                raise RtpError("RTCP report is shorter than its SSRC")
            (ssrc,) = struct.unpack_from("!I", data, offset + 4)
            sender = None
            start = offset + 8
            if packet_type == SR:
                if start + 20 > end:
                    raise RtpError("RTCP SR is shorter than its sender info")
                sender = SenderInfo(*struct.unpack_from("!QIII", data, start))
                start += 20
            report = RtcpReport(ssrc, sender, _decode_blocks(data, start, count, end))
        elif packet_type == BYE:
            bye = True
        offset = end
    else:
        if offset != size:
            raise RtpError(f"RTCP compound packet has more than {MAX_COMPOUND_PACKETS} packets")
    assert report is not None  # size >= 8 guarantees one packet was read
    return RtcpReport(report.ssrc, report.sender, report.blocks, bye)
