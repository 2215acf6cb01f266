"""The four SIP transaction state machines (RFC 3261 §17, amended by RFC 6026).

Theory of operation
-------------------
A transaction is a request plus every response to it, retransmissions included. It has four
flavours: client or server, INVITE or not. Each machine here is sans-IO: it is fed inputs
(a response or request received, a response the TU wants sent, a timer due, a transport error)
and returns the actions that follow (`sipua.sip.events`): send this, deliver that to the
transaction user (TU), this transaction is over.

Each machine has exactly one transition table, `TABLE`, mapping (state, input) to the next
state. Anything not in the table is a misuse by our own code and raises `LocalProtocolError`
naming the machine, state and input. Stray network input the RFC tells us to absorb (a late 1xx
in COMPLETED, a retransmitted INVITE in ACCEPTED) is *in* the table, as a self-loop that does
nothing. TERMINATED has no entries, so it is sticky: a terminated machine refuses everything.
The effects of a transition (what to send, which timers to start or stop) live in one
`_effects` method per machine, next to the table, with the RFC paragraph cited.

Time is an argument. A machine stores absolute deadlines per timer letter; `next_deadline()`
gives the earliest and `handle_timer(now)` fires every due one. A timer of zero seconds
(D, I, J, K over reliable transports) is due at once and fires inside the same call, so over TLS
a non-INVITE server transaction goes from COMPLETED to TERMINATED as soon as it has answered.

Two RFC 6026 changes matter: a client INVITE transaction that gets a 2xx goes to ACCEPTED (not
TERMINATED) for Timer M, passing further 2xx to the TU, so that retransmitted 2xx still reach
the dialog to be ACKed; a server INVITE transaction that sends a 2xx goes to ACCEPTED for Timer L,
passing the TU's 2xx retransmissions to the wire and absorbing retransmitted INVITEs.

One deliberate extension: a transport error is accepted in every live state, not just those
of the RFC figures. Over TLS, "transport error" also means "the connection under us is gone",
and an INVITE transaction in PROCEEDING would otherwise wait forever (a UA has no Timer C).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from typing import ClassVar, Final

from sipua.sip.errors import LocalProtocolError
from sipua.sip.events import (
    AckReceived,
    ClientTxKey,
    DeliverRequest,
    DeliverResponse,
    LegacyServerTxKey,
    SendMessage,
    ServerTxKey,
    TerminationReason,
    TransactionAction,
    TransactionKey,
    TransactionTerminated,
    TransactionTimedOut,
)
from sipua.sip.headers import Headers
from sipua.sip.message import Request, Response
from sipua.sip.timers import TimerValues

__all__ = [
    "ClientInviteTransaction",
    "ClientNonInviteTransaction",
    "Input",
    "ServerInviteTransaction",
    "ServerNonInviteTransaction",
    "State",
    "Timer",
    "Transaction",
    "build_ack",
]

# Timers fire at most this many times in one handle_timer() call. Retransmission timers re-arm
# relative to `now`, so a late call fires each timer once; the cap only guards against a bug.
MAX_TIMER_FIRINGS_PER_CALL: Final = 32


class State(enum.Enum):
    """Transaction states, with the RFC 3261 / RFC 6026 names."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class Timer(enum.Enum):
    """Transaction timers by their RFC letter (RFC 3261 Table 4, RFC 6026 §8.11)."""

    A = "A"
    B = "B"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 -- RFC 3261 names it Timer I
    J = "J"
    K = "K"
    L = "L"
    M = "M"


class Input(enum.Enum):
    """Everything that can happen to a transaction."""

    RECEIVE_1XX = "receive 1xx"
    RECEIVE_2XX = "receive 2xx"
    RECEIVE_300_699 = "receive 300-699"
    RECEIVE_REQUEST = "receive request retransmission"
    RECEIVE_ACK = "receive ACK"
    SEND_1XX = "send 1xx"
    SEND_2XX = "send 2xx"
    SEND_300_699 = "send 300-699"
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"
    TRANSPORT_ERROR = "transport error"


