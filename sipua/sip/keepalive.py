"""RFC 5626 §4.4.1 keep-alive for a flow over a connection-oriented transport, deadline-driven.

Theory of operation: the UA sends a CRLFCRLF "ping" on the registration flow; the registrar
answers with a CRLF "pong". The interval is the configured one, or the registrar's Flow-Timer
when it sent one, or the RFC's default of 120 s for connection-oriented transports; each interval
is drawn at random between 80% and 100% of that value (RFC 5626 §4.4.1), so that many UAs
restarted together do not ping in lock step. A registrar that does not implement RFC 5626 may
never answer pings, so a missing pong means nothing until the registrar has shown that it does
answer (one pong seen); from then on, a pong that has not arrived 10 s after its ping means the
flow is dead (RFC 5626 §4.4.1: "If a pong is not received within 10 seconds after sending a
ping..."), and the UA drops the lock, reconnects and registers again.

`KeepaliveSchedule` is pure: the connection asks `next_deadline()`, sleeps until then and calls
`handle_timer(now)`, which says whether to send a ping or that the flow died.
"""

from __future__ import annotations

import enum
from typing import Final, Protocol

DEFAULT_INTERVAL_SECONDS: Final = 120.0  # RFC 5626 §4.4.1, connection-oriented transports
PONG_TIMEOUT_SECONDS: Final = 10.0  # RFC 5626 §4.4.1
MIN_INTERVAL_SECONDS: Final = 1.0  # guards against a zero or absurd Flow-Timer


class RandomSource(Protocol):
    """What the schedule needs from a random source (`random.Random` has it)."""

    def uniform(self, a: float, b: float) -> float: ...


class KeepaliveAction(enum.Enum):
    """What the connection should do when a keep-alive deadline passes."""

    SEND_PING = "send-ping"
    FLOW_DEAD = "flow-dead"


class KeepaliveSchedule:
    """When to ping, and when a missing pong means the flow is dead.

    Args:
        interval: the configured base interval in seconds, or None for the RFC default.
        rng: the source of jitter.
        pong_timeout: seconds to wait for a pong once the peer has shown it answers pings.
    """

    def __init__(
        self,
        interval: float | None,
        rng: RandomSource,
        *,
        pong_timeout: float = PONG_TIMEOUT_SECONDS,
    ) -> None:
        self._configured = interval
        self._server_interval: float | None = None
        self._rng = rng
        self._pong_timeout = pong_timeout
        self._next_ping: float | None = None
        self._pong_due: float | None = None
        self.peer_answers_pings = False

    @property
    def pong_timeout(self) -> float:
        """Seconds a pong may take once the peer has shown it answers pings."""
        return self._pong_timeout

    @property
    def base_interval(self) -> float:
        """The interval the jitter is applied to (configured > Flow-Timer > 120 s)."""
        if self._configured is not None:
            return max(MIN_INTERVAL_SECONDS, self._configured)
        if self._server_interval is not None:
            return max(MIN_INTERVAL_SECONDS, self._server_interval)
        return DEFAULT_INTERVAL_SECONDS

    def start(self, now: float) -> None:
        """Starts pinging (after the flow is registered)."""
        self._schedule(now)

    def stop(self) -> None:
        """Stops pinging (unregistered or connection gone)."""
        self._next_ping = None
        self._pong_due = None

    def set_flow_timer(self, seconds: int | None, now: float) -> None:
        """Applies a Flow-Timer the registrar sent in a 2xx to REGISTER (RFC 5626 §4.4.1)."""
        self._server_interval = float(seconds) if seconds is not None and seconds > 0 else None
        if self._next_ping is not None:
            self._schedule(now)

    def pong_received(self, now: float) -> None:
        """Records a pong; from now on missing pongs count."""
        del now
        self.peer_answers_pings = True
        self._pong_due = None

    def next_deadline(self) -> float | None:
        """The next time `handle_timer` has something to do, or None."""
        deadlines = [d for d in (self._next_ping, self._pong_due) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> KeepaliveAction | None:
        """Says what to do at `now`: send a ping, declare the flow dead, or nothing yet."""
        if self._pong_due is not None and now >= self._pong_due:
            self.stop()
            return KeepaliveAction.FLOW_DEAD
        if self._next_ping is not None and now >= self._next_ping:
            self._schedule(now)
            if self.peer_answers_pings and self._pong_due is None:
                # The oldest unanswered ping sets the deadline; later pings do not extend it.
                self._pong_due = now + self._pong_timeout
            return KeepaliveAction.SEND_PING
        return None

    def _schedule(self, now: float) -> None:
        base = self.base_interval
        # RFC 5626 §4.4.1: "randomly distributed between 80% and 100% of the recommended time".
        self._next_ping = now + self._rng.uniform(0.8 * base, base)
