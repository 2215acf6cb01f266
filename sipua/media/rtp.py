"""RTP packets (RFC 3550 §5.1), sans-IO: parse what a peer sends, build what we send.

`parse_rtp` reads a datagram and raises only `RtpError`: the fixed header, CSRC list, header
extension (§5.3.1) and padding (§5.1) are checked against the datagram's length before they are
used. `is_rtcp` tells RTCP from RTP on a multiplexed port (RFC 5761 §4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from sipua.media.errors import RtpError

RTP_VERSION: Final = 2
#: The largest datagram read or built: an Ethernet MTU's worth is what a voice call sends.
MAX_PACKET_BYTES: Final = 1500
HEADER_BYTES: Final = 12
_HEADER: Final = struct.Struct("!BBHII")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet, padding removed (the header extension is kept as sent)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    #: (profile-defined 16 bits, extension data) when the X bit is set.
    extension: tuple[int, bytes] | None = None


def is_rtcp(data: bytes) -> bool:
    """Whether a datagram on a multiplexed port is RTCP: its second byte is 192-223 (RFC 5761
    §4: RTCP packet types 200-204 with the marker bit, which RTP payload types cannot be)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def parse_rtp(data: bytes) -> RtpPacket:
    """Reads an RTP packet.

    Raises:
        RtpError: too short or too long, not version 2, CSRC list, extension or padding longer
            than the datagram, or an RTCP packet type.
    """
    size = len(data)
    if size < HEADER_BYTES:
        raise RtpError(f"RTP packet of {size} bytes is shorter than the 12-byte header")
    if size > MAX_PACKET_BYTES:
        raise RtpError(f"RTP packet of {size} bytes is over {MAX_PACKET_BYTES}")
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {first >> 6}, not 2")
    if is_rtcp(data):
        raise RtpError(f"packet type {second} is RTCP, not RTP")
    offset = HEADER_BYTES
    count = first & 0x0F
    end = size
    if first & 0x20:  # padding: the last octet counts the padding octets, itself included
        pad = data[-1]
        if pad == 0 or pad > size - offset - 4 * count:
            raise RtpError(f"RTP padding of {pad} bytes does not fit the packet")
        end -= pad
    if offset + 4 * count > end:
        raise RtpError(f"RTP CSRC count {count} is longer than the packet")
    csrcs = struct.unpack_from(f"!{count}I", data, offset) if count else ()
    offset += 4 * count
    extension = None
    if first & 0x10:
        if offset + 4 > end:
            raise RtpError("RTP header extension is longer than the packet")
        profile, words = struct.unpack_from("!HH", data, offset)
        offset += 4
        if offset + 4 * words > end:
            raise RtpError(f"RTP header extension of {words} words is longer than the packet")
        extension = (profile, bytes(data[offset : offset + 4 * words]))
        offset += 4 * words
    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=bytes(data[offset:end]),
        marker=bool(second & 0x80),
        csrcs=tuple(csrcs),
        extension=extension,
    )


def build_rtp(packet: RtpPacket) -> bytes:
    """The bytes of `packet` (no padding).

    Raises:
        ValueError: a field out of range (our own bug, not peer input), or over the size bound.
    """
    if not 0 <= packet.payload_type <= 127 or len(packet.csrcs) > 15:
        raise ValueError("payload type must be 0-127 and at most 15 CSRCs")
    first = RTP_VERSION << 6 | len(packet.csrcs) | (0x10 if packet.extension else 0)
    second = packet.payload_type | (0x80 if packet.marker else 0)
    parts = [_HEADER.pack(first, second, packet.sequence, packet.timestamp, packet.ssrc)]
    parts += [struct.pack("!I", csrc) for csrc in packet.csrcs]
    if packet.extension is not None:
        profile, body = packet.extension
        if len(body) % 4:
            raise ValueError("an RTP header extension is a whole number of 32-bit words")
        parts.append(struct.pack("!HH", profile, len(body) // 4) + body)
    parts.append(packet.payload)
    data = b"".join(parts)
    if len(data) > MAX_PACKET_BYTES:
        raise ValueError(f"RTP packet of {len(data)} bytes is over {MAX_PACKET_BYTES}")
    return data