_TIMER_INPUT: Final = {timer: Input[f"TIMER_{timer.value}"] for timer in Timer}
# Timers whose firing means "gave up waiting" rather than "done absorbing".
_TIMEOUT_TIMERS: Final = frozenset({Timer.B, Timer.F, Timer.H})

Table = Mapping[tuple[State, Input], State]


def _status_input(status: int, *, sending: bool) -> Input:
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"status {status} is not a SIP response code (100-699)")
    if status < 200:
        return Input.SEND_1XX if sending else Input.RECEIVE_1XX
    if status < 300:
        return Input.SEND_2XX if sending else Input.RECEIVE_2XX
    return Input.SEND_300_699 if sending else Input.RECEIVE_300_699


class Transaction(abc.ABC):
    """What the four machines share: state, table lookup, deadlines and termination.

    Args:
        request: the request that created the transaction.
        key: the transaction's key (reported in every action).
        timers: timer durations for the transport in use (`TimerConfig.for_transport`).
    """

    TABLE: ClassVar[Table]
    INITIAL: ClassVar[State]

    __slots__ = ("_deadlines", "_intervals", "_started", "key", "request", "state", "timers")

    def __init__(self, request: Request, *, key: TransactionKey, timers: TimerValues) -> None:
        self.request = request
        self.key = key
        self.timers = timers
        self.state = self.INITIAL
        self._started = False
        self._deadlines: dict[Timer, float] = {}
        # Current interval of the doubling retransmission timers (A, E, G).
        self._intervals: dict[Timer, float] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, state={self.state.name})"

    @property
    def reliable(self) -> bool:
        """Whether the transport is reliable (no retransmissions, zero absorb timers)."""
        return self.timers.reliable

    @property
    def terminated(self) -> bool:
        """Whether the machine reached TERMINATED."""
        return self.state is State.TERMINATED

    @property
    def pending_timers(self) -> dict[Timer, float]:
        """The running timers and their absolute deadlines (a copy, for tests and status)."""
        return dict(self._deadlines)

    def next_deadline(self) -> float | None:
        """The earliest absolute time a timer is due, or None if none is running."""
        return min(self._deadlines.values(), default=None)

    def handle_timer(self, now: float) -> list[TransactionAction]:
        """Fire every timer due at `now` (earliest first) and return the resulting actions."""
        self._require_started("handle the timer")
        actions: list[TransactionAction] = []
        self._fire_due(now, actions)
        return actions

    def transport_error(self, now: float) -> list[TransactionAction]:
        """The transport failed to send, or the connection is gone (§17.1.4, §17.2.4)."""
        self._require_started("take a transport error")
        return self._run(Input.TRANSPORT_ERROR, now, None)

    # --- machinery ----------------------------------------------------------------------

    def _require_started(self, what: str) -> None:
        if not self._started:
            raise LocalProtocolError(f"{type(self).__name__}: cannot {what} before start()")

    def _begin(self) -> None:
        if self._started:
            raise LocalProtocolError(f"{type(self).__name__}: start() was already called")
        self._started = True

    def _run(
        self, event: Input, now: float, message: Request | Response | None
    ) -> list[TransactionAction]:
        actions: list[TransactionAction] = []
        self._step(event, now, message, actions)
        self._fire_due(now, actions)
        return actions

    def _step(
        self,
        event: Input,
        now: float,
        message: Request | Response | None,
        actions: list[TransactionAction],
    ) -> None:
        old = self.state
        new = self.TABLE.get((old, event))
        if new is None:
            raise LocalProtocolError(
                f"{type(self).__name__} in state {old.name} cannot handle {event.value}"
            )
        self.state = new
        self._effects(old, event, now, message, actions)
        if new is State.TERMINATED:
            self._deadlines.clear()
            if event is Input.TRANSPORT_ERROR:
                reason = TerminationReason.TRANSPORT_ERROR
            elif event in _TIMEOUT_INPUTS:
                reason = TerminationReason.TIMED_OUT
            else:
                reason = TerminationReason.COMPLETED
            actions.append(TransactionTerminated(key=self.key, reason=reason))

    def _fire_due(self, now: float, actions: list[TransactionAction]) -> None:
        for _ in range(MAX_TIMER_FIRINGS_PER_CALL):
            due = [(deadline, timer) for timer, deadline in self._deadlines.items()]
            due = [item for item in due if item[0] <= now]
            if not due:
                return
            _, timer = min(due, key=lambda item: (item[0], item[1].value))
            del self._deadlines[timer]
            if timer in _TIMEOUT_TIMERS:
                actions.append(TransactionTimedOut(key=self.key, timer=timer.value))
            self._step(_TIMER_INPUT[timer], now, None, actions)
        raise LocalProtocolError(
            f"{type(self).__name__}: more than {MAX_TIMER_FIRINGS_PER_CALL} timer firings "
            f"in one call (state {self.state.name}); a timer re-arms without advancing"
        )

    def _arm(self, timer: Timer, now: float, duration: float) -> None:
        self._deadlines[timer] = now + duration

    def _stop(self, *timers: Timer) -> None:
        for timer in timers:
            self._deadlines.pop(timer, None)
            self._intervals.pop(timer, None)

    @abc.abstractmethod
    def _effects(
        self,
        old: State,
        event: Input,
        now: float,
        message: Request | Response | None,
        actions: list[TransactionAction],
    ) -> None:
        """The actions of one transition (each machine defines its own)."""


