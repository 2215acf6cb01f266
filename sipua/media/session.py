"""The media of one call on UDP: `MediaSession` binds the ports the SDP announces, paces RTP at
20 ms on trio's clock, reads what arrives, and keeps the call's `MediaReport`.

Ports: an even RTP port and the odd RTCP port above it (RFC 3550 §11) are bound together from
the configured range, on the address the SDP announces, before the offer or answer is written;
with rtcp-mux (RFC 5761) negotiated the odd one is simply not used. Trying every pair is bounded
by the range, and a range with none free raises `PortRangeExhausted` (a call answers 503).

Receiving never ends the call: a datagram from a source other than the peer's, one that is not
RTP, one of a payload type the call did not negotiate, and an SRTP packet that fails
authentication are each counted in the report and dropped. The peer is the SDP's address and
port, or with symmetric RTP (RFC 4961) the source its packets really come from, learnt in the
first seconds of the call as `sipua.media.latching` describes (one stray packet does not take
the call's media over). Sending uses the same socket, to the peer; the report's `remote` is
where the media goes. RTCP goes where the plan says (rtcp-mux, a=rtcp
or the port above). A send the network refuses (an ICMP error reported on the socket) is
skipped; a destination no datagram can go to raises `MediaError` out of `run`.
"""

from __future__ import annotations

import errno
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import trio

from sipua.media import dtmf, rtcp
from sipua.media.dtmf import DtmfReceiver, EventPayload
from sipua.media.errors import MediaError, PortRangeExhausted, RtpError, SrtpAuthFailed, SrtpError
from sipua.media.latching import SourceLatch
from sipua.media.negotiation import MediaPlan, MediaSecurity
from sipua.media.rtp import MAX_PACKET_BYTES, RtpPacket, build_rtp, is_rtcp, parse_rtp
from sipua.media.sources import FRAME_SAMPLES, MediaSource, WavRecorder
from sipua.media.srtp import SrtpContext
from sipua.media.stats import ReceiveStats

PACKET_INTERVAL: Final = 0.020
#: Seconds between our RTCP reports (RFC 3550 §6.2's 5 s minimum for a two-party call).
RTCP_INTERVAL: Final = 5.0
#: A sender that fell behind by more than this restarts its schedule instead of bursting.
MAX_LAG: Final = 0.2
#: DTMF digits queued for sending at once.
MAX_QUEUED_DIGITS: Final = 32
#: Digits kept in the report.
MAX_REPORTED_DIGITS: Final = 64
_RECV_BYTES: Final = MAX_PACKET_BYTES + 1  # one more, to see an oversized datagram
#: Packets of one queued digit: 5 of 20 ms, the end repeated twice more, and a 100 ms pause.
_PACKETS_PER_DIGIT: Final = 5 + 2 + 5


