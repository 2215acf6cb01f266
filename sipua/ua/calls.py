"""The trio side of the SIP endpoint (`sipua.sip.endpoint`): the user agent's one pump.

Theory of operation: every decision is the endpoint's (sans-IO); this module only moves bytes
and time. `CallHandler.handle_message(connection, message)` is called by the reader task of
whichever connection a message arrived on (the listener's, or an account's registration flow,
which also carries the answers to our REGISTERs and the requests the registrar sends back
through NAT, RFC 5626 §5.3); it feeds the endpoint and drains what the endpoint wants done,
without waiting on any network: messages and keep-alive pings to send go to the connection's
*outbox*, a dead flow is closed, an account's events (locate, connect, registered, failed...)
go to its `Account`, the call events to the user agent's publisher. Commands and facts from the
accounts come in through `command(fn)`. One pump task sleeps until the endpoint's next
deadline (refreshes, retries, pings and pong timeouts, transaction timers, rings, hang-ups; or
until an input moved it earlier) and feeds it the time: there is no other timer loop.

An answered call's media (`call_media.py`) runs in one task from the answer (`CallAnswered`) to
the end of the call (`CallEnded`), which cancels it; its report is published as `call-media`.
A connection that carries a call or an open transaction is in use (the endpoint's
`ConnectionInUse`): its idle timeout does not run then, so a call on an inbound connection
lasts as long as its parties want, although no SIP crosses it.
A `MediaError` (a file that became unreadable, keys libsrtp refused) ends the media only; any
other exception from it is a bug, reported as an internal error (`report_internal_error`), and
ends that call (a BYE, reason `media-failed`), never the user agent or the other calls.

Each connection that carries our messages gets one outbox: a bounded channel and one task that
sends in order and, when the connection closes, tells the endpoint (its calls end at once, its
transactions fail). The outbox holds the connection's reader back: once `OUTBOX_SIZE` messages
wait, `handle_message` waits for room before the reader reads on, so a burst of requests in one
read (a registrar delivering many calls at once) is answered at the pace the peer reads, never
refused. Whether a peer reads is judged by time, not by the queue: a send that stays blocked for
the connection's `SEND_STALL_SECONDS` closes it (`sipua.transport.connection`). What is posted
without a reader to hold back (timers, requests that arrived on another connection) is bounded
by the endpoint's own bounds; `OUTBOX_LIMIT` is the backstop that keeps memory bounded whatever
happens. One stalled peer fills only its own outbox and holds no one else's answers up. Nothing
here is per call: a ringing call is a deadline in the endpoint.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import trio

from sipua.errors import ConnectionLost
from sipua.logs import get_logger
from sipua.media.errors import MediaError, MediaRefused
from sipua.media.negotiation import MediaPlan
from sipua.media.session import MediaSession
from sipua.media.sources import WavRecorder, make_source
from sipua.sip import Request, Response
from sipua.sip.endpoint import (
    AnswerPolicy,
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallEstablished,
    CallIncoming,
    CallProgress,
    ConnectionInUse,
    Endpoint,
    Link,
    RequestRefused,
    Send,
)
from sipua.sip.ids import new_tag
from sipua.sip.registration import ChallengeResponder
from sipua.sip.registrations import (
    AccountRegistered,
    AccountRegistrationFailed,
    AccountUnregistered,
    CloseConnection,
    FlowLost,
    LocateTargets,
    OpenConnection,
    RegistrationRetry,
    SendKeepalive,
)
from sipua.sip.uac import OutgoingCall
from sipua.transport import connection as transport_connection
from sipua.transport.connection import SipConnection
from sipua.ua.call_media import CallMedia, MediaDescriber

if TYPE_CHECKING:
    from sipua.ua.account import Account

#: Messages waiting to go out on one connection before its reader waits for room (the
#: backpressure that paces a peer's burst of requests to the rate it reads our answers).
OUTBOX_SIZE: Final = 64
#: Messages one outbox holds at most. Beyond `OUTBOX_SIZE` only what no reader holds back is
#: posted (timers: answers, 2xx retransmissions and BYEs of at most MAX_CALLS calls; requests
#: from other connections): a connection this far behind is closed, so memory stays bounded.
OUTBOX_LIMIT: Final = 16 * OUTBOX_SIZE
#: How long shutdown waits for the ACK of a call answered just before it (its BYE must wait
#: for that ACK, RFC 3261 §15); less than the 5 s budget, which unregistering needs too.
SHUTDOWN_ACK_WAIT_SECONDS: Final = 2.0
#: Characters of an unexpected media error's message in the call's end reason.
MAX_FAILURE_CHARS: Final = 200

Publish = Callable[..., None]
T = TypeVar("T")
#: What an outbox carries: a message, or an RFC 5626 keep-alive ping.
_Outgoing = Request | Response | None

_log = get_logger(component="calls")

__all__ = ["SHUTDOWN_ACK_WAIT_SECONDS", "AnswerPolicy", "CallHandler", "CallMedia", "PlacedCall"]


class _Outbox:
    """One connection's queue of messages to send, and the task that sends them.

    `idle` is set while nothing waits to be sent, `room` while fewer than `OUTBOX_SIZE` do.
    """

    def __init__(self, connection: SipConnection) -> None:
        self.connection = connection
        self.send_channel, self.receive_channel = trio.open_memory_channel[_Outgoing](OUTBOX_LIMIT)
        self.pending = 0
        self.idle = trio.Event()
        self.idle.set()
        self.room = trio.Event()
        self.room.set()
        self.overflowed = False

    def posted(self) -> None:
        self.pending += 1
        if self.idle.is_set():
            self.idle = trio.Event()
        if self.pending >= OUTBOX_SIZE and self.room.is_set():
            self.room = trio.Event()

    def taken(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.idle.set()
        if self.pending < OUTBOX_SIZE:
            self.room.set()

    def release(self) -> None:
        """The connection closed: nothing waits for this outbox any more."""
        self.idle.set()
        self.room.set()


@dataclass(slots=True, eq=False)
class PlacedCall:
    """A call we placed, as its caller waits for it: how it ended and what its media did.

    Attributes:
        dtmf: digits to send once the media runs; record: where to record what it hears.
        outcome: how the call ended (set when `ended` is).
        established: the callee answered and we ACKed.
        media_report: the call's media report (`call-media`), when media ran.
        media_refusal: why our SRTP policy refused the callee's answer, if it did.
    """

    dtmf: str
    record: Path | None
    ended: trio.Event = field(default_factory=trio.Event)
    outcome: CallEnded | None = None
    established: bool = False
    media_report: dict[str, object] | None = None
    media_refusal: str | None = None
    media_running: bool = False
    media_done: trio.Event = field(default_factory=trio.Event)


@dataclass(slots=True, eq=False)
class _EarlyMedia:
    """A placed call whose media started from a 183's answer (RFC 3261 §13.2.1).

    Attributes:
        answer: the 183's SDP; a 2xx that repeats it changes nothing.
        next_plan: the plan of a 2xx with another answer (another fork, RFC 3261 §13.2.2.4, or
            an answer that replaces the early one), for the running media to take up.
        leg: the scope of the run under way, cancelled to take `next_plan` up.
    """

    answer: bytes
    next_plan: MediaPlan | None = None
    leg: trio.CancelScope | None = None


class CallHandler:
    """Serves inbound requests for one user agent through one `Endpoint`.

    Args:
        policy: the answer policy.
        publish: `publish(event, **fields)`, the UA's event sink.
        contact_for: our Contact URI (text) for a connection.
        nursery: where the pump and the outboxes run.
        rng: the random source for tags, branches and SDP session ids.
        users: the Request-URI users we answer for (the AOR's).
        is_server: whether a source address belongs to a server we register with.
        media: the media of answered calls; None answers without carrying RTP.
    """

    def __init__(
        self,
        *,
        policy: AnswerPolicy,
        publish: Publish,
        contact_for: Callable[[SipConnection], str],
        nursery: trio.Nursery,
        rng: random.Random,
        users: frozenset[str] = frozenset(),
        is_server: Callable[[str], bool] = lambda _host: False,
        media: CallMedia | None = None,
    ) -> None:
        self._describer = MediaDescriber(rng, media)
        self._rng = rng
        self.endpoint: Endpoint[SipConnection] = Endpoint(
            policy=policy, describer=self._describer, rng=rng, users=users
        )
        self._publish = publish
        self._contact_for = contact_for
        self._nursery = nursery
        self._is_server = is_server
        self._outboxes: dict[SipConnection, _Outbox] = {}
        self._playing: dict[str, trio.CancelScope] = {}  # answered calls' media, by our tag
        self._early: dict[str, _EarlyMedia] = {}  # placed calls whose media a 183 started
        self._placed: dict[str, PlacedCall] = {}  # the calls we placed, until waited for
        self._accounts: dict[str, Account] = {}
        self._deadline_changed = trio.Event()
        nursery.start_soon(self._pump)

    @property
    def policy(self) -> AnswerPolicy:
        """The answer policy (settable: applies to calls not yet answered)."""
        return self.endpoint.policy

    @policy.setter
    def policy(self, policy: AnswerPolicy) -> None:
        self.endpoint.policy = policy

    @property
    def media(self) -> CallMedia | None:
        """The media of answered calls (settable: applies to calls answered from then on)."""
        return self._describer.media

    @media.setter
    def media(self, media: CallMedia | None) -> None:
        self._describer.media = media

    @property
    def active_calls(self) -> int:
        """How many calls are ringing or up."""
        return self.endpoint.active_calls

    def attach(self, account: Account) -> None:
        """Routes the endpoint's events for `account` to it."""
        self._accounts[account.name] = account

    def command(self, step: Callable[[float], T]) -> T:
        """Feeds the endpoint one command or fact, `step(now)`, and carries out what follows."""
        result = step(trio.current_time())
        self._drain()
        return result

    def connection_closed(self, connection: SipConnection, reason: str) -> None:
        """A connection's reader ended: its calls end, its transactions fail, a flow is lost."""
        self.command(lambda now: self.endpoint.connection_closed(connection, reason, now))

    async def handle_message(self, connection: SipConnection, message: Request | Response) -> None:
        """Feeds one message that arrived on `connection` to the endpoint.

        Returns when the connection's outbox has room again: the reader reads the next message
        only as fast as the peer takes our answers (each send is bounded in time, so a peer
        that does not read loses the connection instead of holding the reader).
        """
        self.endpoint.receive(message, self._link(connection), trio.current_time())
        self._drain()
        outbox = self._outboxes.get(connection)
        if outbox is not None and not outbox.room.is_set():
            await outbox.room.wait()
        else:
            await trio.lowlevel.checkpoint()

    def place_call(
        self,
        connection: SipConnection,
        *,
        target: str,
        from_uri: str,
        responder: ChallengeResponder | None,
        ring_timeout: float | None,
        duration: float | None,
        dtmf: str = "",
        record: Path | None = None,
    ) -> str:
        """Calls `target` over `connection` (the registration flow); returns the Call-ID.

        `dtmf` digits are sent (RFC 4733) once the call's media runs; `record` receives the
        audio the callee sends (8 kHz mono 16-bit WAV).

        Raises:
            LocalProtocolError: `target` is not a SIP or SIPS URI.
            MediaError: no media port pair is free for the call's offer.
        """
        tag = new_tag(self._rng)
        link = self._link(connection)
        call = OutgoingCall(
            target=target,
            from_uri=from_uri,
            contact=link.contact,
            sent_by=link.local,
            offer=self._describer.offer_for_call(address=link.local_address, tag=tag),
            responder=responder,
            rng=self._rng,
            local_tag=tag,
        )
        self._placed[call.call_id] = PlacedCall(dtmf=dtmf, record=record)
        self._publish("call-placing", call_id=call.call_id, callee=target, peer=connection.peer)
        self.endpoint.place_call(
            call,
            link,
            trio.current_time(),
            ring_timeout=ring_timeout,
            duration=duration,
        )
        self._drain()
        return call.call_id

    async def wait_ended(self, call_id: str) -> PlacedCall:
        """Waits until the call we placed is over (its media report too); returns how it went."""
        placed = self._placed[call_id]
        await placed.ended.wait()
        if placed.media_running:
            await placed.media_done.wait()
        del self._placed[call_id]
        return placed

    def hangup(self, call_id: str) -> None:
        """Ends a call we placed (BYE, or CANCEL before the answer)."""
        self.endpoint.hangup(call_id, trio.current_time())
        self._drain()

    async def hangup_all(self, *, ack_wait: float = SHUTDOWN_ACK_WAIT_SECONDS) -> None:
        """Ends every call (BYE, or 480 for ringing ones) and waits until that is sent.

        A call answered but not yet acknowledged gets its BYE when the ACK arrives (RFC 3261
        §15): this waits up to `ack_wait` seconds for those ACKs, then gives such calls up
        without a BYE, so that unregistering still fits in the shutdown budget.
        """
        self.endpoint.hangup_all(trio.current_time())
        self._drain()
        with trio.move_on_after(ack_wait):
            while self.endpoint.unacknowledged_hangups:  # noqa: ASYNC110 - the ACKs arrive elsewhere
                await trio.sleep(0.05)
        self.endpoint.abandon_unacknowledged()
        self._drain()
        try:
            for outbox in list(self._outboxes.values()):
                await outbox.idle.wait()
        except trio.Cancelled:
            # The caller's shutdown budget ran out: a peer that has not taken our messages by
            # now loses its connection instead of holding sipua's exit a second time.
            for outbox in self._outboxes.values():
                if not outbox.idle.is_set():
                    self._nursery.start_soon(
                        outbox.connection.aclose, "did not take our messages before shutdown"
                    )
            raise

    # -- the pump -------------------------------------------------------------------------

    async def _pump(self) -> None:
        """Feeds the endpoint the time whenever its next deadline comes."""
        while True:
            deadline = self.endpoint.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                await self._deadline_changed.wait()
                self._deadline_changed = trio.Event()
                continue
            self.endpoint.handle_timer(trio.current_time())
            self._drain()

    def _drain(self) -> None:
        """Carries out what the endpoint queued; never waits."""
        while (event := self.endpoint.next_event()) is not None:
            if isinstance(event, Send):
                self._post(event.handle, event.message)
            elif isinstance(event, SendKeepalive):
                self._post(event.handle, None)
            elif isinstance(event, ConnectionInUse):
                event.handle.set_in_use(event.in_use)  # no idle timeout while a call needs it
            elif isinstance(event, CloseConnection):
                self._nursery.start_soon(event.handle.aclose, event.reason)
            elif isinstance(
                event,
                LocateTargets
                | OpenConnection
                | AccountRegistered
                | AccountRegistrationFailed
                | AccountUnregistered
                | RegistrationRetry
                | FlowLost,
            ):
                account = self._accounts.get(event.account)
                if account is not None:
                    account.on_event(event)
            elif isinstance(event, CallIncoming):
                self._publish(
                    "call-incoming",
                    call_id=event.call_id,
                    caller=event.caller,
                    callee=event.callee,
                    peer=event.peer,
                )
            elif isinstance(event, CallAnswered):
                self._publish("call-answered", call_id=event.call_id)
                self._start_media(event.call_id, event.tag)
            elif isinstance(event, CallConfirmed):
                self._publish("call-confirmed", call_id=event.call_id)
                if event.sdp:  # the answer to the offer of our 2xx (§13.3.1.4)
                    self._start_answered_media(event.call_id, event.tag, event.sdp)
            elif isinstance(event, CallProgress):
                self._publish(
                    "call-progress", call_id=event.call_id, status=event.status, reason=event.reason
                )
                if event.sdp:  # early media: the 183's answer starts it (RFC 3261 §13.2.1)
                    self._start_placed_media(event.call_id, event.tag, event.sdp, early=True)
            elif isinstance(event, CallEstablished):
                if (placed := self._placed.get(event.call_id)) is not None:
                    placed.established = True
                self._publish("call-established", call_id=event.call_id)
                self._start_placed_media(event.call_id, event.tag, event.sdp)
            elif isinstance(event, CallEnded):
                self._early.pop(event.tag, None)
                scope = self._playing.pop(event.tag, None)
                if scope is not None:
                    scope.cancel()  # its task publishes the media report
                self._publish(
                    "call-ended", call_id=event.call_id, reason=event.reason, status=event.status
                )
                if (placed := self._placed.get(event.call_id)) is not None:
                    placed.outcome = event
                    placed.ended.set()
            elif isinstance(event, RequestRefused):
                _log.info(
                    "request-refused" if event.status is not None else "request-dropped",
                    peer=event.peer,
                    method=event.method,
                    status=event.status,
                    reason=event.reason,
                )
        self._deadline_changed.set()

    # -- media ----------------------------------------------------------------------------

    def _start_placed_media(
        self, call_id: str, tag: str, answer: bytes, *, early: bool = False
    ) -> None:
        if tag in self._playing:
            # Media runs since a 183. The 2xx's answer is the one that counts: when it is not
            # the 183's (another fork answered, or the callee changed its mind), the running
            # media takes it up, on the same socket our offer named.
            running = self._early.get(tag)
            if early or running is None or answer == running.answer:
                return
            try:
                plan = self._describer.replan(tag, answer)
            except MediaRefused as exc:
                self._refuse_placed_media(call_id, exc)
                return
            if plan is not None:
                running.next_plan = plan
                if running.leg is not None:
                    running.leg.cancel()
            return
        try:
            bound = self._describer.accept(tag, answer, early=early)
        except MediaRefused as exc:
            self._refuse_placed_media(call_id, exc)
            return
        if early and bound is not None:
            self._early[tag] = _EarlyMedia(answer)
        self._run_media(call_id, tag, bound)

    def _refuse_placed_media(self, call_id: str, exc: MediaRefused) -> None:
        # The callee answered what our policy refuses (a plain answer under compulsory SRTP):
        # the call cannot go on.
        _log.warning("call-media-refused", call_id=call_id, reason=str(exc))
        if (placed := self._placed.get(call_id)) is not None:
            placed.media_refusal = str(exc)
        self.hangup(call_id)

    def _start_media(self, call_id: str, tag: str) -> None:
        self._run_media(call_id, tag, self._describer.take(tag))

    def _start_answered_media(self, call_id: str, tag: str, answer: bytes) -> None:
        try:
            bound = self._describer.accept(tag, answer)
        except MediaRefused as exc:
            _log.warning("call-media-refused", call_id=call_id, reason=str(exc))
            return  # no media for this call; it goes on (the caller may still hang up)
        self._run_media(call_id, tag, bound)

    def _run_media(
        self, call_id: str, tag: str, bound: tuple[MediaSession, MediaPlan] | None
    ) -> None:
        config = self._describer.media
        if bound is None or config is None:
            return  # no media configured for this call
        scope = trio.CancelScope()
        self._playing[tag] = scope
        session, plan = bound
        placed = self._placed.get(call_id)
        if placed is not None:
            placed.media_running = True
        self._nursery.start_soon(self._play, call_id, tag, scope, session, plan, config, placed)

    async def _play(
        self,
        call_id: str,
        tag: str,
        scope: trio.CancelScope,
        session: MediaSession,
        plan: MediaPlan,
        config: CallMedia,
        placed: PlacedCall | None,
    ) -> None:
        """Runs one call's media until the call ends, then publishes its report.

        It runs in the user agent's nursery: nothing but cancellation may leave it.
        """
        recorder: WavRecorder | None = None
        failure: str | None = None
        try:
            with scope:
                try:
                    if placed is not None and placed.record is not None:
                        recorder = WavRecorder(placed.record, plan.codec)
                    if placed is not None and placed.dtmf:
                        session.send_digits(placed.dtmf)
                    early = self._early.get(tag)
                    while True:  # at most twice: `replan` gives one new plan per call
                        if early is not None and early.next_plan is not None:
                            # A 2xx with another answer than the 183's (handled before this
                            # task ran, or while a leg ran): its plan from now on.
                            plan, early.next_plan = early.next_plan, None
                            if recorder is not None:
                                recorder.codec = plan.codec
                        with trio.CancelScope() as leg:
                            if early is not None:
                                early.leg = leg
                            source = make_source(config.play, plan.codec)
                            await session.run(plan, source, recorder=recorder)
                        if early is None or early.next_plan is None:
                            break
                except MediaError as exc:  # a file that became unreadable, keys libsrtp refused
                    _log.warning("call-media-failed", call_id=call_id, reason=str(exc))
                except Exception as exc:  # noqa: BLE001 - one call's media must not end the UA
                    text = str(exc)[:MAX_FAILURE_CHARS]
                    transport_connection.report_internal_error(exc, call_id=call_id, reason=text)
                    failure = f"media-failed: {type(exc).__name__}" + (f": {text}" if text else "")
        finally:
            session.close()
            report = session.report().as_event()
            if placed is not None:
                placed.media_report = report
                placed.media_done.set()
            self._publish("call-media", call_id=call_id, **report)
        if failure is not None:
            self.command(lambda now: self.endpoint.end_call(tag, failure, now))

    # -- connections ----------------------------------------------------------------------

    def _link(self, connection: SipConnection) -> Link[SipConnection]:
        host = connection.peer.rpartition(":")[0].strip("[]")
        return Link(
            handle=connection,
            peer=connection.peer,
            local=connection.local,
            contact=self._contact_for(connection),
            outbound=connection.tls_name is not None,  # our own flow to a verified server
            server=self._is_server(host),
        )

    def _post(self, connection: SipConnection, message: _Outgoing) -> None:
        outbox = self._outboxes.get(connection)
        if outbox is None:
            if not connection.is_open:
                self.endpoint.connection_closed(
                    connection, connection.closed_reason or "closed", trio.current_time()
                )
                return
            outbox = _Outbox(connection)
            self._outboxes[connection] = outbox
            self._nursery.start_soon(self._serve_outbox, outbox)
        try:
            outbox.send_channel.send_nowait(message)
        except trio.WouldBlock:
            if not outbox.overflowed:  # one line and one close, however much more comes
                outbox.overflowed = True
                reason = f"{OUTBOX_LIMIT} messages wait to be sent; closing the connection"
                _log.warning("connection-overloaded", peer=connection.peer, reason=reason)
                self._nursery.start_soon(connection.aclose, reason)
            return
        outbox.posted()

    async def _serve_outbox(self, outbox: _Outbox) -> None:
        connection = outbox.connection
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_loop, outbox)
            await connection.closed.wait()
            nursery.cancel_scope.cancel()
        del self._outboxes[connection]
        outbox.release()
        self.endpoint.connection_closed(
            connection, connection.closed_reason or "closed", trio.current_time()
        )
        self._drain()

    async def _send_loop(self, outbox: _Outbox) -> None:
        async for message in outbox.receive_channel:
            try:
                if message is None:
                    await outbox.connection.send_ping()
                else:
                    await outbox.connection.send(message)
            except ConnectionLost:
                return  # the connection is marked closed; _serve_outbox tells the endpoint
            finally:
                outbox.taken()