_TIMEOUT_INPUTS: Final = frozenset({Input.TIMER_B, Input.TIMER_F, Input.TIMER_H})


def _live_states_to_terminated(*states: State) -> dict[tuple[State, Input], State]:
    return {(state, Input.TRANSPORT_ERROR): State.TERMINATED for state in states}


# --- client transactions ----------------------------------------------------------------------


class _ClientTransaction(Transaction):
    __slots__ = ()

    key: ClientTxKey

    def start(self, now: float) -> list[TransactionAction]:
        """Send the request and start the timers; call once, right after construction."""
        self._begin()
        actions: list[TransactionAction] = [SendMessage(message=self.request, key=self.key)]
        self._on_start(now)
        self._fire_due(now, actions)
        return actions

    def receive_response(self, response: Response, now: float) -> list[TransactionAction]:
        """Feed a response that matched this transaction (§17.1.3)."""
        self._require_started("receive a response")
        return self._run(_status_input(response.status, sending=False), now, response)

    @abc.abstractmethod
    def _on_start(self, now: float) -> None:
        """Arms the machine's first timers and queues its first send."""

    def _retransmit(self, actions: list[TransactionAction]) -> None:
        actions.append(SendMessage(message=self.request, key=self.key, retransmission=True))

    def _deliver(
        self, message: Request | Response | None, actions: list[TransactionAction]
    ) -> None:
        assert isinstance(message, Response)
        actions.append(DeliverResponse(response=message, key=self.key))