@dataclass(frozen=True, slots=True)
class PortRange:
    """The UDP ports media may use, both ends included (only even ports start a pair)."""

    low: int = 16384
    high: int = 32767

    def __post_init__(self) -> None:
        if not 1024 <= self.low < self.high <= 65535:
            raise ValueError(f"media port range {self.low}-{self.high} is not within 1024-65535")

    @property
    def pairs(self) -> int:
        """The number of even/odd port pairs in the range."""
        first = self.low + self.low % 2
        return max(0, (self.high - first + 1) // 2)


@dataclass(slots=True)
class MediaReport:
    """What one call's media did (the `call-media` event). Bytes are RTP payload octets (as
    RTCP's octet count); packets received and lost count the agreed codec's stream. `remote`
    is the peer's address and port the media is sent to and taken from (the SDP's, or the
    source symmetric RTP learnt); `wrong_source` counts datagrams dropped for their source."""

    local_port: int
    remote: str | None = None
    codec: str | None = None
    srtp_suite: str | None = None
    security: MediaSecurity | None = None
    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    packets_lost: int = 0
    jitter_ms: float = 0.0
    first_packet_after: float | None = None  # seconds from the start of media
    srtp_auth_failures: int = 0
    wrong_source: int = 0
    malformed: int = 0
    rtcp_received: int = 0
    peer_reported_lost: int | None = None
    digits_received: str = ""

    def as_event(self) -> dict[str, object]:
        """The fields of the `call-media` log event."""
        return {
            "local_port": self.local_port,
            "remote": self.remote,
            "codec": self.codec,
            "srtp": self.srtp_suite or "none",
            "encrypted": bool(self.security and self.security.encrypted),
            "security_reason": self.security.reason if self.security else None,
            "packets_sent": self.packets_sent,
            "bytes_sent": self.bytes_sent,
            "packets_received": self.packets_received,
            "bytes_received": self.bytes_received,
            "packets_lost": self.packets_lost,
            "jitter_ms": round(self.jitter_ms, 2),
            "first_packet_after": None
            if self.first_packet_after is None
            else round(self.first_packet_after, 3),
            "srtp_auth_failures": self.srtp_auth_failures,
            "wrong_source": self.wrong_source,
            "malformed": self.malformed,
            "digits_received": self.digits_received,
        }


def _bound_socket(address: str, port: int) -> trio.socket.SocketType | None:
    """A UDP socket bound on `address`:`port`, or None when the port is taken."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((address, port))  # a local bind does not block
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            return None
        raise MediaError(f"cannot bind media on {address}: {exc.strerror or exc}") from None
    return trio.socket.from_stdlib_socket(sock)


def bind_pair(
    address: str, ports: PortRange, *, first_pair: int
) -> tuple[trio.socket.SocketType, trio.socket.SocketType, int]:
    """Binds an even RTP port and the RTCP port above it on `address`.

    Pairs are tried from pair number `first_pair` (modulo the range: callers spread their calls
    over it) and each at most once.

    Raises:
        PortRangeExhausted: every pair of the range is taken.
        MediaError: the address cannot be bound at all (not an address of this host).
    """
    start = ports.low + ports.low % 2
    for step in range(ports.pairs):
        port = start + 2 * ((first_pair + step) % ports.pairs)
        rtp_sock = _bound_socket(address, port)
        if rtp_sock is None:
            continue
        rtcp_sock = _bound_socket(address, port + 1)
        if rtcp_sock is not None:
            return rtp_sock, rtcp_sock, port
        rtp_sock.close()
    raise PortRangeExhausted(
        f"no free RTP/RTCP port pair in {ports.low}-{ports.high} on {address} "
        f"({ports.pairs} pairs tried); widen media.port_range or end other calls"
    )


async def _send(
    sock: trio.socket.SocketType, data: bytes, destination: tuple[str, int], what: str
) -> bool:
    """Sends one datagram; False when the network refused it (an ICMP error reported on the
    socket, no route: the peer may not be there yet, and the pace goes on).

    Raises:
        MediaError: the destination is not one a datagram can go to (a port over 65535, an
            address the socket cannot take): every later packet would fail the same way.
    """
    try:
        await sock.sendto(data, destination)
    except OSError:
        return False
    except (OverflowError, ValueError) as exc:
        host, port = destination
        raise MediaError(f"cannot send {what} to {host}:{port}: {exc}") from None
    return True


def _address(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def _first_error(group: BaseExceptionGroup[MediaError]) -> MediaError:
    leaf = group.exceptions[0]
    return leaf if isinstance(leaf, MediaError) else _first_error(leaf)


class MediaSession:
    """The RTP/RTCP (or SRTP/SRTCP) of one call.

    Open it with `open` (which binds the ports the SDP will announce), start `run` with the
    plan that offer/answer produced, and cancel it to end the call; `report` can be read at
    any time.
    """

    def __init__(
        self,
        rtp_sock: trio.socket.SocketType,
        rtcp_sock: trio.socket.SocketType,
        *,
        address: str,
        port: int,
        symmetric: bool = True,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.address = address
        self.port = port
        self.symmetric = symmetric
        self._rtp = rtp_sock
        self._rtcp = rtcp_sock
        self._ssrc = int.from_bytes(random_bytes(4), "big")
        self._seq = int.from_bytes(random_bytes(2), "big")
        self._timestamp = int.from_bytes(random_bytes(4), "big")
        self._cname = f"sipua-{random_bytes(6).hex()}"
        self._stats = ReceiveStats()
        self._dtmf_out: deque[EventPayload] = deque()
        self._dtmf_in = DtmfReceiver()
        self._event_timestamp = 0
        self._srtp: SrtpContext | None = None
        self._plan: MediaPlan | None = None
        self._source: MediaSource | None = None
        self._recorder: WavRecorder | None = None
        self._latch: SourceLatch | None = None
        self._peer_rtcp: tuple[str, int] | None = None
        self._wrong_source = 0
        self._started: float | None = None
        self._first_packet: float | None = None
        self._last_sr = 0
        self._last_sr_at = 0.0
        self._remote_ssrc = 0
        self._report = MediaReport(local_port=port)

    @classmethod
    def open(
        cls,
        address: str,
        ports: PortRange,
        *,
        symmetric: bool = True,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> MediaSession:
        """Binds a port pair on `address` from `ports` (see `bind_pair`)."""
        first = int.from_bytes(random_bytes(4), "big") % max(1, ports.pairs)
        rtp_sock, rtcp_sock, port = bind_pair(address, ports, first_pair=first)
        return cls(
            rtp_sock,
            rtcp_sock,
            address=address,
            port=port,
            symmetric=symmetric,
            random_bytes=random_bytes,
        )

    def close(self) -> None:
        """Closes the sockets and the recording."""
        self._rtp.close()
        self._rtcp.close()
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None

    def send_digits(self, digits: str) -> None:
        """Queues DTMF digits (RFC 4733) to send, 100 ms each with 100 ms between.

        Raises:
            ValueError: a character that is not a DTMF digit, or too many digits queued.
        """
        packets = [
            packet
            for digit in digits
            for packet in (*dtmf.event_payloads(digit), *[EventPayload(b"", False)] * 5)
        ]  # each digit, then a 100 ms pause
        if len(self._dtmf_out) + len(packets) > MAX_QUEUED_DIGITS * _PACKETS_PER_DIGIT:
            raise ValueError(f"at most {MAX_QUEUED_DIGITS} DTMF digits queued at a time")
        self._dtmf_out.extend(packets)

    def report(self) -> MediaReport:
        """The media report so far."""
        report = self._report
        report.packets_received = self._stats.packets
        report.bytes_received = self._stats.octets
        report.packets_lost = self._stats.lost
        report.jitter_ms = self._stats.jitter_ms
        report.wrong_source = self._wrong_source
        if self._latch is not None:
            report.wrong_source += self._latch.refused
            report.remote = _address(self._latch.peer)
        if self._first_packet is not None and self._started is not None:
            report.first_packet_after = self._first_packet - self._started
        return report

    async def run(
        self,
        plan: MediaPlan,
        source: MediaSource,
        *,
        recorder: WavRecorder | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Sends and receives until cancelled. Run again with another plan (the 2xx's answer
        after early media), the session goes on where it was: same sockets and counters, and
        the peer is learnt anew for the new plan's address.

        Raises:
            SrtpError: libsrtp refused the negotiated keys.
            MediaError: the media cannot go on: a destination no datagram can go to, a media
                file that became unreadable (the first such error, never an exception group).
        """
        self._plan = plan
        self._source = source
        self._recorder = recorder
        now = trio.current_time()
        if self._started is None:  # a run with a new plan (a 2xx after early media) goes on
            self._started = now
        self._latch = SourceLatch((plan.remote_address, plan.remote_port), symmetric=self.symmetric)
        self._peer_rtcp = plan.remote_rtcp
        if plan.srtp is not None:
            keys = plan.srtp
            self._srtp = SrtpContext(
                keys.suite, local_key=keys.local_key, remote_key=keys.remote_key
            )
        report = self._report
        report.codec = plan.codec
        report.srtp_suite = plan.srtp.suite.name if plan.srtp else None
        report.security = plan.security
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive, self._rtp)
                if not plan.rtcp_mux:
                    nursery.start_soon(self._receive, self._rtcp)
                if plan.direction in ("sendrecv", "sendonly"):
                    nursery.start_soon(self._send_loop)
                nursery.start_soon(self._rtcp_loop)
                task_status.started()
        except* MediaError as group:
            raise _first_error(group) from None

    # --- sending ---------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        origin = trio.current_time()
        tick = 0
        while True:
            tick += 1
            due = origin + tick * PACKET_INTERVAL
            now = trio.current_time()
            if now - due > MAX_LAG:
                origin, tick, due = now, 0, now
            await trio.sleep_until(due)
            await self._send_one()

    async def _send_one(self) -> None:
        plan = self._plan
        assert plan is not None
        assert self._source is not None
        self._seq = (self._seq + 1) & 0xFFFF
        self._timestamp = (self._timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
        if self._dtmf_out and plan.event_payload_type is not None:
            event = self._dtmf_out.popleft()
            if event.marker:
                self._event_timestamp = self._timestamp
            if not event.payload:
                return  # the pause between digits
            packet = RtpPacket(
                plan.event_payload_type,
                self._seq,
                self._event_timestamp,
                self._ssrc,
                event.payload,
                marker=event.marker,
            )
            self._source.frame()  # the played audio keeps its pace under the digit
        else:
            packet = RtpPacket(
                plan.payload_type, self._seq, self._timestamp, self._ssrc, self._source.frame()
            )
        data = build_rtp(packet)
        if self._srtp is not None:
            data = self._srtp.protect(data)
        assert self._latch is not None
        if not await _send(self._rtp, data, self._latch.peer, "RTP"):
            return
        self._report.packets_sent += 1
        self._report.bytes_sent += len(packet.payload)

    async def _rtcp_loop(self) -> None:
        # RFC 3550 §6.2: the first report after half the interval, so a short call has one.
        await trio.sleep(RTCP_INTERVAL / 2)
        while True:
            await self._send_report()
            await trio.sleep(RTCP_INTERVAL)

    async def _send_report(self) -> None:
        now = trio.current_time()
        block = None
        if self._stats.first_arrival is not None:
            delay = int((now - self._last_sr_at) * 65536) if self._last_sr else 0
            block = rtcp.ReportBlock(
                ssrc=self._remote_ssrc,
                fraction_lost=self._stats.fraction_lost(),
                cumulative_lost=self._stats.lost,
                highest_sequence=self._stats.extended_max,
                jitter=int(self._stats.jitter),
                last_sr=self._last_sr,
                delay_since_last_sr=delay,
            )
        sender = None
        if self._report.packets_sent:
            sender = rtcp.SenderInfo(
                rtcp.ntp_timestamp(time.time()),
                self._timestamp,
                self._report.packets_sent,
                self._report.bytes_sent,
            )
        data = rtcp.build_report(ssrc=self._ssrc, cname=self._cname, sender=sender, block=block)
        if self._srtp is not None:
            data = self._srtp.protect_rtcp(data)
        plan = self._plan
        assert plan is not None
        assert self._peer_rtcp is not None
        sock = self._rtp if plan.rtcp_mux else self._rtcp
        await _send(sock, data, self._peer_rtcp, "RTCP")

    # --- receiving -------------------------------------------------------------------------

    async def _receive(self, sock: trio.socket.SocketType) -> None:
        rtcp_port = sock is self._rtcp
        while True:
            try:
                data, source = await sock.recvfrom(_RECV_BYTES)
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                    return  # closed under us: the call is ending
                await trio.lowlevel.checkpoint()
                continue  # an ICMP error reported on the socket: nothing to read
            origin = (source[0], source[1])
            if rtcp_port or is_rtcp(data):
                self._on_rtcp(data, origin)
            else:
                self._on_rtp(data, origin, trio.current_time())

    def _rtcp_expected(self, origin: tuple[str, int]) -> bool:
        if origin == self._peer_rtcp:  # where the SDP (a=rtcp, RFC 3605) says it comes from
            return True
        # Symmetric: from the peer's host, whatever port its NAT gave RTCP.
        return self.symmetric and self._latch is not None and origin[0] == self._latch.peer[0]

    def _decrypt(self, data: bytes, *, rtcp_packet: bool) -> bytes | None:
        """The packet in clear (SRTP/SRTCP removed), or None, counted, when it fails."""
        if self._srtp is None:
            return data
        try:
            return self._srtp.unprotect_rtcp(data) if rtcp_packet else self._srtp.unprotect(data)
        except SrtpAuthFailed:
            self._report.srtp_auth_failures += 1
        except SrtpError:
            self._report.malformed += 1
        return None

    def _on_rtp(self, data: bytes, origin: tuple[str, int], arrival: float) -> None:
        report = self._report
        latch = self._latch
        assert latch is not None
        settled = latch.settled(arrival)
        if settled and origin != latch.peer:
            self._wrong_source += 1
            return
        clear = self._decrypt(data, rtcp_packet=False)
        if clear is None:
            return
        data = clear
        try:
            packet = parse_rtp(data)
        except RtpError:
            report.malformed += 1
            return
        plan = self._plan
        assert plan is not None
        if packet.payload_type not in (plan.payload_type, plan.event_payload_type):
            report.malformed += 1  # comfort noise and other formats we did not agree on
            return
        if not settled and not latch.learn(origin, packet.sequence, arrival):
            return  # a source on probation, counted by the latch if it never becomes the peer
        if self._first_packet is None:
            self._first_packet = arrival
        if packet.payload_type == plan.event_payload_type:
            try:
                digit = self._dtmf_in.feed(packet.timestamp, packet.payload)
            except RtpError:
                report.malformed += 1
                return
            if digit and len(report.digits_received) < MAX_REPORTED_DIGITS:
                report.digits_received += digit
            return
        self._remote_ssrc = packet.ssrc
        self._stats.on_packet(
            sequence=packet.sequence,
            timestamp=packet.timestamp,
            arrival=arrival,
            octets=len(packet.payload),
        )
        assert self._source is not None
        self._source.received(packet.payload)
        if self._recorder is not None:
            self._recorder.write(packet.payload)

    def _on_rtcp(self, data: bytes, origin: tuple[str, int]) -> None:
        report = self._report
        if not self._rtcp_expected(origin):
            self._wrong_source += 1
            return
        clear = self._decrypt(data, rtcp_packet=True)
        if clear is None:
            return
        data = clear
        try:
            parsed = rtcp.parse_compound(data)
        except RtpError:
            report.malformed += 1
            return
        report.rtcp_received += 1
        if parsed.sender is not None:
            self._last_sr = (parsed.sender.ntp_timestamp >> 16) & 0xFFFFFFFF
            self._last_sr_at = trio.current_time()
        for block in parsed.blocks:
            if block.ssrc == self._ssrc:
                report.peer_reported_lost = block.cumulative_lost
        if self.symmetric and self._latch is not None and self._latch.latched:
            self._peer_rtcp = origin
