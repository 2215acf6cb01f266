"""Inbound requests: calls (INVITE, ACK, CANCEL, BYE), OPTIONS, and what sipua does not do.

Theory of operation: `CallHandler.handle_request(connection, request)` is called by the reader
task of whichever connection a request arrived on (the listener's, or the registration flow for
requests the registrar sends back through NAT, RFC 5626 §5.3). Every response goes back on that
same connection (RFC 3261 §18.2.2). A new INVITE becomes an `InviteSession` (the sans-IO FSM in
`sipua.sip.invite`) plus one task that rings for the configured delay and then answers with an
SDP answer or rejects (486 / 603), and afterwards retransmits the 2xx until the ACK arrives;
with `AnswerPolicy.hangup_after` it later ends the call with a BYE of its own. With
`AnswerPolicy.media` an offer is answered with a `MediaSession`'s port (bound before the answer
is written; an exhausted port range answers 503) under the account's SRTP policy, the session
plays the configured source from the answer to the end of the call, and its report is published
as a `call-media` event; without it the answer announces `MEDIA_PORT` and no RTP flows. A call
ends the moment its connection closes, ringing or up (the caller can no longer hear an answer
or send its BYE there), so a caller that hangs up holds nothing; a call whose 100/180 could not
be sent is forgotten at once.

A request is checked in RFC 3261 §8.2's order, and the first check that fails answers it:

1. method (§8.2.1): methods SIP defines that sipua does not serve get 405 with Allow
   (§21.4.6), methods it does not know 501 (§21.5.2);
2. Request-URI (§8.2.2.1): a scheme other than sip/sips gets 416, a user sipua does not serve
   404 (a URI without a user part names the device and is served);
3. merged requests (§8.2.2.2): an INVITE with the From tag, Call-ID and CSeq of one in progress
   but another branch gets 482; the same branch is a retransmission, answered with the last
   response sent (§17.2.1);
4. content (§8.2.3): a body that is not application/sdp gets 415 with Accept, an encoded one
   415 with Accept-Encoding, an SDP offer that does not parse 400 with a Warning naming the
   line, one with no stream we take 488 (RFC 3264 §6); an INVITE without a body gets our offer
   in the 2xx and the answer in the ACK (§13.3.1.4);
5. then the application: the call cap (`MAX_CALLS`) and the per-source cap
   (`MAX_CALLS_PER_SOURCE`, waived for the servers sipua registers with) answer 486.

Max-Forwards 0 is no reason to refuse: sipua is the request's final recipient (RFC 4475
§3.3.11). A re-INVITE inside an established call gets 488 (sipua does not renegotiate media);
an ACK, BYE or CANCEL that matches no call: ACKs are dropped (§17.2.3), the others get 481; an
in-dialog request whose CSeq is not above the last one gets 500 (§12.2.2).

Everything here runs on trio's single thread; session state is only changed between awaits.
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import trio

from sipua.errors import ConnectionLost
from sipua.logs import get_logger
from sipua.media.errors import MediaError, MediaRefused
from sipua.media.negotiation import MediaPlan, answer_offer
from sipua.media.sdp import SdpError, answer_streams, build_offer, parse_offer
from sipua.media.session import MediaSession, PortRange
from sipua.media.sources import MediaSpec, make_source
from sipua.settings.model import SrtpPolicy
from sipua.sip import Request, Response, make_response, serialize
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
from sipua.sip.rejection import error_response, warning
from sipua.sip.uri import SipUri
from sipua.transport.connection import SipConnection

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
#: Methods sipua serves.
SERVED_METHODS: Final = frozenset({"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"})
MAX_CALLS: Final = 64  # more simultaneous inbound calls are answered 486
#: Calls from one source address at once (servers we register with are exempt): one peer
#: cannot take every slot.
MAX_CALLS_PER_SOURCE: Final = 8
MEDIA_PORT: Final = 4000  # announced in an answer without `AnswerPolicy.media` (no RTP)
REJECT_STATUS: Final = {"busy": 486, "decline": 603}
#: How long shutdown waits for the ACK of a call answered just before it (its BYE must wait
#: for that ACK, RFC 3261 §15); less than the 5 s budget, which unregistering needs too.
SHUTDOWN_ACK_WAIT_SECONDS: Final = 2.0

Publish = Callable[..., None]
#: A call is identified by its Call-ID and the caller's From tag (RFC 3261 §12).
CallKey = tuple[str, str | None]

_log = get_logger(component="calls")


class _Refused(Exception):
    """A request is answered with this status (and these extra header fields) and no more."""

    def __init__(self, status: int, why: str, *headers: tuple[str, str]) -> None:
        super().__init__(why)
        self.status = status
        self.why = why
        self.headers = headers


@dataclass(frozen=True, slots=True, kw_only=True)
class CallMedia:
    """The media of answered calls.

    Attributes:
        play: what the call plays (`echo` by default, so that an answered call is never silent).
        srtp: the account's SRTP policy.
        ports: the port range RTP/RTCP pairs are bound from.
        symmetric: symmetric RTP (send to where the peer's RTP comes from).
    """

    play: MediaSpec = field(default_factory=lambda: MediaSpec("echo"))
    srtp: SrtpPolicy = "optional"
    ports: PortRange = field(default_factory=PortRange)
    symmetric: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerPolicy:
    """What to do with an inbound call.

    Attributes:
        action: "accept", "busy" (486) or "decline" (603).
        delay: seconds to ring before acting.
        hangup_after: seconds after answering at which sipua ends the call with a BYE itself;
            None leaves the ending to the caller.
        media: the media of answered calls; None answers the SDP without sending RTP.
    """

    action: str = "accept"
    delay: float = 1.0
    hangup_after: float | None = None
    media: CallMedia | None = None


@dataclass(slots=True, eq=False)
class _Call:
    session: InviteSession
    connection: SipConnection
    sdp: bytes  # the answer to the caller's offer, or our offer (§13.3.1.4)
    source: str  # the caller's address, for the per-source cap
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    ended: trio.Event = field(default_factory=trio.Event)
    media: MediaSession | None = None  # bound for the answer; run once answered
    plan: MediaPlan | None = None
    media_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    media_started: bool = False


class CallHandler:
    """Serves inbound requests for one user agent.

    Args:
        policy: the answer policy.
        publish: `publish(event, **fields)`, the UA's event sink.
        contact_for: our Contact URI (text) for a connection.
        nursery: where per-call tasks run.
        rng: the random source for tags and SDP session ids.
        users: the user parts of the Request-URIs we serve (the AOR's); a Request-URI without
            a user part is always ours.
        is_server: whether a source address belongs to a server we register with (exempt
            from the per-source call cap).
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
    ) -> None:
        self.policy = policy
        self._publish = publish
        self._contact_for = contact_for
        self._nursery = nursery
        self._rng = rng
        self._users = users
        self._is_server = is_server
        self._calls: dict[CallKey, _Call] = {}

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
        except _Refused as refused:
            await self._refuse(connection, request, refused)
        except ProtocolError as exc:
            # A header the parser accepted lazily is malformed where we need it: answer from
            # the raw fields, as for a request that did not parse at all.
            _log.info(
                "request-refused",
                peer=connection.peer,
                method=request.method,
                status=exc.status_hint,
                reason=str(exc),
            )
            if request.method == "ACK":
                return
            response = error_response(
                serialize(request), exc.status_hint, str(exc), to_tag=new_tag(self._rng)
            )
            if response is not None:
                await connection.send(response)

    async def _refuse(self, connection: SipConnection, request: Request, refused: _Refused) -> None:
        _log.info(
            "request-refused",
            peer=connection.peer,
            method=request.method,
            call_id=request.call_id,
            status=refused.status,
            reason=refused.why,
        )
        response = make_response(request, refused.status, to_tag=new_tag(self._rng))
        for name, value in refused.headers:
            response.headers.add(name, value)
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

    # -- the checks of §8.2, in order ------------------------------------------------------

    async def _dispatch(self, connection: SipConnection, request: Request) -> None:
        method = request.method
        if method == "ACK":
            await self._ack(request)
            return
        if method not in SERVED_METHODS:
            if method in KNOWN_METHODS:
                raise _Refused(405, f"sipua does not serve {method}", ("Allow", ALLOW))
            raise _Refused(501, f"unknown method {method}")
        self._check_request_uri(request)
        if method == "INVITE":
            if request.to.tag is None:
                await self._new_call(connection, request)
            else:
                await self._reinvite(connection, request)
        elif method == "BYE":
            call = self._calls.get(_key(request))
            if call is None or not call.session.dialog.matches(request):
                raise _Refused(481, "BYE for no call of ours")
            await self._run(call, call.session.receive_bye(request), reply_on=connection)
        elif method == "CANCEL":
            call = self._calls.get(_key(request))
            invite = call.session.invite if call is not None else None
            if call is None or invite is None or invite.top_via.branch != request.top_via.branch:
                raise _Refused(481, "CANCEL for no INVITE of ours")
            await self._run(call, call.session.receive_cancel(request), reply_on=connection)
        else:  # OPTIONS
            await connection.send(options_response(request, to_tag=new_tag(self._rng)))

    def _check_request_uri(self, request: Request) -> None:
        uri = request.uri
        if not isinstance(uri, SipUri):
            # §8.2.2.1; §21.4.17: the response lists the schemes we take.
            raise _Refused(416, f"Request-URI scheme {uri.scheme!r}", ("Unsupported", "sips"))
        if uri.user is not None and uri.user not in self._users:
            raise _Refused(404, f"no user {uri.user[:64]!r} here")

    async def _ack(self, ack: Request) -> None:
        call = self._calls.get(_key(ack))
        if call is None or not call.session.dialog.matches(ack):
            _log.info("request-dropped", method="ACK", call_id=ack.call_id, reason="no such call")
            return
        try:
            await self._run(call, call.session.receive_ack(ack))
        except ConnectionLost as exc:
            # The BYE of a hang-up that waited for this ACK could not go out on the call's
            # connection: the call is over. The ACK's own connection (perhaps another one) is
            # fine, so this does not end it.
            self._end(call, CallEnded(reason=f"connection-lost: {exc}"))

    async def _new_call(self, connection: SipConnection, invite: Request) -> None:
        key = _key(invite)
        existing = self._calls.get(key)
        if existing is not None:
            first = existing.session.invite
            if invite.top_via.branch == first.top_via.branch and invite.cseq == first.cseq:
                # §17.2.1: a retransmission gets the most recent response again.
                await self._run(existing, existing.session.retransmission(), reply_on=connection)
                return
            if invite.cseq == first.cseq:
                raise _Refused(482, "merged request: this INVITE reached us twice (§8.2.2.2)")
            raise _Refused(491, "another INVITE of this call is still in progress")
        sdp, media, plan = self._media_for(connection, invite)
        try:
            source = connection.peer.rpartition(":")[0].strip("[]")
            if len(self._calls) >= MAX_CALLS:
                raise _Refused(486, f"{MAX_CALLS} calls in progress")
            if not connection.tls_name and not self._is_server(source):
                # Our own flows to a registrar (tls_name set) and servers carry everyone's calls.
                from_source = sum(1 for call in self._calls.values() if call.source == source)
                if from_source >= MAX_CALLS_PER_SOURCE:
                    raise _Refused(486, f"{MAX_CALLS_PER_SOURCE} calls from {source} in progress")
            session = InviteSession(
                invite,
                local_tag=new_tag(self._rng),
                contact=self._contact_for(connection),
                sent_by=connection.local,
                rng=self._rng,
            )
        except BaseException:
            if media is not None:
                media.close()  # refused after the media was bound: release its ports
            raise
        call = _Call(session, connection, sdp=sdp, source=source, media=media, plan=plan)
        self._calls[key] = call
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

    def _media_for(
        self, connection: SipConnection, invite: Request
    ) -> tuple[bytes, MediaSession | None, MediaPlan | None]:
        """Our SDP for the 2xx: the answer to the offer, or an offer of ours (§13.3.1.4); with
        `AnswerPolicy.media`, the media session bound for the answer and its plan.

        Raises:
            _Refused: 415 for a body we do not take, 400 for an offer that does not parse,
                488 for an offer with no stream we take (or none the SRTP policy allows), 503
                when no media port is free.
        """
        address = connection.local.rpartition(":")[0].strip("[]")
        session_id = self._rng.getrandbits(31)
        if not invite.body:
            return build_offer(address=address, port=MEDIA_PORT, session_id=session_id), None, None
        content_type = (invite.content_type or "").split(";", 1)[0].strip().lower()
        if content_type != "application/sdp":
            raise _Refused(
                415, f"body of type {content_type[:64]!r}", ("Accept", "application/sdp")
            )
        encoding = (invite.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise _Refused(
                415, f"body encoded as {encoding[:32]!r}", ("Accept-Encoding", "identity")
            )
        try:
            streams = parse_offer(invite.body)
        except SdpError as exc:
            raise _Refused(400, f"SDP offer: {exc}", ("Warning", warning(str(exc)))) from None
        if self.policy.media is not None and self.policy.action == "accept":
            return self._media_answer(address, session_id, invite.body, self.policy.media)
        answer = answer_streams(streams, address=address, port=MEDIA_PORT, session_id=session_id)
        if answer is None:
            why = "no audio stream with PCMU or PCMA over RTP/AVP"
            raise _Refused(488, why, ("Warning", f'304 sipua "{why}"'))
        return answer, None, None

    def _media_answer(
        self, address: str, session_id: int, offer: bytes, config: CallMedia
    ) -> tuple[bytes, MediaSession, MediaPlan]:
        try:
            media = MediaSession.open(address, config.ports, symmetric=config.symmetric)
        except MediaError as exc:  # the range is exhausted, or the address cannot be bound
            _log.warning("media-port-unavailable", reason=str(exc))
            raise _Refused(503, str(exc), ("Retry-After", "5")) from None
        try:
            # Every connection sipua has is TLS: SDES keys may go into this answer.
            answer, plan = answer_offer(
                offer,
                policy=config.srtp,
                signalling_secure=True,
                address=address,
                port=media.port,
                session_id=session_id,
                random_bytes=secrets.token_bytes,
            )
        except MediaRefused as exc:
            media.close()
            raise _Refused(exc.status, str(exc), ("Warning", warning(str(exc)))) from None
        return answer, media, plan

    async def _play(self, call: _Call) -> None:
        """Runs the call's media from the answer to the end of the call, then publishes its
        report (`call-media`)."""
        media, plan, config = call.media, call.plan, self.policy.media
        assert media is not None
        assert plan is not None
        assert config is not None
        try:
            with call.media_scope:
                try:
                    await media.run(plan, make_source(config.play, plan.codec))
                except MediaError as exc:  # a file that became unreadable, keys libsrtp refused
                    _log.warning("call-media-failed", call_id=call.session.call_id, reason=str(exc))
        finally:
            media.close()
            self._publish("call-media", call_id=call.session.call_id, **media.report().as_event())

    async def _reinvite(self, connection: SipConnection, request: Request) -> None:
        call = self._calls.get(_key(request))
        if call is None or not call.session.dialog.matches(request):
            raise _Refused(481, "re-INVITE for no call of ours")
        why = "media renegotiation is not supported"
        raise _Refused(488, why, ("Warning", f'399 sipua "{why}"'))

    # -- a call's life ---------------------------------------------------------------------

    async def _drive(self, call: _Call) -> None:
        """Rings, answers or rejects, then retransmits the 2xx until the ACK (§13.3.1.4).

        Every wait also watches the call's connection: when it closes the call ends at once.
        """
        session = call.session
        with call.scope:
            try:
                if await self._lost_before(call, trio.current_time() + max(0.0, self.policy.delay)):
                    return
                if session.state is not InviteState.RINGING:
                    return
                await self._run(call, self._decide(call))
                answered_at = trio.current_time()
                if call.media is not None and not call.ended.is_set():
                    call.media_started = True
                    self._nursery.start_soon(self._play, call)
                while (deadline := session.next_deadline()) is not None:
                    if await self._lost_before(call, deadline):
                        return
                    await self._run(call, session.handle_timer(trio.current_time()))
                if not _confirmed(session):
                    return
                hangup_after = self.policy.hangup_after
                hangup_at = answered_at + hangup_after if hangup_after is not None else math.inf
                # A BYE from the caller meanwhile ends the call and cancels this scope.
                if await self._lost_before(call, hangup_at):
                    return
                await self._run(call, session.hangup())
            except ConnectionLost as exc:
                self._end(call, CallEnded(reason=f"connection-lost: {exc}"))
            except ProtocolError as exc:
                # A backstop: the dialog is checked when the INVITE arrives, but a BYE that
                # cannot be built must end this call, never the user agent's nursery.
                self._end(call, CallEnded(reason=f"protocol-error: {exc}"))

    async def _lost_before(self, call: _Call, deadline: float) -> bool:
        """Waits until `deadline`; True (and the call ended) if its connection closed first."""
        with trio.move_on_at(deadline):
            await call.connection.closed.wait()
            reason = call.connection.closed_reason or "closed"
            self._end(call, CallEnded(reason=f"connection-lost: {reason}"))
            return True
        return False

    def _decide(self, call: _Call) -> list[InviteOutput]:
        if self.policy.action in REJECT_STATUS:
            return call.session.reject(REJECT_STATUS[self.policy.action])
        return call.session.answer(call.sdp, trio.current_time())

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
        call.media_scope.cancel()
        if call.media is not None and not call.media_started:
            call.media_started = True  # closed here, never run
            call.media.close()
        key = _key(call.session.invite)
        if self._calls.get(key) is call:
            del self._calls[key]
            self._publish(
                "call-ended", call_id=call.session.call_id, reason=ended.reason, status=ended.status
            )
        call.scope.cancel()


def _key(request: Request | Response) -> CallKey:
    return (request.call_id, request.from_.tag)


def _confirmed(session: InviteSession) -> bool:
    # A function, not an inline test: the state changes across awaits, which mypy's narrowing
    # of `session.state` does not see.
    return session.state is InviteState.CONFIRMED