class ClientInviteTransaction(_ClientTransaction):
    """INVITE client transaction (RFC 3261 §17.1.1, Figure 5; RFC 6026 §7.2, §8.4).

    The ACK for a 300-699 response is built and sent here (§17.1.1.3); the ACK for a 2xx is
    the TU's (it is a separate transaction, §13.2.2.4).
    """

    __slots__ = ()

    INITIAL = State.CALLING
    TABLE: ClassVar[Table] = {
        (State.CALLING, Input.TIMER_A): State.CALLING,
        (State.CALLING, Input.TIMER_B): State.TERMINATED,
        (State.CALLING, Input.RECEIVE_1XX): State.PROCEEDING,
        (State.CALLING, Input.RECEIVE_2XX): State.ACCEPTED,
        (State.CALLING, Input.RECEIVE_300_699): State.COMPLETED,
        (State.PROCEEDING, Input.RECEIVE_1XX): State.PROCEEDING,
        (State.PROCEEDING, Input.RECEIVE_2XX): State.ACCEPTED,
        (State.PROCEEDING, Input.RECEIVE_300_699): State.COMPLETED,
        (State.COMPLETED, Input.RECEIVE_1XX): State.COMPLETED,  # absorbed
        (State.COMPLETED, Input.RECEIVE_2XX): State.COMPLETED,  # absorbed
        (State.COMPLETED, Input.RECEIVE_300_699): State.COMPLETED,  # ACK again
        (State.COMPLETED, Input.TIMER_D): State.TERMINATED,
        (State.ACCEPTED, Input.RECEIVE_1XX): State.ACCEPTED,  # absorbed
        (State.ACCEPTED, Input.RECEIVE_2XX): State.ACCEPTED,  # to the TU
        (State.ACCEPTED, Input.RECEIVE_300_699): State.ACCEPTED,  # absorbed
        (State.ACCEPTED, Input.TIMER_M): State.TERMINATED,
        **_live_states_to_terminated(
            State.CALLING, State.PROCEEDING, State.COMPLETED, State.ACCEPTED
        ),
    }

    def _on_start(self, now: float) -> None:
        # §17.1.1.2: Timer A only on unreliable transports, Timer B always.
        if self.timers.a is not None:
            self._intervals[Timer.A] = self.timers.a
            self._arm(Timer.A, now, self.timers.a)
        self._arm(Timer.B, now, self.timers.b)

    def _effects(
        self,
        old: State,
        event: Input,
        now: float,
        message: Request | Response | None,
        actions: list[TransactionAction],
    ) -> None:
        match event:
            case Input.TIMER_A:
                # §17.1.1.2: retransmit, doubling the interval each time (no T2 cap).
                self._retransmit(actions)
                interval = self._intervals[Timer.A] * 2
                self._intervals[Timer.A] = interval
                self._arm(Timer.A, now, interval)
            case Input.RECEIVE_1XX:
                if old is not State.COMPLETED and old is not State.ACCEPTED:
                    # §17.1.1.2: in Proceeding no more retransmissions, and Timer B only
                    # covers Calling (a UA waits for the final response as long as it takes).
                    self._stop(Timer.A, Timer.B)
                    self._deliver(message, actions)
            case Input.RECEIVE_2XX:
                if old is State.CALLING or old is State.PROCEEDING:
                    # RFC 6026 §8.4: enter Accepted and start Timer M.
                    self._stop(Timer.A, Timer.B)
                    self._arm(Timer.M, now, self.timers.m)
                    self._deliver(message, actions)
                elif old is State.ACCEPTED:
                    # RFC 6026 §8.4: 2xx retransmissions go to the TU, which ACKs them again.
                    self._deliver(message, actions)
            case Input.RECEIVE_300_699:
                assert isinstance(message, Response)
                if old is State.ACCEPTED:
                    return
                actions.append(
                    SendMessage(
                        message=build_ack(self.request, message),
                        key=self.key,
                        retransmission=old is State.COMPLETED,
                    )
                )
                if old is not State.COMPLETED:
                    # §17.1.1.2: deliver once, then absorb retransmissions for Timer D.
                    self._stop(Timer.A, Timer.B)
                    self._arm(Timer.D, now, self.timers.d)
                    self._deliver(message, actions)
            case (
                Input.TIMER_B | Input.TIMER_D | Input.TIMER_M | Input.TRANSPORT_ERROR
            ):  # termination is reported by _step
                pass
            case _:  # pragma: no cover - the table admits nothing else
                raise AssertionError(event)


