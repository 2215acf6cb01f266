"""Receive and send statistics of one RTP stream (RFC 3550 appendix A), sans-IO.

Sequence numbers are extended across wraps and packets lost are counted as RFC 3550 A.3 does
(expected minus received, so duplicates can make it negative and it is reported as at least 0).
A jump of more than `MAX_DROPOUT` is taken as a restart of the peer's sequence only when the
next packet confirms it (A.1). Interarrival jitter follows A.8, in timestamp units; arrival
times are passed in (seconds from any fixed origin), so the module reads no clock. A restart,
or a timestamp that jumps by more than `MAX_TRANSIT_JUMP_SECONDS` against the arrival clock (a
new timestamp base, as after a peer's restart or a switch of source), starts the transit
anew instead of adding the jump to the jitter: one such packet would otherwise show hours of
"jitter" for the rest of the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

SEQ_MOD: Final = 1 << 16
MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100
#: A transit difference above this is a discontinuity of the peer's timestamps, not jitter.
MAX_TRANSIT_JUMP_SECONDS: Final = 3.0


@dataclass(slots=True)
class ReceiveStats:
    """Statistics of the packets received from one source."""

    clock_rate: int = 8000
    packets: int = 0
    octets: int = 0
    first_arrival: float | None = None
    _base_seq: int = 0
    _max_seq: int = 0
    _cycles: int = 0
    _bad_seq: int = SEQ_MOD + 1
    _transit: float | None = None
    jitter: float = 0.0  # timestamp units, RFC 3550 A.8
    # What the previous RTCP report covered, for its fraction lost (A.3).
    _expected_prior: int = 0
    _received_prior: int = 0

    def on_packet(self, *, sequence: int, timestamp: int, arrival: float, octets: int) -> bool:
        """Counts one packet. Returns False when it was not counted (the first packet of a
        suspected sequence restart, A.1)."""
        if self.first_arrival is None:
            self.first_arrival = arrival
            self._restart(sequence)
        else:
            delta = (sequence - self._max_seq) % SEQ_MOD
            if delta < MAX_DROPOUT:
                if sequence < self._max_seq:
                    self._cycles += SEQ_MOD
                self._max_seq = sequence
            elif delta <= SEQ_MOD - MAX_MISORDER:
                if sequence != self._bad_seq:
                    self._bad_seq = (sequence + 1) % SEQ_MOD
                    return False
                self._restart(sequence)  # two packets in sequence: the peer restarted
            # else: a duplicate or reordered packet, counted below
        self.packets += 1
        self.octets += octets
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            # The timestamp is modulo 2^32: take the transit difference modulo it too.
            d = abs((transit - self._transit + 2**31) % 2**32 - 2**31)
            if d <= MAX_TRANSIT_JUMP_SECONDS * self.clock_rate:
                self.jitter += (d - self.jitter) / 16
        self._transit = transit
        return True

    def _restart(self, sequence: int) -> None:
        self._transit = None  # a restarted sender has a new timestamp base too
        self._base_seq = sequence
        self._max_seq = sequence
        self._cycles = 0
        self._bad_seq = SEQ_MOD + 1
        self.packets = 0
        self.octets = 0
        self._expected_prior = 0
        self._received_prior = 0

    @property
    def extended_max(self) -> int:
        """The highest sequence number received, extended by the wraps seen."""
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        if self.first_arrival is None:
            return 0
        return self.extended_max - self._base_seq + 1

    @property
    def lost(self) -> int:
        """Packets lost (A.3), never below 0."""
        return max(0, self.expected - self.packets)

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate

    def fraction_lost(self) -> int:
        """The fraction lost since the previous call, out of 256 (A.3), for an RTCP report."""
        expected = self.expected - self._expected_prior
        received = self.packets - self._received_prior
        self._expected_prior = self.expected
        self._received_prior = self.packets
        lost = expected - received
        return 0 if expected <= 0 or lost <= 0 else min(255, (lost << 8) // expected)
