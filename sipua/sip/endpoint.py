"""The SIP endpoint: one sans-IO object that registers the accounts, answers requests and runs
calls.

Theory of operation (the shape of h11's and aioquic's connection objects). The user agent feeds
the endpoint what arrives, with the connection it came on and the time, and commands; the
endpoint decides everything and queues events, which the user agent drains and carries out:

    inputs:   receive(message, link, now)        a parsed request or response from a connection
              connection_closed(handle, reason, now)
              handle_timer(now)                   when `next_deadline()` has come
              place_call / hangup / end_call / hangup_all(now) / abandon_unacknowledged(now)
              registrations.register / maintain / unregister / stop   (account commands)
              registrations.targets_located / locate_failed / connection_opened /
                  connection_failed / pong_received                   (what the UA did)
    outputs:  next_event() -> Send | ConnectionInUse | CallIncoming | CallAnswered
                              | CallConfirmed | CallEnded
                              | RequestRefused | LocateTargets | OpenConnection
                              | SendKeepalive | CloseConnection | AccountRegistered
                              | AccountRegistrationFailed | AccountUnregistered
                              | RegistrationRetry | FlowLost | None
              next_deadline() -> float | None

The accounts' part (`self.registrations`, `sipua.sip.registrations`) decides when to locate
and connect a flow, fails over to the next target (RFC 3263 §4.3), backs off (RFC 5626 §4.5),
refreshes, keeps flows alive (RFC 5626 §4.4.1) and sends each REGISTER in a client non-INVITE
transaction of this endpoint's table, whose responses and Timer F come back to it.

The endpoint does no I/O and reads no clock. A connection is an opaque, hashable `handle` the
user agent chooses; a `Link` says what the endpoint needs to know of it (addresses, whether it
is our own flow to a server, the Contact to put in our answers). `Send` names the handle a
message goes out on: a response always on the connection its request came in on (RFC 3261
§18.2.2), updated when a retransmission arrives on another one. `ConnectionInUse` says when a
connection starts and stops carrying a call (a dialog, ringing or up, either way) or an open
transaction: while it does, the user agent must not close it for being idle, since a call
without session timers sends no SIP for as long as it lasts.

Every request and every response goes through the `TransactionTable` (§17): it matches server
transactions by branch, sent-by and method (§17.2.3, with the RFC 2543 fallback), answers a
retransmitted request with the last response itself (§17.2.1), keeps an answered INVITE in
RFC 6026's ACCEPTED state, finds the INVITE a CANCEL refers to (§9.2), and gives every request
we send (the BYEs) a client transaction with its timeout. The endpoint is the transaction user:
it checks each new request in RFC 3261 §8.2's order, the first failing check answering it:

1. method (§8.2.1): 405 with Allow for methods sipua knows but does not serve, 501 for others;
2. extensions and Request-URI (§8.2.2.3, §8.2.2.1): 420 with Unsupported for an option tag
   in Require that sipua does not know (it knows `timer`, RFC 4028); 416 for a scheme other
   than sip/sips, 404 for a user not ours (a URI without user names the device and is served);
3. merged requests (§8.2.2.2): 482 for an INVITE with the From tag, Call-ID and CSeq of one in
   progress that reached us by another path (another branch); 491 for another INVITE of a call
   still ringing;
4. content (§8.2.3): 415 with Accept for a body that is not application/sdp, 415 with
   Accept-Encoding for an encoded one; the session description (`SessionDescriber`) refuses
   an offer it cannot read or take (488 with a Warning), or makes our offer for an INVITE
   without one (§13.3.1.4);
5. the application: `max_calls` calls at most, `max_calls_per_source` from one address unless
   the link is our own flow or a server's (486); then the answer policy.

Max-Forwards 0 is no reason to refuse: sipua is the final recipient (RFC 4475 §3.3.11). A
request refused for a header that does not parse is answered from its raw fields
(`sipua.sip.rejection`). The calls themselves are `InviteSession`s; the endpoint rings each for
the policy's delay, answers or rejects it, ends it after `hangup_after`, and ends it at once
when its connection closes (a caller that has gone holds nothing).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import partial
from typing import Final, Generic, Protocol, TypeVar

from sipua.sip import invite as session_outputs
from sipua.sip import refresh, uac
from sipua.sip.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from sipua.sip.events import (
    AckReceived,
    ClientTxKey,
    DeliverRequest,
    DeliverResponse,
    LegacyServerTxKey,
    SendMessage,
    ServerTxKey,
    StrayResponse,
    TransactionKey,
    TransactionTerminated,
    TransactionTimedOut,
)
from sipua.sip.ids import RandomSource, new_tag
from sipua.sip.invite import (
    InviteOutput,
    InviteSession,
    InviteState,
    Reply,
    options_response,
)
from sipua.sip.message import Request, Response, make_response
from sipua.sip.methods import ALLOW, KNOWN_METHODS, SERVED_METHODS
from sipua.sip.registration import JitterSource
from sipua.sip.registrations import AccountEvent, Registrations
from sipua.sip.rejection import error_response
from sipua.sip.serializer import serialize
from sipua.sip.timers import TimerConfig
from sipua.sip.transaction import State as TxState
from sipua.sip.transactions import TransactionTable
from sipua.sip.uri import SipUri

#: Simultaneous calls; more are answered 486.
MAX_CALLS: Final = 64
#: Calls from one source address at once (our own flows and servers are exempt): one peer
#: cannot take every slot.
MAX_CALLS_PER_SOURCE: Final = 8
#: Extensions (option tags, RFC 3261 §19.2) a request may require of sipua.
SUPPORTED_EXTENSIONS: Final = frozenset({"timer"})
#: Calls we placed kept after their end for a 2xx still to come (RFC 6026, RFC 3261 §9.1).
MAX_ANSWERED_KEPT: Final = MAX_CALLS
#: Events waiting to be drained; more means the user agent stopped draining, which is a bug.
MAX_PENDING_EVENTS: Final = 65536
#: Final statuses of the answer policy's refusals.
REJECT_STATUS: Final = {"busy": 486, "decline": 603}

H = TypeVar("H", bound=Hashable)

#: States of an INVITE client transaction still waiting for its final response.
_WAITING: Final = frozenset({TxState.CALLING, TxState.PROCEEDING})


# -- what the user agent tells the endpoint ------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Link(Generic[H]):
    """A connection, as the endpoint needs to know it.

    Attributes:
        handle: the user agent's own reference to the connection (hashable).
        peer: ``host:port`` of the peer.
        local: ``host:port`` of our end (Via sent-by, SDP address).
        contact: our Contact URI for answers on this connection.
        outbound: it is our own flow to a server (our registration flow).
        server: the peer's address is a server's sipua registers with.
    """

    handle: H
    peer: str
    local: str
    contact: str
    outbound: bool = False
    server: bool = False

    @property
    def source(self) -> str:
        """The peer's address without port or brackets."""
        return self.peer.rpartition(":")[0].strip("[]")

    @property
    def local_address(self) -> str:
        """Our address on this connection without port or brackets."""
        return self.local.rpartition(":")[0].strip("[]")


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerPolicy:
    """What to do with an inbound call.

    Attributes:
        action: "accept", "busy" (486) or "decline" (603).
        delay: seconds to ring before acting.
        hangup_after: seconds after answering at which sipua ends the call with a BYE itself;
            None leaves the ending to the caller.
    """

    action: str = "accept"
    delay: float = 1.0
    hangup_after: float | None = None