class ClientNonInviteTransaction(_ClientTransaction):
    """Non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6)."""

    __slots__ = ()

    INITIAL = State.TRYING
    TABLE: ClassVar[Table] = {
        (State.TRYING, Input.TIMER_E): State.TRYING,
        (State.TRYING, Input.TIMER_F): State.TERMINATED,
        (State.TRYING, Input.RECEIVE_1XX): State.PROCEEDING,
        (State.TRYING, Input.RECEIVE_2XX): State.COMPLETED,
        (State.TRYING, Input.RECEIVE_300_699): State.COMPLETED,
        (State.PROCEEDING, Input.TIMER_E): State.PROCEEDING,
        (State.PROCEEDING, Input.TIMER_F): State.TERMINATED,
        (State.PROCEEDING, Input.RECEIVE_1XX): State.PROCEEDING,
        (State.PROCEEDING, Input.RECEIVE_2XX): State.COMPLETED,
        (State.PROCEEDING, Input.RECEIVE_300_699): State.COMPLETED,
        (State.COMPLETED, Input.RECEIVE_1XX): State.COMPLETED,  # absorbed
        (State.COMPLETED, Input.RECEIVE_2XX): State.COMPLETED,  # absorbed
        (State.COMPLETED, Input.RECEIVE_300_699): State.COMPLETED,  # absorbed
        (State.COMPLETED, Input.TIMER_K): State.TERMINATED,
        **_live_states_to_terminated(State.TRYING, State.PROCEEDING, State.COMPLETED),
    }

    def _on_start(self, now: float) -> None:
        # §17.1.2.2: Timer E only on unreliable transports, Timer F always.
        if self.timers.e is not None:
            self._intervals[Timer.E] = self.timers.e
            self._arm(Timer.E, now, self.timers.e)
        self._arm(Timer.F, now, self.timers.f)

    def _effects(
        self,
        old: State,
        event: Input,
        now: float,
        message: Request | Response | None,
        actions: list[TransactionAction],
    ) -> None:
        match event:
            case Input.TIMER_E:
                # §17.1.2.2: in Trying the interval doubles up to T2; in Proceeding it is T2.
                self._retransmit(actions)
                if old is State.TRYING:
                    interval = min(self._intervals[Timer.E] * 2, self.timers.t2)
                else:
                    interval = self.timers.t2
                self._intervals[Timer.E] = interval
                self._arm(Timer.E, now, interval)
            case Input.RECEIVE_1XX:
                if old is not State.COMPLETED:
                    self._deliver(message, actions)
            case Input.RECEIVE_2XX | Input.RECEIVE_300_699:
                if old is not State.COMPLETED:
                    # §17.1.2.2: deliver, then absorb retransmissions for Timer K.
                    self._stop(Timer.E, Timer.F)
                    self._arm(Timer.K, now, self.timers.k)
                    self._deliver(message, actions)
            case Input.TIMER_F | Input.TIMER_K | Input.TRANSPORT_ERROR:
                pass
            case _:  # pragma: no cover - the table admits nothing else
                raise AssertionError(event)


# --- server transactions ----------------------------------------------------------------------


class _ServerTransaction(Transaction):
    __slots__ = ("last_response",)

    key: ServerTxKey | LegacyServerTxKey

    def __init__(
        self,
        request: Request,
        *,
        key: ServerTxKey | LegacyServerTxKey,
        timers: TimerValues,
    ) -> None:
        super().__init__(request, key=key, timers=timers)
        self.last_response: Response | None = None

    def start(self, now: float) -> list[TransactionAction]:
        """Deliver the request to the TU; call once, right after construction."""
        self._begin()
        actions: list[TransactionAction] = [DeliverRequest(request=self.request, key=self.key)]
        self._fire_due(now, actions)
        return actions

    def receive_request(self, request: Request, now: float) -> list[TransactionAction]:
        """Feed a request that matched this transaction: a retransmission, or an ACK."""
        self._require_started("receive a request")
        event = Input.RECEIVE_ACK if request.method == "ACK" else Input.RECEIVE_REQUEST
        return self._run(event, now, request)

    def send_response(self, response: Response, now: float) -> list[TransactionAction]:
        """Send a response from the TU (§17.2.1, §17.2.2)."""
        self._require_started("send a response")
        return self._run(_status_input(response.status, sending=True), now, response)

    def _send(self, message: Request | Response | None, actions: list[TransactionAction]) -> None:
        assert isinstance(message, Response)
        self.last_response = message
        actions.append(SendMessage(message=message, key=self.key))

    def _resend_last(self, actions: list[TransactionAction]) -> None:
        if self.last_response is not None:
            actions.append(
                SendMessage(message=self.last_response, key=self.key, retransmission=True)
            )


