"""Inbound requests: calls (INVITE, ACK, CANCEL, BYE), OPTIONS, and what sipua does not do.

Theory of operation: `CallHandler.handle_request(connection, request)` is called by the reader
task of whichever connection a request arrived on (the listener's, or the registration flow for
requests the registrar sends back through NAT, RFC 5626 §5.3). Every response goes back on that
same connection (RFC 3261 §18.2.2). A new INVITE becomes an `InviteSession` (the sans-IO FSM in
`sipua.sip.invite`) plus one task that rings for the configured delay and then answers with an
SDP answer or rejects (486 / 603), and afterwards retransmits the 2xx until the ACK arrives;
with `AnswerPolicy.hangup_after` it later ends the call with a BYE of its own. A confirmed call
also ends when its connection closes (the caller can no longer send its BYE there), and a call
whose 100/180 could not be sent is forgotten at once, so no entry outlives its call.

- OPTIONS: 200 with Allow, Accept and Supported (RFC 3261 §11.2).
- Methods SIP defines that sipua does not serve: 405 Method Not Allowed with Allow (§21.4.6).
- Methods it does not know: 501 Not Implemented (§21.5.2).
- A re-INVITE inside an established call: 488 (sipua does not renegotiate media).
- An ACK, BYE or CANCEL that matches no call: ACKs are dropped (§17.2.3), the others get 481.
- Max-Forwards 0: 483 Too Many Hops, a request that looped (§16.3 step 3; OPTIONS is
  answered as its final recipient, as that step allows).
- An in-dialog request whose CSeq is not above the last one: 500 (§12.2.2).

Everything here runs on trio's single thread; session state is only changed between awaits.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import trio

from sipua.errors import ConnectionLost
from sipua.sip import Request, make_response
from sipua.sip.errors import ProtocolError
from sipua.sip.ids import new_tag
from sipua.sip.invite import (
    CallAnswered,
    CallConfirmed,
    CallEnded,
    InviteOutput,
    InviteSession,
    InviteState,
    Reply,
    Send,
    options_response,
)
from sipua.transport.connection import SipConnection
from sipua.ua.sdp import SdpError, build_answer

#: Methods of RFC 3261 and its common extensions that sipua knows but does not serve.
KNOWN_METHODS: Final = frozenset(
    {
        "REGISTER",
        "SUBSCRIBE",
        "NOTIFY",
        "MESSAGE",
        "INFO",
        "UPDATE",
        "PRACK",
        "REFER",
        "PUBLISH",
    }
)
ALLOW: Final = "INVITE, ACK, CANCEL, BYE, OPTIONS"
MAX_CALLS: Final = 64  # more simultaneous inbound calls are answered 486
MEDIA_PORT: Final = 4000  # announced in the SDP answer; sipua sends no media
REJECT_STATUS: Final = {"busy": 486, "decline": 603}
#: How long shutdown waits for the ACK of a call answered just before it (its BYE must wait
#: for that ACK, RFC 3261 §15); less than the 5 s budget, which unregistering needs too.
SHUTDOWN_ACK_WAIT_SECONDS: Final = 2.0

Publish = Callable[..., None]


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


@dataclass(slots=True, eq=False)
class _Call:
    session: InviteSession
    connection: SipConnection
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    ended: trio.Event = field(default_factory=trio.Event)


class CallHandler:
    """Serves inbound requests for one user agent.

    Args:
        policy: the answer policy.
        publish: `publish(event, **fields)`, the UA's event sink.
        contact_for: our Contact URI (text) for a connection.
        nursery: where per-call tasks run.
        rng: the random source for tags and SDP session ids.
    """

    def __init__(
        self,
        *,
        policy: AnswerPolicy,
        publish: Publish,
        contact_for: Callable[[SipConnection], str],
        nursery: trio.Nursery,
        rng: random.Random,
    ) -> None:
        self.policy = policy
        self._publish = publish
        self._contact_for = contact_for
        self._nursery = nursery
        self._rng = rng
        self._calls: dict[str, _Call] = {}  # by Call-ID

    @property
    def active_calls(self) -> int:
        """How many calls are ringing or up."""
        return len(self._calls)

    async def handle_request(self, connection: SipConnection, request: Request) -> None:
        """Handles one request that arrived on `connection`.

        Raises:
            ConnectionLost: the connection broke while answering.
        """
        try:
            await self._dispatch(connection, request)
        except ProtocolError as exc:
            # A request whose headers the parser accepted lazily but which is malformed in a
            # header we need: answer with the hint when we can, else drop it.
            if request.method == "ACK":
                return
            try:
                response = make_response(request, exc.status_hint, to_tag=new_tag(self._rng))
            except (ProtocolError, ValueError):
                return
            await connection.send(response)

    async def hangup_all(self, *, ack_wait: float = SHUTDOWN_ACK_WAIT_SECONDS) -> None:
        """Ends every call (BYE, or 480 for ringing ones); used on shutdown.

        A call whose connection is already gone (the caller closed it) cannot be told; it
        ends as connection-lost and the others are still hung up. A call answered but not yet
        acknowledged gets its BYE when the ACK arrives (RFC 3261 §15): this waits up to
        `ack_wait` seconds for those ACKs, then gives such calls up without a BYE (it may not
        be sent yet), so that unregistering still fits in the shutdown budget.
        """
        calls = list(self._calls.values())
        for call in calls:
            if call.session.state is InviteState.TERMINATED:
                continue
            try:
                await self._run(call, call.session.hangup())
            except ConnectionLost as exc:
                self._end(call, CallEnded(reason=f"connection-lost: {exc}"))
            except ProtocolError as exc:
                # No BYE can be built for this dialog; the other calls are still hung up.
                self._end(call, CallEnded(reason=f"protocol-error: {exc}"))
        with trio.move_on_after(ack_wait):
            for call in calls:
                if call.session.hangup_pending:
                    await call.ended.wait()  # the ACK (or its timeout) sends the BYE
        for call in calls:
            if call.session.hangup_pending and not call.ended.is_set():
                self._end(call, CallEnded(reason="shutdown-before-ack"))

    async def _dispatch(self, connection: SipConnection, request: Request) -> None:
        method = request.method
        if request.max_forwards == 0 and method not in ("ACK", "OPTIONS"):
            await connection.send(make_response(request, 483, to_tag=new_tag(self._rng)))
            return
        if method == "INVITE":
            if request.to.tag is None:
                await self._new_call(connection, request)
            else:
                await self._reinvite(connection, request)
        elif method == "ACK":
            call = self._calls.get(request.call_id)
            if call is not None and call.session.dialog.matches(request):
                try:
                    await self._run(call, call.session.receive_ack(request))
                except ConnectionLost as exc:
                    # The BYE of a hang-up that waited for this ACK could not go out on the
                    # call's connection: the call is over. The ACK's own connection (perhaps
                    # another one) is fine, so this does not end it.
                    self._end(call, CallEnded(reason=f"connection-lost: {exc}"))
        elif method == "BYE":
            call = self._calls.get(request.call_id)
            if call is None or not call.session.dialog.matches(request):
                await connection.send(make_response(request, 481, to_tag=new_tag(self._rng)))
                return
            await self._run(call, call.session.receive_bye(request), reply_on=connection)
        elif method == "CANCEL":
            call = self._calls.get(request.call_id)
            invite = call.session.invite if call is not None else None
            if call is None or invite is None or invite.top_via.branch != request.top_via.branch:
                await connection.send(make_response(request, 481, to_tag=new_tag(self._rng)))
                return
            await self._run(call, call.session.receive_cancel(request), reply_on=connection)
        elif method == "OPTIONS":
            await connection.send(options_response(request, to_tag=new_tag(self._rng)))
        elif method in KNOWN_METHODS:
            response = make_response(request, 405, to_tag=new_tag(self._rng))
            response.headers.add("Allow", ALLOW)
            await connection.send(response)
        else:
            await connection.send(make_response(request, 501, to_tag=new_tag(self._rng)))

    async def _new_call(self, connection: SipConnection, invite: Request) -> None:
        existing = self._calls.get(invite.call_id)
        if existing is not None:
            return  # a retransmission of an INVITE we are already handling (§17.2.1)
        if len(self._calls) >= MAX_CALLS:
            await connection.send(make_response(invite, 486, to_tag=new_tag(self._rng)))
            return
        session = InviteSession(
            invite,
            local_tag=new_tag(self._rng),
            contact=self._contact_for(connection),
            sent_by=connection.local,
            rng=self._rng,
        )
        call = _Call(session, connection)
        self._calls[invite.call_id] = call
        self._publish(
            "call-incoming",
            call_id=invite.call_id,
            caller=str(invite.from_.uri),
            callee=str(invite.to.uri),
            peer=connection.peer,
        )
        try:
            await self._run(call, session.start())
        except ConnectionLost as exc:
            # The caller is gone before it heard 100/180: nothing to drive, and an entry left
            # behind would count against MAX_CALLS for ever.
            self._end(call, CallEnded(reason=f"connection-lost: {exc}"))
            raise
        except BaseException:
            self._end(call, CallEnded(reason="aborted"))
            raise
        self._nursery.start_soon(self._drive, call)

    async def _reinvite(self, connection: SipConnection, request: Request) -> None:
        call = self._calls.get(request.call_id)
        if call is None or not call.session.dialog.matches(request):
            await connection.send(make_response(request, 481, to_tag=new_tag(self._rng)))
            return
        response = make_response(request, 488)
        response.headers.add("Warning", '399 sipua "media renegotiation is not supported"')
        await connection.send(response)

    async def _drive(self, call: _Call) -> None:
        """Rings, answers or rejects, then retransmits the 2xx until the ACK (§13.3.1.4)."""
        session = call.session
        with call.scope:
            try:
                await trio.sleep(max(0.0, self.policy.delay))
                if session.state is not InviteState.RINGING:
                    return
                await self._run(call, self._decide(session))
                answered_at = trio.current_time()
                while (deadline := session.next_deadline()) is not None:
                    await trio.sleep_until(deadline)
                    await self._run(call, session.handle_timer(trio.current_time()))
                if not _confirmed(session):
                    return
                hangup_after = self.policy.hangup_after
                hangup_at = answered_at + hangup_after if hangup_after is not None else math.inf
                # A BYE from the caller meanwhile ends the call and cancels this scope. A caller
                # whose connection goes without a BYE can never send one: end the call then.
                with trio.move_on_at(hangup_at):
                    await call.connection.closed.wait()
                    reason = call.connection.closed_reason or "closed"
                    self._end(call, CallEnded(reason=f"connection-lost: {reason}"))
                    return
                await self._run(call, session.hangup())
            except ConnectionLost as exc:
                self._end(call, CallEnded(reason=f"connection-lost: {exc}"))
            except ProtocolError as exc:
                # A backstop: the dialog is checked when the INVITE arrives, but a BYE that
                # cannot be built must end this call, never the user agent's nursery.
                self._end(call, CallEnded(reason=f"protocol-error: {exc}"))

    def _decide(self, session: InviteSession) -> list[InviteOutput]:
        if self.policy.action in REJECT_STATUS:
            return session.reject(REJECT_STATUS[self.policy.action])
        try:
            address = session.sent_by.rsplit(":", 1)[0].strip("[]")
            answer = build_answer(
                session.invite.body,
                address=address,
                port=MEDIA_PORT,
                session_id=self._rng.getrandbits(31),
            )
        except SdpError:
            answer = None
        if answer is None:
            return session.reject(488)  # RFC 3264 §6: no acceptable media
        return session.answer(answer, trio.current_time())

    async def _run(
        self, call: _Call, outputs: list[InviteOutput], *, reply_on: SipConnection | None = None
    ) -> None:
        for output in outputs:
            if isinstance(output, Reply):
                # §18.2.2: a response goes back on the connection its request came in on: the
                # INVITE's (the 487 after a CANCEL too) on the call's, others where they came.
                response = output.response
                to_invite = response.cseq.method == "INVITE"
                connection = call.connection if to_invite else (reply_on or call.connection)
                await connection.send(response)
            elif isinstance(output, Send):
                await call.connection.send(output.request)
            elif isinstance(output, CallAnswered):
                self._publish("call-answered", call_id=call.session.call_id)
            elif isinstance(output, CallConfirmed):
                self._publish("call-confirmed", call_id=call.session.call_id)
            elif isinstance(output, CallEnded):
                self._end(call, output)

    def _end(self, call: _Call, ended: CallEnded) -> None:
        call.ended.set()
        if self._calls.get(call.session.call_id) is call:
            del self._calls[call.session.call_id]
            self._publish(
                "call-ended", call_id=call.session.call_id, reason=ended.reason, status=ended.status
            )
        call.scope.cancel()


def _confirmed(session: InviteSession) -> bool:
    # A function, not an inline test: the state changes across awaits, which mypy's narrowing
    # of `session.state` does not see.
    return session.state is InviteState.CONFIRMED