class Refusal(Exception):
    """A request is answered with `status` (and `headers`) and nothing else happens.

    The session describer raises it for an offer it cannot read (400) or take (488).
    """

    def __init__(self, status: int, reason: str, *headers: tuple[str, str]) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


class SessionDescriber(Protocol):
    """Makes our session description for an INVITE (SDP in sipua; injected, so pure here).

    `tag` is our To tag of the call: what it binds for the call (a media session) is found by
    it again, and `release(tag)` frees what a call that never got going holds.
    """

    def answer(self, offer: bytes, *, address: str, tag: str) -> bytes:
        """The answer to `offer`, for media on `address`.

        Raises:
            Refusal: the offer cannot be read or has nothing acceptable (488), or no media
                resource is free (503).
        """
        ...

    def offer(self, *, address: str, tag: str) -> bytes:
        """Our offer, for an INVITE that came without one (§13.3.1.4)."""
        ...

    def release(self, tag: str) -> None:
        """The call `tag` was refused after its description, or has ended."""
        ...


# -- what the endpoint tells the user agent -------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Send(Generic[H]):
    """Send `message` on the connection `handle`."""

    handle: H
    message: Request | Response


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionInUse(Generic[H]):
    """The connection `handle` now carries (`in_use`) or no longer carries a call or an open
    transaction: no idle timeout may close it while it does."""

    handle: H
    in_use: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CallIncoming:
    """A new call is ringing."""

    call_id: str
    caller: str
    callee: str
    peer: str
    tag: str = ""  # our To tag: the call's own reference


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered:
    """We answered the call with a 2xx."""

    call_id: str
    tag: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallConfirmed:
    """The caller's ACK for our 2xx arrived; `sdp` is the answer when our 2xx had the offer."""

    call_id: str
    tag: str = ""
    sdp: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded:
    """A call is over; `status` is the INVITE's final status when it never got a 2xx."""

    call_id: str
    reason: str
    status: int | None = None
    phrase: str = ""  # the final response's reason phrase, for a call we placed
    tag: str = ""  # our tag of the call (To tag of a call we answered, From tag of ours)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallProgress:
    """A call we placed got a provisional response (180 ringing, 183 early media)."""

    call_id: str
    status: int
    reason: str
    tag: str = ""
    sdp: bytes = b""  # the early media answer of a 183


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEstablished:
    """A call we placed was answered and ACKed; `sdp` is the callee's answer."""

    call_id: str
    sdp: bytes
    tag: str = ""  # our From tag


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRefused:
    """A request was refused (answered with an error, or dropped when `status` is None)."""

    method: str
    status: int | None
    reason: str
    peer: str


EndpointEvent = (
    Send[H]
    | ConnectionInUse[H]
    | AccountEvent[H]
    | CallIncoming
    | CallAnswered
    | CallConfirmed
    | CallProgress
    | CallEstablished
    | CallEnded
    | RequestRefused
)

#: A call is identified by its Call-ID and the caller's From tag (RFC 3261 §12).
CallKey = tuple[str, str | None]
ServerKey = ServerTxKey | LegacyServerTxKey


@dataclass(slots=True, eq=False)
class _Call(Generic[H]):
    session: InviteSession
    link: Link[H]
    invite_key: ServerKey
    sdp: bytes
    answer_at: float
    hangup_at: float | None = None
    remote_origin: bytes | None = None  # the o= line of the caller's last SDP
    expires_at: float | None = None  # RFC 4028: no refresh by then ends the call