class ServerInviteTransaction(_ServerTransaction):
    """INVITE server transaction (RFC 3261 §17.2.1, Figure 7; RFC 6026 §7.1, §8.5-8.7).

    The TU should send a 1xx promptly (a 100 Trying within 200 ms, §17.2.1); the table
    leaves the wording of it to the TU.
    """

    __slots__ = ()

    INITIAL = State.PROCEEDING
    TABLE: ClassVar[Table] = {
        (State.PROCEEDING, Input.RECEIVE_REQUEST): State.PROCEEDING,  # resend last 1xx
        # An ACK before any final response acknowledges nothing; §17.2.1 has no rule for it
        # and it is network input, so it is discarded rather than treated as our misuse.
        (State.PROCEEDING, Input.RECEIVE_ACK): State.PROCEEDING,
        (State.PROCEEDING, Input.SEND_1XX): State.PROCEEDING,
        (State.PROCEEDING, Input.SEND_2XX): State.ACCEPTED,
        (State.PROCEEDING, Input.SEND_300_699): State.COMPLETED,
        (State.COMPLETED, Input.RECEIVE_REQUEST): State.COMPLETED,  # resend final
        (State.COMPLETED, Input.TIMER_G): State.COMPLETED,
        (State.COMPLETED, Input.TIMER_H): State.TERMINATED,
        (State.COMPLETED, Input.RECEIVE_ACK): State.CONFIRMED,
        (State.CONFIRMED, Input.RECEIVE_REQUEST): State.CONFIRMED,  # absorbed
        (State.CONFIRMED, Input.RECEIVE_ACK): State.CONFIRMED,  # absorbed
        (State.CONFIRMED, Input.TIMER_I): State.TERMINATED,
        (State.ACCEPTED, Input.RECEIVE_REQUEST): State.ACCEPTED,  # absorbed
        (State.ACCEPTED, Input.RECEIVE_ACK): State.ACCEPTED,  # to the TU
        (State.ACCEPTED, Input.SEND_2XX): State.ACCEPTED,  # TU retransmits its 2xx
        (State.ACCEPTED, Input.TIMER_L): State.TERMINATED,
        **_live_states_to_terminated(
            State.PROCEEDING, State.COMPLETED, State.CONFIRMED, State.ACCEPTED
        ),
    }

    def _effects(
        self,
        old: State,
        event: Input,
        now: float,
        message: Request | Response | None,
        actions: list[TransactionAction],
    ) -> None:
        match event:
            case Input.RECEIVE_REQUEST:
                # §17.2.1: a retransmitted INVITE gets the most recent response again in
                # Proceeding and Completed; RFC 6026 §7.1: absorbed in Accepted.
                if old is State.PROCEEDING or old is State.COMPLETED:
                    self._resend_last(actions)
            case Input.SEND_1XX:
                self._send(message, actions)
            case Input.SEND_2XX:
                # RFC 6026 §7.1: Accepted, Timer L; the TU's own 2xx retransmissions pass.
                self._send(message, actions)
                if old is State.PROCEEDING:
                    self._arm(Timer.L, now, self.timers.l)
            case Input.SEND_300_699:
                # §17.2.1: Completed; Timer G (unreliable only) and Timer H.
                self._send(message, actions)
                if self.timers.g is not None:
                    self._intervals[Timer.G] = self.timers.g
                    self._arm(Timer.G, now, self.timers.g)
                self._arm(Timer.H, now, self.timers.h)
            case Input.TIMER_G:
                self._resend_last(actions)
                interval = min(self._intervals[Timer.G] * 2, self.timers.t2)
                self._intervals[Timer.G] = interval
                self._arm(Timer.G, now, interval)
            case Input.RECEIVE_ACK:
                if old is State.COMPLETED:
                    # §17.2.1: Confirmed, stop G and H, absorb ACKs for Timer I.
                    self._stop(Timer.G, Timer.H)
                    self._arm(Timer.I, now, self.timers.i)
                elif old is State.ACCEPTED:
                    # An ACK for our 2xx that reused the INVITE's branch (RFC 2543 peers):
                    # it belongs to the dialog.
                    assert isinstance(message, Request)
                    actions.append(AckReceived(request=message, key=self.key))
            case Input.TIMER_H | Input.TIMER_I | Input.TIMER_L | Input.TRANSPORT_ERROR:
                pass
            case _:  # pragma: no cover - the table admits nothing else
                raise AssertionError(event)


