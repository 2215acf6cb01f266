"""Which source a call's RTP is taken from, and where ours is sent: the SDP's address, or with
symmetric RTP (RFC 4961, the way through a NAT) the source the peer's packets really come from,
learnt without letting a stranger take the call's media over. Sans-IO: time is an argument.

Learning works as strict RTP does in telephony servers (Asterisk's strictrtp learning mode,
rtpengine's address learning), for `LEARNING_SECONDS` from the first packet the peer sends
(however late that is: a callee behind a NAT may ring for long after its 183, or stay silent
at first):

- a packet from the address and port the SDP gave latches onto it at once;
- another source is on probation: it becomes the peer after `LATCH_PACKETS` consecutive
  packets in sequence (each one's sequence number the previous one's + 1); a packet from a
  different source, or out of sequence, starts the probation again from that packet. Packets
  on probation are not played;
- once latched, the peer never changes for the rest of the call, and when the learning time
  ends without a latch the SDP's address stays the peer. Packets from any other source are
  then dropped.

Only packets that are valid RTP (SRTP that authenticates) of a payload type the call
negotiated are shown to `learn`: one stray datagram, garbage or a forged packet decides nothing.
"""

from __future__ import annotations

from typing import Final

#: Consecutive in-sequence packets a source other than the SDP's must send to become the peer.
LATCH_PACKETS: Final = 4
#: Seconds from the first packet received during which a source can be learnt.
LEARNING_SECONDS: Final = 5.0
_SEQ_MOD: Final = 1 << 16

Address = tuple[str, int]


class SourceLatch:
    """The peer of one RTP stream (see the module's description).

    `peer` is where to send and what to accept once `settled`; `refused` counts the packets
    dropped for their source while learning (a stranger's, or a probation that never ended in
    a latch).
    """

    def __init__(self, signalled: Address, *, symmetric: bool) -> None:
        self.signalled = signalled
        self.peer = signalled
        #: True once a source was learnt (the SDP's, or one that passed probation).
        self.latched = False
        self._learning = symmetric
        self._until: float | None = None  # set by the first packet
        self._candidate: Address | None = None
        self._candidate_seq = 0
        self._candidate_packets = 0
        self._given_up = 0

    @property
    def refused(self) -> int:
        """Packets dropped for their source while learning, those still on probation included."""
        return self._given_up + self._candidate_packets

    def settled(self, now: float) -> bool:
        """Whether the peer is fixed: latched, symmetric RTP off, or the learning time over."""
        if self._learning and self._until is not None and now >= self._until:
            self._learning = False
        return not self._learning

    def learn(self, origin: Address, sequence: int, now: float) -> bool:
        """Takes one valid packet of a negotiated payload type from `origin`; True when it is
        from the peer (perhaps just latched), False when it is to be dropped (on probation, or
        from another source once settled)."""
        if self._until is None:
            self._until = now + LEARNING_SECONDS
        if self.settled(now):
            return origin == self.peer
        if origin == self.signalled:
            self._latch(origin)
            return True
        if origin == self._candidate and sequence == (self._candidate_seq + 1) % _SEQ_MOD:
            self._candidate_packets += 1
        else:
            self._given_up += self._candidate_packets
            self._candidate = origin
            self._candidate_packets = 1
        self._candidate_seq = sequence
        if self._candidate_packets >= LATCH_PACKETS:
            self._latch(origin)
            return True
        return False

    def _latch(self, origin: Address) -> None:
        if self._candidate != origin:
            self._given_up += self._candidate_packets
        self._candidate = None
        self._candidate_packets = 0
        self.peer = origin
        self.latched = True
        self._learning = False