@dataclass(slots=True, eq=False)
class _Outgoing(Generic[H]):
    call: uac.OutgoingCall
    link: Link[H]
    cancel_at: float | None
    duration: float | None
    hangup_at: float | None = None
    remote_origin: bytes | None = None  # the o= line of the callee's last SDP
    expires_at: float | None = None
    give_up_at: float | None = None  # 64·T1 after our CANCEL: no 487 by then ends the call


@dataclass(slots=True)
class _Ended(Generic[H]):
    """A placed call that is over: a 2xx may still come for it, again (our ACK was lost, RFC
    6026) or for the first time (it crossed our CANCEL, or came after we gave up waiting), and
    gets its ACK, and a BYE for a dialog that is not ours any more (§13.2.2.4, §9.1)."""

    call: uac.OutgoingCall
    link: Link[H]
    until: float  # 64·T1 after the end, as Timer M


@dataclass(slots=True)
class _Shutdown:
    """Calls whose BYE waits for the ACK of our 2xx when shutdown began (§15)."""

    pending: set[CallKey] = field(default_factory=set)


class Randomness(RandomSource, JitterSource, Protocol):
    """Bits for ids and uniform draws for jitter (`random.Random` fits)."""


class Endpoint(Generic[H]):
    """sipua's SIP core: the transaction table, the accounts, the calls, the rules for answering.

    Args:
        policy: the answer policy.
        describer: makes our session descriptions.
        rng: tags, branches, ids and the jitter of back-off and keep-alive (inject a seeded
            `random.Random` in tests).
        users: the Request-URI user parts we answer for (the AOR's).
        timers: T1/T2/T4.
        max_calls: calls at once.
        max_calls_per_source: calls at once from one address (not for our flows or servers).
    """

    def __init__(
        self,
        *,
        policy: AnswerPolicy,
        describer: SessionDescriber,
        rng: Randomness,
        users: frozenset[str] = frozenset(),
        timers: TimerConfig | None = None,
        max_calls: int = MAX_CALLS,
        max_calls_per_source: int = MAX_CALLS_PER_SOURCE,
    ) -> None:
        self.policy = policy
        self._describer = describer
        self._rng = rng
        self._users = users
        self._table = TransactionTable(timers=timers)
        reliable_timers = (timers or TimerConfig()).for_transport(reliable=True)
        self._timer_f = reliable_timers.f
        # 64·T1 (Timer B): how long a CANCEL waits for its 487, and an ended call we placed
        # for its 2xx retransmissions (RFC 6026 Timer M).
        self._sixty_four_t1 = reliable_timers.b
        #: Every account's registration, flow, back-off and keep-alive.
        self.registrations: Registrations[H] = Registrations(
            send=self._send_request, emit=self._emit, rng=rng
        )
        self._max_calls = max_calls
        self._max_per_source = max_calls_per_source
        self._calls: dict[CallKey, _Call[H]] = {}
        self._outgoing: dict[str, _Outgoing[H]] = {}  # calls we placed, by Call-ID
        # Calls we placed that are over, kept 64·T1 for a 2xx still to come (again, from
        # another fork, or one that crossed our CANCEL), oldest first.
        self._ended: dict[str, _Ended[H]] = {}
        self._uac_invites: dict[ClientTxKey, str] = {}  # their INVITE transactions
        self._by_invite: dict[ServerKey, CallKey] = {}
        # The connection each live transaction answers on (§18.2.2) or sends on.
        self._tx_handles: dict[TransactionKey, H] = {}
        # What each connection carries (calls and live transactions), while it carries any.
        self._uses: dict[H, int] = {}
        self._events: deque[EndpointEvent[H]] = deque()
        self._shutdown: _Shutdown | None = None
        #: Responses that matched none of our transactions (dropped, §17.1.3).
        self.stray_responses = 0

    # -- state ----------------------------------------------------------------------------

    @property
    def active_calls(self) -> int:
        """How many calls are ringing or up, both ways."""
        return len(self._calls) + len(self._outgoing)

    @property
    def unacknowledged_hangups(self) -> int:
        """Calls hung up on shutdown whose BYE still waits for the ACK of our 2xx."""
        if self._shutdown is None:
            return 0
        return sum(1 for key in self._shutdown.pending if key in self._calls)

    def next_event(self) -> EndpointEvent[H] | None:
        """The oldest queued event, or None."""
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        """When `handle_timer` must next be called, or None."""
        deadlines = [self._table.next_deadline(), self.registrations.next_deadline()]
        for call in self._calls.values():
            deadlines.append(call.session.next_deadline())
            if call.session.state is InviteState.RINGING:
                deadlines.append(call.answer_at)
            elif call.session.state is InviteState.CONFIRMED:
                deadlines += [call.hangup_at, call.expires_at]
        for out in self._outgoing.values():
            state = out.call.state
            if state in (uac.OutgoingState.CALLING, uac.OutgoingState.EARLY):
                deadlines.append(out.cancel_at)
            elif state is uac.OutgoingState.CANCELLING:
                deadlines.append(out.give_up_at)
            elif state is uac.OutgoingState.CONFIRMED:
                deadlines += [out.hangup_at, out.expires_at]
        return min((d for d in deadlines if d is not None), default=None)

    # -- inputs ---------------------------------------------------------------------------

    def receive(self, message: Request | Response, link: Link[H], now: float) -> None:
        """A message arrived on `link`."""
        try:
            self._table.receive(message, now, reliable=True)
        except RemoteProtocolError as exc:
            # A header the matching needs is malformed (400), or the table is full (503).
            if isinstance(message, Request):
                self._refuse_raw(message, link, exc.status_hint, str(exc))
            else:
                self.stray_responses += 1
            return
        self._drain(link, now)

    def response_unreadable(self, branch: str, method: str, reason: str, now: float) -> None:
        """A response that did not parse answered our transaction (`branch`, `method`): it is
        discarded (RFC 3261 §18.1.2), and a REGISTER's transaction ends now, with the reason,
        rather than at Timer F as if the registrar had said nothing."""
        key = ClientTxKey(branch=branch, method=method)
        if not self.registrations.owns(key):
            return  # a call's transaction keeps its own timers: the callee may send it again
        self.registrations.timed_out(
            key, f"the registrar's answer could not be read: {reason}", now
        )
        self._table.transport_error(key, now)
        self._drain(None, now)

    def connection_closed(self, handle: H, reason: str, now: float) -> None:
        """The connection `handle` is gone: its calls end, its transactions fail (§17.2.4), an
        account whose flow it was loses it."""
        self.registrations.connection_closed(handle, reason, now)
        for key, call in list(self._calls.items()):
            if call.link.handle == handle:
                self._end(key, call, f"connection-lost: {reason}", None)
        for call_id, out in list(self._outgoing.items()):
            if out.link.handle == handle:
                self._end_outgoing(call_id, f"connection-lost: {reason}", None, now)
        for tx_key, owner in list(self._tx_handles.items()):
            if owner == handle:
                self._table.transport_error(tx_key, now)
        self._drain(None, now)
        if self._uses.pop(handle, None) is not None:  # what it still carried is gone with it
            self._emit(ConnectionInUse(handle=handle, in_use=False))

    def handle_timer(self, now: float) -> None:
        """Fires what is due at `now`: transaction timers, rings, 2xx retransmissions, hang-ups."""
        self._table.handle_timer(now)
        self._drain(None, now)
        self.registrations.handle_timer(now)
        self._outgoing_timers(now)
        for key, call in list(self._calls.items()):
            if self._calls.get(key) is not call:
                continue  # ended by an earlier step of this loop
            session = call.session
            if session.state is InviteState.RINGING and call.answer_at <= now:
                self._decide(key, call, now)
            deadline = session.next_deadline()
            if deadline is not None and deadline <= now and self._calls.get(key) is call:
                self._step(key, call, partial(session.handle_timer, now), None, now)
            if (
                call.hangup_at is not None
                and call.hangup_at <= now
                and session.state is InviteState.CONFIRMED
            ):
                call.hangup_at = None
                self._step(key, call, session.hangup, None, now)
            if (
                call.expires_at is not None
                and call.expires_at <= now
                and session.state is InviteState.CONFIRMED
            ):
                call.expires_at = None  # RFC 4028 §10: the refresher did not refresh
                self._step(key, call, partial(session.hangup, "session-expired"), None, now)

    def place_call(
        self,
        call: uac.OutgoingCall,
        link: Link[H],
        now: float,
        *,
        ring_timeout: float | None = None,
        duration: float | None = None,
    ) -> None:
        """Places `call` on `link` (our flow to the outbound proxy or registrar).

        Args:
            call: the call, with its offer (`uac.OutgoingCall`).
            link: the connection to send it on.
            now: the current time.
            ring_timeout: seconds without an answer after which we CANCEL; None: never.
            duration: seconds after the answer at which we hang up with a BYE; None: never.
        """
        cancel_at = now + ring_timeout if ring_timeout is not None else None
        self._outgoing[call.call_id] = _Outgoing(call, link, cancel_at, duration)
        self._use(link.handle)
        self._run_outgoing(call.call_id, call.start, None, now)

    def hangup(self, call_id: str, now: float) -> None:
        """Ends a call we placed: BYE once answered, CANCEL before."""
        if call_id in self._outgoing:
            self._run_outgoing(call_id, self._outgoing[call_id].call.hangup, None, now)

    def end_call(self, tag: str, reason: str, now: float) -> None:
        """Ends the call whose tag (ours) is `tag`, either way, from our side, for `reason`
        (its `CallEnded` says it): BYE once up (after the ACK of our 2xx, §15), 480 while it
        rings, CANCEL for one we placed before its answer. The user agent's media failed."""
        for key, call in list(self._calls.items()):
            if call.session.local_tag == tag:
                if call.session.state is not InviteState.TERMINATED:
                    self._step(key, call, partial(call.session.hangup, reason), None, now)
                return
        for call_id, out in list(self._outgoing.items()):
            if out.call.local_tag == tag:
                self._run_outgoing(call_id, partial(out.call.hangup, reason), None, now)
                return

    def _outgoing_timers(self, now: float) -> None:
        for call_id, out in list(self._outgoing.items()):
            state = out.call.state
            early = state in (uac.OutgoingState.CALLING, uac.OutgoingState.EARLY)
            if early and out.cancel_at is not None and out.cancel_at <= now:
                out.cancel_at = None
                self._run_outgoing(call_id, out.call.cancel, None, now)
            elif (
                state is uac.OutgoingState.CANCELLING
                and out.give_up_at is not None
                and out.give_up_at <= now
            ):
                out.give_up_at = None  # §9.1: no final response 64·T1 after our CANCEL
                self._run_outgoing(call_id, out.call.timed_out, None, now)
            elif (
                state is uac.OutgoingState.CONFIRMED
                and out.hangup_at is not None
                and out.hangup_at <= now
            ):
                out.hangup_at = None
                self._run_outgoing(call_id, out.call.hangup, None, now)
            elif (
                state is uac.OutgoingState.CONFIRMED
                and out.expires_at is not None
                and out.expires_at <= now
            ):
                out.expires_at = None  # RFC 4028 §10: the refresher did not refresh
                hangup = partial(out.call.hangup, "session-expired")
                self._run_outgoing(call_id, hangup, None, now)

    def hangup_all(self, now: float) -> None:
        """Ends every call (BYE, or 480 for ringing ones); used on shutdown.

        A call answered but not yet acknowledged gets its BYE when the ACK arrives (§15):
        `unacknowledged_hangups` counts those; `abandon_unacknowledged` gives them up.
        """
        self._shutdown = _Shutdown()
        for call_id in list(self._outgoing):
            self.hangup(call_id, now)
        for key, call in list(self._calls.items()):
            if call.session.state is InviteState.TERMINATED:
                continue
            self._step(key, call, call.session.hangup, None, now)
            if call.session.hangup_pending:
                self._shutdown.pending.add(key)

    def abandon_unacknowledged(self) -> None:
        """Gives up the calls whose BYE still waits for an ACK (the shutdown budget is spent)."""
        if self._shutdown is None:
            return
        for key in list(self._shutdown.pending):
            call = self._calls.get(key)
            if call is not None:
                self._end(key, call, "shutdown-before-ack", None)

    # -- transaction layer output ---------------------------------------------------------

    def _drain(self, link: Link[H] | None, now: float) -> None:
        while (action := self._table.next_action()) is not None:
            if isinstance(action, SendMessage):
                if action.retransmission and link is not None:
                    # The request came again on `link`: answer there from now on (§18.2.2).
                    self._bind(action.key, link.handle)
                handle = self._tx_handles.get(action.key)
                if handle is not None:
                    self._emit(Send(handle=handle, message=action.message))
            elif isinstance(action, DeliverRequest):
                assert link is not None  # only `receive` creates server transactions
                self._bind(action.key, link.handle)
                self._serve(action.request, action.key, link, now)
            elif isinstance(action, AckReceived):
                self._ack(action.request, link, now)
            elif isinstance(action, DeliverResponse):
                if self.registrations.owns(action.key):
                    self.registrations.response(action.key, action.response, now)
                    continue
                call_id = self._uac_invites.get(action.key)
                if call_id is not None:
                    self._answer_to_invite(call_id, action.response, now)
                # An answer to our CANCEL or BYE needs nothing more.
            elif isinstance(action, StrayResponse):
                self._stray(action.response, now)
            elif isinstance(action, TransactionTimedOut) and isinstance(action.key, ClientTxKey):
                if self.registrations.owns(action.key):  # Timer F (§17.1.2.2)
                    reason = f"no response from the registrar within {self._timer_f:g} s"
                    self.registrations.timed_out(action.key, reason, now)
                    continue
                call_id = self._uac_invites.get(action.key)  # Timer B: no final answer
                if call_id is not None and call_id in self._outgoing:
                    self._run_outgoing(call_id, self._outgoing[call_id].call.timed_out, None, now)
            elif isinstance(action, TransactionTerminated):
                self._unbind(action.key)
                if isinstance(action.key, ClientTxKey):
                    self._uac_invites.pop(action.key, None)
                    self.registrations.terminated(action.key)

    # -- the transaction user: checks in §8.2's order -------------------------------------

    def _serve(self, request: Request, key: ServerKey, link: Link[H], now: float) -> None:
        try:
            self._dispatch(request, key, link, now)
        except Refusal as refusal:
            self._refuse(request, key, link, refusal, now)
        except ProtocolError as exc:
            # A header the parser read lazily is malformed where we need it.
            response = self._raw_error(request, exc.status_hint, str(exc), link)
            if response is not None:
                self._respond(key, response, link, now)

    def _dispatch(self, request: Request, key: ServerKey, link: Link[H], now: float) -> None:
        method = request.method
        if method not in SERVED_METHODS:
            if method in KNOWN_METHODS:
                raise Refusal(405, f"sipua does not serve {method}", ("Allow", ALLOW))
            raise Refusal(501, f"unknown method {method[:32]}")
        unsupported = [tag for tag in refresh.required(request) if tag not in SUPPORTED_EXTENSIONS]
        if unsupported and method not in ("ACK", "CANCEL"):
            # §8.2.2.3: an extension the request requires and sipua does not know.
            raise Refusal(
                420,
                f"unsupported extension {unsupported[0][:32]!r}",
                ("Unsupported", ", ".join(unsupported)[:200]),
            )
        uri = request.uri
        if not isinstance(uri, SipUri):
            raise Refusal(416, f"Request-URI scheme {uri.scheme[:16]!r}", ("Unsupported", "sips"))
        if uri.user is not None and uri.user not in self._users:
            raise Refusal(404, f"no user {uri.user[:64]!r} here")
        if method == "INVITE" and request.to.tag is None:
            self._new_call(request, key, link, now)
        elif method in ("INVITE", "UPDATE"):
            self._refresh(request, key, link, now)
        elif method == "BYE":
            out = self._outgoing.get(request.call_id)
            if out is not None and out.call.dialog is not None and out.call.dialog.matches(request):
                self._run_outgoing(
                    request.call_id, partial(out.call.receive_bye, request), key, now
                )
                return
            call_key = _call_key(request)
            call = self._calls.get(call_key)
            if call is None or not call.session.dialog.matches(request):
                raise Refusal(481, "BYE for no call of ours")
            self._apply(call_key, call, call.session.receive_bye(request), key, now)
        elif method == "CANCEL":
            invite_key = self._table.invite_for_cancel(request)
            call_key_or_none = self._by_invite.get(invite_key) if invite_key else None
            call = self._calls.get(call_key_or_none) if call_key_or_none else None
            if call is None or call_key_or_none is None:
                raise Refusal(481, "CANCEL for no INVITE of ours")
            self._apply(call_key_or_none, call, call.session.receive_cancel(request), key, now)
        else:  # OPTIONS
            self._respond(key, options_response(request, to_tag=new_tag(self._rng)), link, now)

    def _new_call(self, invite: Request, key: ServerKey, link: Link[H], now: float) -> None:
        call_key = _call_key(invite)
        existing = self._calls.get(call_key)
        if existing is not None:
            if invite.cseq == existing.session.invite.cseq:
                raise Refusal(482, "merged request: this INVITE reached us twice (§8.2.2.2)")
            raise Refusal(491, "another INVITE of this call is still in progress")
        tag = new_tag(self._rng)
        sdp = self._describe(invite, link, tag)
        try:
            self._check_caps(link)
            session = InviteSession(
                invite, local_tag=tag, contact=link.contact, sent_by=link.local, rng=self._rng
            )
        except BaseException:
            self._describer.release(tag)  # what the description bound, the refusal frees
            raise
        call = _Call(
            session,
            link,
            key,
            sdp,
            answer_at=now + max(0.0, self.policy.delay),
            remote_origin=refresh.sdp_origin(invite.body) if invite.body else None,
        )
        self._calls[call_key] = call
        self._use(link.handle)
        self._by_invite[key] = call_key
        self._emit(
            CallIncoming(
                call_id=invite.call_id,
                caller=str(invite.from_.uri),
                callee=str(invite.to.uri),
                peer=link.peer,
                tag=tag,
            )
        )
        self._apply(call_key, call, session.start(), key, now)

    def _check_caps(self, link: Link[H]) -> None:
        if len(self._calls) >= self._max_calls:
            raise Refusal(486, f"{self._max_calls} calls in progress")
        if not (link.outbound or link.server):
            source = link.source
            held = sum(1 for call in self._calls.values() if call.link.source == source)
            if held >= self._max_per_source:
                raise Refusal(486, f"{self._max_per_source} calls from {source} in progress")

    def _describe(self, invite: Request, link: Link[H], tag: str) -> bytes:
        address = link.local_address
        if not invite.body:
            return self._describer.offer(address=address, tag=tag)
        content_type = (invite.content_type or "").split(";", 1)[0].strip().lower()
        if content_type != "application/sdp":
            raise Refusal(415, f"body of type {content_type[:64]!r}", ("Accept", "application/sdp"))
        encoding = (invite.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise Refusal(
                415, f"body encoded as {encoding[:32]!r}", ("Accept-Encoding", "identity")
            )
        return self._describer.answer(invite.body, address=address, tag=tag)

    def _refresh(self, request: Request, key: ServerKey, link: Link[H], now: float) -> None:
        """A re-INVITE or UPDATE inside a call, either way (see `sipua.sip.refresh`)."""
        call = self._calls.get(_call_key(request))
        out = self._outgoing.get(request.call_id)
        if call is not None and call.session.dialog.matches(request):
            confirmed = call.session.state is InviteState.CONFIRMED
            dialog, tag, sdp = call.session.dialog, call.session.local_tag, call.sdp
            origin = call.remote_origin
        elif out is not None and out.call.dialog is not None and out.call.dialog.matches(request):
            confirmed = out.call.state is uac.OutgoingState.CONFIRMED
            dialog, tag, sdp = out.call.dialog, out.call.local_tag, out.call.offer
            origin = out.remote_origin
        else:
            raise Refusal(481, f"{request.method} for no call of ours")
        if not confirmed:
            # A refresh before the call is up crosses our own answer (RFC 3261 §14.2).
            raise Refusal(491, "the call is not established yet", ("Retry-After", "1"))
        dialog.receive_request(request)  # §12.2.2: 500 for a CSeq that went backwards
        answer = refresh.answer_refresh(
            request, local_tag=tag, contact=link.contact, local_sdp=sdp, remote_origin=origin
        )
        if answer.response.status == 200:
            expires_at = now + answer.expires if answer.expires is not None else None
            if call is not None:
                call.remote_origin = answer.origin
                call.expires_at = expires_at or call.expires_at
            elif out is not None:
                out.remote_origin = answer.origin
                out.expires_at = expires_at or out.expires_at
        else:
            self._report(request.method, answer.response.status, "refresh refused", link)
        self._respond(key, answer.response, link, now)

    def _ack(self, ack: Request, link: Link[H] | None, now: float) -> None:
        call_key = _call_key(ack)
        call = self._calls.get(call_key)
        if call is None or not call.session.dialog.matches(ack):
            out = self._outgoing.get(ack.call_id)
            if out is not None and out.call.dialog is not None and out.call.dialog.matches(ack):
                return  # the ACK of our 2xx to the callee's re-INVITE: nothing more to do
            self._report("ACK", None, "ACK for no call of ours", link)
            return
        self._step(call_key, call, partial(call.session.receive_ack, ack), None, now)

    # -- calls ----------------------------------------------------------------------------

    def _decide(self, key: CallKey, call: _Call[H], now: float) -> None:
        session = call.session
        if self.policy.action in REJECT_STATUS:
            self._apply(key, call, session.reject(REJECT_STATUS[self.policy.action]), None, now)
            return
        expires = refresh.initial_session_expires(session.invite)
        extra: tuple[tuple[str, str], ...] = ()
        if expires is not None:
            # RFC 4028: the caller asked for session timers; it refreshes (refresher=uac).
            extra = (("Session-Expires", f"{expires};refresher=uac"), ("Require", "timer"))
            call.expires_at = now + expires
        self._apply(key, call, session.answer(call.sdp, now, extra), None, now)
        if self.policy.hangup_after is not None:
            call.hangup_at = now + self.policy.hangup_after

    def _step(
        self,
        key: CallKey,
        call: _Call[H],
        step: Callable[[], list[InviteOutput]],
        request_key: ServerKey | None,
        now: float,
    ) -> None:
        """Runs one step of a call's session and carries out its outputs.

        A step that cannot build its request (a BYE for a dialog whose route or target turned
        out unusable) ends that call, never the endpoint: the dialog is checked when the
        INVITE arrives, so this is a backstop.
        """
        try:
            outputs = step()
        except ProtocolError as exc:
            self._end(key, call, f"protocol-error: {exc}", None)
            return
        self._apply(key, call, outputs, request_key, now)

    def _apply(
        self,
        key: CallKey,
        call: _Call[H],
        outputs: list[InviteOutput],
        request_key: ServerKey | None,
        now: float,
    ) -> None:
        call_id = call.session.call_id
        for output in outputs:
            if isinstance(output, Reply):
                # §18.2.2: a response goes back through its request's transaction: the INVITE's
                # (the 487 after a CANCEL too), or the request being handled (CANCEL, BYE).
                response = output.response
                to_invite = response.cseq.method == "INVITE"
                tx_key = call.invite_key if to_invite or request_key is None else request_key
                self._respond(tx_key, response, call.link, now)
            elif isinstance(output, session_outputs.Send):
                self._send_request(call.link.handle, output.request, now)
            elif isinstance(output, session_outputs.CallAnswered):
                self._emit(CallAnswered(call_id=call_id, tag=call.session.local_tag))
            elif isinstance(output, session_outputs.CallConfirmed):
                self._emit(
                    CallConfirmed(call_id=call_id, tag=call.session.local_tag, sdp=output.sdp)
                )
            elif isinstance(output, session_outputs.CallEnded):
                self._end(key, call, output.reason, output.status)

    def _end(self, key: CallKey, call: _Call[H], reason: str, status: int | None) -> None:
        if self._calls.get(key) is not call:
            return
        del self._calls[key]
        self._unuse(call.link.handle)
        self._by_invite.pop(call.invite_key, None)
        tag = call.session.local_tag
        self._describer.release(tag)
        self._emit(CallEnded(call_id=call.session.call_id, reason=reason, status=status, tag=tag))

    # -- calls we place ----------------------------------------------------------------------

    def _answer_to_invite(self, call_id: str, response: Response, now: float) -> None:
        out = self._outgoing.get(call_id)
        if out is not None:
            self._run_outgoing(call_id, partial(out.call.receive_response, response), None, now)
            return
        ended = self._ended.get(call_id)
        if ended is None or not 200 <= response.status < 300:
            return
        if ended.until <= now:
            del self._ended[call_id]
            return
        # A 2xx after the call ended: again (our ACK was lost, RFC 6026 Timer M), the same
        # ACK; another fork's, or the first one after our CANCEL crossed it: its ACK and BYE.
        for output in ended.call.receive_response(response):
            if isinstance(output, uac.SendDirect):
                self._emit(Send(handle=ended.link.handle, message=output.request))
            elif isinstance(output, uac.SendInTransaction):
                self._send_request(ended.link.handle, output.request, now)

    def _stray(self, response: Response, now: float) -> None:
        # A 2xx retransmitted after its INVITE transaction ended still needs its ACK (§13.2.2.4).
        call_id = response.call_id
        is_2xx = response.cseq.method == "INVITE" and 200 <= response.status < 300
        if is_2xx and (call_id in self._outgoing or call_id in self._ended):
            self._answer_to_invite(call_id, response, now)
            return
        self.stray_responses += 1  # dropped (§17.1.3)

    def _run_outgoing(
        self,
        call_id: str,
        step: Callable[[], list[uac.OutgoingOutput]],
        request_key: ServerKey | None,
        now: float,
    ) -> None:
        out = self._outgoing.get(call_id)
        if out is None:
            return
        try:
            outputs = step()
        except ProtocolError as exc:
            self._end_outgoing(call_id, f"protocol-error: {exc}", None, now)
            return
        for output in outputs:
            if isinstance(output, uac.SendInTransaction):
                request = output.request
                key = self._send_request(out.link.handle, request, now)
                if request.method == "INVITE":
                    self._uac_invites[key] = call_id
                elif request.method == "CANCEL":
                    out.give_up_at = now + self._sixty_four_t1
            elif isinstance(output, uac.SendDirect):
                self._emit(Send(handle=out.link.handle, message=output.request))
            elif isinstance(output, uac.Answer) and request_key is not None:
                self._respond(request_key, output.response, out.link, now)
            elif isinstance(output, uac.Progress):
                self._emit(
                    CallProgress(
                        call_id=call_id,
                        status=output.status,
                        reason=output.reason,
                        tag=out.call.local_tag,
                        sdp=output.sdp,
                    )
                )
            elif isinstance(output, uac.Established):
                out.remote_origin = refresh.sdp_origin(output.sdp)
                if out.duration is not None:
                    out.hangup_at = now + out.duration
                self._emit(CallEstablished(call_id=call_id, sdp=output.sdp, tag=out.call.local_tag))
            elif isinstance(output, uac.Ended):
                self._end_outgoing(call_id, output.reason, output.status, now, output.phrase)

    def _end_outgoing(
        self, call_id: str, reason: str, status: int | None, now: float, phrase: str = ""
    ) -> None:
        out = self._outgoing.pop(call_id, None)
        if out is None:
            return
        self._unuse(out.link.handle)
        for tx_key, owner in list(self._uac_invites.items()):
            tx = self._table.get(tx_key)
            if owner == call_id and tx is not None and tx.state in _WAITING:
                # The call is over without a final response (our CANCEL got no 487): its
                # INVITE transaction has no timer left in Proceeding, so it is released here.
                self._table.transport_error(tx_key, now)
                self._drain(None, now)
        # Answered or not: a 2xx that crossed our CANCEL (or came after we gave up) must still
        # be ACKed and the call it makes ended (§9.1, §13.2.2.4).
        self._keep_ended(call_id, out, now)
        tag = out.call.local_tag
        self._describer.release(tag)  # the offer's session, if it never ran
        self._emit(CallEnded(call_id=call_id, reason=reason, status=status, phrase=phrase, tag=tag))

    def _keep_ended(self, call_id: str, out: _Outgoing[H], now: float) -> None:
        for old_id, old in list(self._ended.items()):
            if old.until <= now:
                del self._ended[old_id]
        while len(self._ended) >= MAX_ANSWERED_KEPT:
            del self._ended[next(iter(self._ended))]  # the oldest
        self._ended[call_id] = _Ended(out.call, out.link, now + self._sixty_four_t1)

    # -- sending --------------------------------------------------------------------------

    def _respond(self, key: ServerKey, response: Response, link: Link[H], now: float) -> None:
        try:
            self._table.send_response(key, response, now)
        except LocalProtocolError:
            # The transaction is over (a 2xx retransmitted after Timer L): the dialog's own
            # 2xx goes out directly on the call's connection (§13.3.1.4).
            self._emit(Send(handle=link.handle, message=response))
            return
        self._drain(None, now)

    def _send_request(self, handle: H, request: Request, now: float) -> ClientTxKey:
        """Sends `request` on `handle` in a new client transaction (an account's REGISTER,
        a call's INVITE, CANCEL or BYE)."""
        key = self._table.send_request(request, now, reliable=True)
        self._bind(key, handle)
        self._drain(None, now)
        return key

    # -- what each connection carries ------------------------------------------------------

    def _bind(self, key: TransactionKey, handle: H) -> None:
        """The transaction `key` answers or sends on `handle` from now on."""
        old = self._tx_handles.get(key)
        if old == handle:
            return
        self._tx_handles[key] = handle
        self._use(handle)
        if old is not None:
            self._unuse(old)

    def _unbind(self, key: TransactionKey) -> None:
        old = self._tx_handles.pop(key, None)
        if old is not None:
            self._unuse(old)

    def _use(self, handle: H) -> None:
        count = self._uses.get(handle, 0)
        self._uses[handle] = count + 1
        if count == 0:
            self._emit(ConnectionInUse(handle=handle, in_use=True))

    def _unuse(self, handle: H) -> None:
        count = self._uses.get(handle)
        if count is None:
            return  # the connection closed; its release was said then
        if count > 1:
            self._uses[handle] = count - 1
            return
        del self._uses[handle]
        self._emit(ConnectionInUse(handle=handle, in_use=False))

    def _refuse(
        self, request: Request, key: ServerKey, link: Link[H], refusal: Refusal, now: float
    ) -> None:
        self._report(request.method, refusal.status, refusal.reason, link)
        response = make_response(request, refusal.status, to_tag=new_tag(self._rng))
        for name, value in refusal.headers:
            response.headers.add(name, value)
        self._respond(key, response, link, now)

    def _refuse_raw(self, request: Request, link: Link[H], status: int, reason: str) -> None:
        """Answers a request the transaction layer could not take, outside any transaction."""
        response = self._raw_error(request, status, reason, link)
        if response is not None:
            self._emit(Send(handle=link.handle, message=response))

    def _raw_error(
        self, request: Request, status: int, reason: str, link: Link[H]
    ) -> Response | None:
        """The error response built from the request's raw fields (`sipua.sip.rejection`; None
        for an ACK or when nothing can answer it), reported either way."""
        response = error_response(serialize(request), status, reason, to_tag=new_tag(self._rng))
        self._report(request.method, status if response else None, reason, link)
        return response

    def _report(self, method: str, status: int | None, reason: str, link: Link[H] | None) -> None:
        peer = link.peer if link is not None else ""
        self._emit(RequestRefused(method=method, status=status, reason=reason, peer=peer))

    def _emit(self, event: EndpointEvent[H]) -> None:
        if len(self._events) >= MAX_PENDING_EVENTS:
            raise LocalProtocolError(
                f"{MAX_PENDING_EVENTS} endpoint events are waiting; the user agent must drain "
                "next_event() after every input"
            )
        self._events.append(event)


def _call_key(request: Request) -> CallKey:
    return (request.call_id, request.from_.tag)


__all__ = [
    "MAX_CALLS",
    "MAX_CALLS_PER_SOURCE",
    "AnswerPolicy",
    "CallAnswered",
    "CallConfirmed",
    "CallEnded",
    "CallIncoming",
    "ConnectionInUse",
    "Endpoint",
    "EndpointEvent",
    "Link",
    "Refusal",
    "RequestRefused",
    "Send",
    "SessionDescriber",
]