class ServerNonInviteTransaction(_ServerTransaction):
    """Non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8)."""

    __slots__ = ()

    INITIAL = State.TRYING
    TABLE: ClassVar[Table] = {
        (State.TRYING, Input.RECEIVE_REQUEST): State.TRYING,  # absorbed
        (State.TRYING, Input.SEND_1XX): State.PROCEEDING,
        (State.TRYING, Input.SEND_2XX): State.COMPLETED,
        (State.TRYING, Input.SEND_300_699): State.COMPLETED,
        (State.PROCEEDING, Input.RECEIVE_REQUEST): State.PROCEEDING,  # resend last 1xx
        (State.PROCEEDING, Input.SEND_1XX): State.PROCEEDING,
        (State.PROCEEDING, Input.SEND_2XX): State.COMPLETED,
        (State.PROCEEDING, Input.SEND_300_699): State.COMPLETED,
        (State.COMPLETED, Input.RECEIVE_REQUEST): State.COMPLETED,  # resend final
        (State.COMPLETED, Input.TIMER_J): State.TERMINATED,
        **_live_states_to_terminated(State.TRYING, State.PROCEEDING, State.COMPLETED),
    }

    def _effects(
        self,
        old: State,
        event: Input,
        now: float,
        message: Request | Response | None,
        actions: list[TransactionAction],
    ) -> None:
        match event:
            case Input.RECEIVE_REQUEST:
                # §17.2.2: discarded in Trying; the last response again otherwise.
                if old is not State.TRYING:
                    self._resend_last(actions)
            case Input.SEND_1XX:
                self._send(message, actions)
            case Input.SEND_2XX | Input.SEND_300_699:
                # §17.2.2: Completed, Timer J (zero on reliable transports).
                self._send(message, actions)
                self._arm(Timer.J, now, self.timers.j)
            case Input.TIMER_J | Input.TRANSPORT_ERROR:
                pass
            case _:  # pragma: no cover - the table admits nothing else
                raise AssertionError(event)


# --- the ACK for a non-2xx final response ----------------------------------------------------


def build_ack(invite: Request, response: Response) -> Request:
    """Build the ACK for a 300-699 response to `invite` (RFC 3261 §17.1.1.3).

    Same Request-URI, Call-ID, From and CSeq number as the INVITE; To from the response (it
    carries the UAS's tag); only the INVITE's top Via, so the ACK shares its branch and matches
    the server transaction; the INVITE's Route set; no body.
    """
    headers = Headers()
    headers.add("Via", str(invite.top_via))
    headers.add("From", _required(invite, "From"))
    headers.add("To", _required(response, "To"))
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.seq} ACK")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    return Request("ACK", invite.uri, headers)


def _required(message: Request | Response, name: str) -> str:
    value = message.headers.get(name)
    if value is None:
        # The accessors already insist on From and To when a message is parsed or keyed, so
        # this is a message our own code built without them.
        raise LocalProtocolError(f"cannot build the ACK: the {name} header is missing")
    return value
