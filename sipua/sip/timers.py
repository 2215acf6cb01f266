"""SIP transaction timer values (RFC 3261 §17 and Appendix A, Table 4; RFC 6026 §8.11).

Everything is derived from three base values, T1 (RTT estimate), T2 (maximum retransmit
interval for non-INVITE requests and INVITE responses) and T4 (maximum time a message stays in
the network). `TimerConfig.for_transport(reliable)` gives the concrete values a transaction uses.

Over a reliable transport (TCP, TLS; sipua always runs on TLS) there is nothing to retransmit
and no stray retransmissions to absorb, so RFC 3261 turns timers A, E and G off and sets D, I, J
and K to zero (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2). Timers B, F, H, L and M are 64*T1 on every
transport. Timer C belongs to proxies and is listed only for completeness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["TimerConfig", "TimerValues"]

# RFC 3261 Table 4 defaults, in seconds.
DEFAULT_T1: Final = 0.5
DEFAULT_T2: Final = 4.0
DEFAULT_T4: Final = 5.0

# RFC 3261 §17.1.1.2: Timer D is "at least 32 seconds for unreliable transports".
TIMER_D_UNRELIABLE_SECONDS: Final = 32.0
# RFC 3261 §16.6 step 11: Timer C (proxy INVITE) is greater than 3 minutes.
TIMER_C_SECONDS: Final = 180.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerValues:
    """Concrete timer durations in seconds for one transport kind.

    A `None` retransmission timer (`a`, `e`, `g`) means "no retransmissions on this transport".
    `e` and `g` are the initial intervals; they double up to `t2` (§17.1.2.2, §17.2.1), while `a`
    doubles without a cap (§17.1.1.2).
    """

    reliable: bool
    t1: float
    t2: float
    t4: float
    a: float | None
    b: float
    c: float
    d: float
    e: float | None
    f: float
    g: float | None
    h: float
    i: float
    j: float
    k: float
    l: float  # noqa: E741 -- RFC 6026 names it Timer L
    m: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerConfig:
    """The base timer values T1, T2 and T4 (RFC 3261 Table 4), in seconds.

    Raises:
        ValueError: if a value is not positive or T2 is smaller than T1.
    """

    t1: float = DEFAULT_T1
    t2: float = DEFAULT_T2
    t4: float = DEFAULT_T4

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 > 0 and self.t4 > 0):
            raise ValueError(
                f"timer T1, T2 and T4 must be positive seconds, got "
                f"t1={self.t1}, t2={self.t2}, t4={self.t4}"
            )
        if self.t2 < self.t1:
            raise ValueError(f"timer T2 ({self.t2} s) must not be smaller than T1 ({self.t1} s)")

    def for_transport(self, *, reliable: bool) -> TimerValues:
        """Return the timer durations for a reliable (TCP/TLS) or unreliable (UDP) transport.

        Args:
            reliable: whether the transport is reliable (RFC 3261 §18: TCP, TLS, SCTP).
        """
        sixty_four_t1 = 64 * self.t1
        return TimerValues(
            reliable=reliable,
            t1=self.t1,
            t2=self.t2,
            t4=self.t4,
            a=None if reliable else self.t1,
            b=sixty_four_t1,
            c=TIMER_C_SECONDS,
            d=0.0 if reliable else max(TIMER_D_UNRELIABLE_SECONDS, sixty_four_t1),
            e=None if reliable else self.t1,
            f=sixty_four_t1,
            g=None if reliable else self.t1,
            h=sixty_four_t1,
            i=0.0 if reliable else self.t4,
            j=0.0 if reliable else sixty_four_t1,
            k=0.0 if reliable else self.t4,
            l=sixty_four_t1,
            m=sixty_four_t1,
        )
