"""RFC 4733 telephone-events (DTMF digits as RTP payloads), sans-IO.

Sending: `event_payloads(digit, ...)` gives the payloads of one digit, one per 20 ms packet
(§2.5.1: the same timestamp for the whole event, the duration growing, the marker on the first,
the end packet sent three times). Receiving: `DtmfReceiver.feed` reports each digit once, when
its first packet arrives (retransmitted end packets and later updates of the same event, known
by its timestamp, are not reported again).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from sipua.media.errors import RtpError

#: RFC 4733 §3.2 event codes 0-15.
DIGITS: Final = "0123456789*#ABCD"
#: Samples per 20 ms packet at 8 kHz.
SAMPLES_PER_PACKET: Final = 160
END_REPEATS: Final = 3
_EVENT: Final = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class EventPayload:
    """One telephone-event packet of a digit: its payload and whether it starts the event."""

    payload: bytes
    marker: bool


def event_code(digit: str) -> int:
    """The event code of a DTMF digit (`0-9 * # A-D`).

    Raises:
        ValueError: not a DTMF digit.
    """
    index = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise ValueError(f"{digit!r} is not a DTMF digit (0-9, *, #, A-D)")
    return index


def event_payloads(digit: str, *, duration_ms: int = 100, volume: int = 10) -> list[EventPayload]:
    """The payloads of one digit, one per 20 ms, ending with `END_REPEATS` end packets."""
    code = event_code(digit)
    packets = max(1, duration_ms // 20)
    out = []
    for index in range(1, packets + 1):
        end = index == packets
        duration = index * SAMPLES_PER_PACKET
        flags = (0x80 if end else 0) | (volume & 0x3F)
        payload = _EVENT.pack(code, flags, duration)
        out += [EventPayload(payload, index == 1)] * (END_REPEATS if end else 1)
    return out


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """A telephone-event payload read from a peer."""

    digit: str
    end: bool
    volume: int
    duration: int


def parse_event(payload: bytes) -> DtmfEvent:
    """Reads a telephone-event payload (RFC 4733 §2.3).

    Raises:
        RtpError: shorter than 4 bytes, or an event that is not a DTMF digit.
    """
    if len(payload) < _EVENT.size:
        raise RtpError(f"telephone-event payload of {len(payload)} bytes, not 4")
    code, flags, duration = _EVENT.unpack_from(payload)
    if code >= len(DIGITS):
        raise RtpError(f"telephone-event {code} is not a DTMF digit")
    return DtmfEvent(DIGITS[code], bool(flags & 0x80), flags & 0x3F, duration)


class DtmfReceiver:
    """Reports each received digit once (an event is known by its RTP timestamp)."""

    def __init__(self) -> None:
        self._last_timestamp: int | None = None

    def feed(self, timestamp: int, payload: bytes) -> str | None:
        """The digit that this packet starts, or None (a repeat, or not a digit).

        Raises:
            RtpError: the payload is not a telephone-event.
        """
        event = parse_event(payload)
        if timestamp == self._last_timestamp:
            return None
        self._last_timestamp = timestamp
        return event.digit
