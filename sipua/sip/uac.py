"""The UAC side of an INVITE session: a call we place (RFC 3261 §13.2, §9.1, §15), sans-IO.

Theory of operation: an `OutgoingCall` builds our INVITE and turns the responses its client
transaction delivers into what to send and what happened. The endpoint (`sipua.sip.endpoint`)
sends the INVITE, the CANCEL and the BYE through client transactions and the ACK for a 2xx
directly (§17.1.1.3: it is not part of the INVITE transaction); the transaction itself ACKs a
non-2xx final response.

    CALLING --1xx--> EARLY --2xx--> CONFIRMED --BYE (either side)--> TERMINATED
       |               |--cancel--> CANCELLING --487 (or a 2xx: ACK, then BYE)--> TERMINATED
       \\--3xx-6xx (or timeout)--> TERMINATED   (401/407 once: the INVITE again, with digest)

- A 401/407 is answered once per challenge with a new INVITE (CSeq + 1, a new branch) carrying
  the credentials (§22.2); a second challenge to the same nonce means the credentials are wrong.
  At most `MAX_CHALLENGES_PER_ATTEMPT` challenges are answered per call (a stale nonce or a
  fresh realm every time would loop for ever): the next one ends the call as refused, with the
  401/407 and a phrase saying the credentials were refused. A challenge after the call was
  cancelled (or hung up) before any provisional response ends it as cancelled, no new INVITE.
- CANCEL goes out only after a provisional response (§9.1); asked earlier, it waits for one.
  A 2xx that crosses our CANCEL is ACKed and the call is ended with a BYE (§9.1). A callee
  that never sends the 487 does not hold the call: the endpoint times CANCELLING (64·T1 after
  the CANCEL, §9.1), and a hang-up while cancelling ends the call at once.
- A retransmitted 2xx gets the same ACK again (§13.2.2.4). A 2xx from another fork (another
  To tag) after the first one is ACKed in its own dialog and ended with a BYE (§13.2.2.4), in
  CONFIRMED as in TERMINATED; the first answer stays the call.
- A 2xx whose dialog cannot be used (no To tag, no SIP or SIPS Contact) is still ACKed, with
  the INVITE's Request-URI and Route and the 2xx's To, and the call ends as a protocol error
  (no BYE could reach the callee). A strict router in the route set is routed as §12.2.1.1 says.
- The transitions are one table, `TABLE`, as for the transactions and the UAS session.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from sipua.sip.dialog import MAX_FORWARDS, Dialog, credentials_of
from sipua.sip.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from sipua.sip.headers import Headers
from sipua.sip.ids import RandomSource, new_branch, new_call_id, new_tag
from sipua.sip.message import Request, Response, make_response
from sipua.sip.methods import ALLOW
from sipua.sip.registration import (
    MAX_CHALLENGES_PER_ATTEMPT,
    ChallengeResponder,
    CredentialsRejected,
)
from sipua.sip.uri import SipUri

#: Other forks' answers (2xx) whose ACK a call keeps for their retransmissions; one beyond
#: gets a new ACK and BYE each time it comes.
MAX_FORKED_ANSWERS: Final = 16


class OutgoingState(enum.Enum):
    """States of a call we place."""

    CALLING = "calling"
    EARLY = "early"
    CANCELLING = "cancelling"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class OutgoingInput(enum.Enum):
    """What can happen to a call we place."""

    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    CHALLENGE = "401/407"
    FAILURE = "3xx-6xx"
    TIMEOUT = "timeout"
    CANCEL = "cancel"
    HANGUP = "hang up"
    RECEIVE_BYE = "BYE"


_S = OutgoingState
_I = OutgoingInput

#: (state, input) -> next state; anything missing is our own misuse (LocalProtocolError).
TABLE: Final[Mapping[tuple[OutgoingState, OutgoingInput], OutgoingState]] = {
    (_S.CALLING, _I.PROVISIONAL): _S.EARLY,  # §13.2.2.1
    (_S.EARLY, _I.PROVISIONAL): _S.EARLY,
    (_S.CANCELLING, _I.PROVISIONAL): _S.CANCELLING,
    (_S.CALLING, _I.SUCCESS): _S.CONFIRMED,  # ACK (§13.2.2.4)
    (_S.EARLY, _I.SUCCESS): _S.CONFIRMED,
    (_S.CANCELLING, _I.SUCCESS): _S.TERMINATED,  # crossed our CANCEL: ACK, then BYE (§9.1)
    (_S.CONFIRMED, _I.SUCCESS): _S.CONFIRMED,  # a retransmitted 2xx: the ACK again
    (_S.CALLING, _I.CHALLENGE): _S.CALLING,  # the INVITE again, with credentials (§22.2)
    (_S.EARLY, _I.CHALLENGE): _S.CALLING,
    (_S.CALLING, _I.FAILURE): _S.TERMINATED,  # §13.2.2.3
    (_S.EARLY, _I.FAILURE): _S.TERMINATED,
    (_S.CANCELLING, _I.FAILURE): _S.TERMINATED,  # the 487 for our CANCEL
    (_S.CALLING, _I.TIMEOUT): _S.TERMINATED,  # Timer B (§17.1.1.2)
    (_S.EARLY, _I.TIMEOUT): _S.TERMINATED,
    (_S.CANCELLING, _I.TIMEOUT): _S.TERMINATED,
    (_S.CALLING, _I.CANCEL): _S.CALLING,  # waits for a provisional response (§9.1)
    (_S.EARLY, _I.CANCEL): _S.CANCELLING,
    (_S.CANCELLING, _I.CANCEL): _S.CANCELLING,
    (_S.CONFIRMED, _I.HANGUP): _S.TERMINATED,  # BYE (§15.1.1)
    (_S.CONFIRMED, _I.RECEIVE_BYE): _S.TERMINATED,  # 200 (§15.1.2)
    (_S.TERMINATED, _I.RECEIVE_BYE): _S.TERMINATED,  # 481
    (_S.TERMINATED, _I.SUCCESS): _S.TERMINATED,  # a late 2xx: ACK (then BYE)
    (_S.TERMINATED, _I.PROVISIONAL): _S.TERMINATED,
    (_S.TERMINATED, _I.FAILURE): _S.TERMINATED,
    (_S.TERMINATED, _I.TIMEOUT): _S.TERMINATED,
}


# -- outputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SendInTransaction:
    """Send this request in a new client transaction (INVITE, CANCEL, BYE)."""

    request: Request


@dataclass(frozen=True, slots=True, kw_only=True)
class SendDirect:
    """Send this request outside any transaction (the ACK for a 2xx)."""

    request: Request


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """Send this response to an in-dialog request from the callee."""

    response: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """A provisional response: 180 ringing, 183 session progress (with early media SDP)."""

    status: int
    reason: str
    sdp: bytes = b""  # the early media answer a 183 carries (RFC 3261 §13.2.1), if any


@dataclass(frozen=True, slots=True, kw_only=True)
class Established:
    """The callee answered (2xx, ACKed): the call is up; `sdp` is the callee's answer."""

    sdp: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Ended:
    """The call is over. `status` is the INVITE's final status when it was never answered."""

    reason: str
    status: int | None = None
    phrase: str = ""  # the final response's reason phrase, when there was one


OutgoingOutput = SendInTransaction | SendDirect | Answer | Progress | Established | Ended


class OutgoingCall:
    """One call we place.

    Args:
        target: the Request-URI (the callee), e.g. ``sips:bob@example.test``.
        from_uri: our address of record (From).
        contact: our Contact URI for the dialog.
        sent_by: our Via sent-by (``host:port`` of the connection it goes out on).
        offer: our SDP offer.
        routes: Route values to put first (an outbound proxy, ``<sips:proxy;lr>``), may be empty.
        responder: answers 401/407 challenges (the account's digest), or None.
        rng: tags, branches, the Call-ID.
        local_tag: our From tag (made from `rng` when not given).

    Raises:
        LocalProtocolError: `target` is not a SIP or SIPS URI.
    """

    def __init__(
        self,
        *,
        target: str,
        from_uri: str,
        contact: str,
        sent_by: str,
        offer: bytes,
        routes: tuple[str, ...] = (),
        responder: ChallengeResponder | None = None,
        rng: RandomSource,
        local_tag: str | None = None,
    ) -> None:
        try:
            self.target = SipUri.parse(target)
        except ProtocolError as exc:
            raise LocalProtocolError(f"cannot call {target!r}: {exc}") from None
        self.from_uri = from_uri
        self.contact = contact
        self.sent_by = sent_by
        self.offer = offer
        self.routes = routes
        self.state = OutgoingState.CALLING
        self.call_id = new_call_id(rng)
        self.local_tag = local_tag or new_tag(rng)
        self.dialog: Dialog | None = None
        self._responder = responder
        self._rng = rng
        self._cseq = 0
        self._ack: Request | None = None
        self._cancel_wanted = False
        self._challenges = 0  # 401/407s answered in this call
        self._fork_acks: dict[str, Request] = {}  # other forks' 2xx ACKs, by their To tag
        self.invite = self._new_invite([])

    # -- inputs ---------------------------------------------------------------------------

    def start(self) -> list[OutgoingOutput]:
        """The first INVITE."""
        return [SendInTransaction(request=self.invite)]

    def receive_response(self, response: Response) -> list[OutgoingOutput]:
        """A response to our INVITE (delivered by its transaction, or a retransmitted 2xx)."""
        status = response.status
        if status < 200:
            self._move(OutgoingInput.PROVISIONAL)
            outputs: list[OutgoingOutput] = []
            if self._cancel_wanted and self.state is OutgoingState.EARLY:
                outputs += self.cancel()  # asked for before this first provisional (§9.1)
            if status > 100 and self.state is not OutgoingState.TERMINATED:
                early = response.body if response.content_type == "application/sdp" else b""
                outputs.append(Progress(status=status, reason=response.reason, sdp=early))
            return outputs
        if status < 300:
            return self._success(response)
        phrase = response.reason
        cancelled = False
        if status in (401, 407) and self.state in (OutgoingState.CALLING, OutgoingState.EARLY):
            if self._cancel_wanted:
                cancelled = True  # given up before any 1xx: no INVITE again (§9.1)
            else:
                retry = self._challenge(response)
                if retry is not None:
                    return retry
                if self._responder is not None:
                    phrase = (
                        f"{response.reason}; the credentials were refused after "
                        f"{self._challenges} challenge(s): check the account's username and "
                        "password"
                    )
        old = self._move(OutgoingInput.FAILURE)
        if old is OutgoingState.TERMINATED:
            return []
        reason = "cancelled" if cancelled or old is OutgoingState.CANCELLING else "refused"
        return [Ended(reason=reason, status=status, phrase=phrase)]

    def timed_out(self) -> list[OutgoingOutput]:
        """Our INVITE's transaction timed out (Timer B), its connection failed, or no final
        response came within 64·T1 of our CANCEL (§9.1, Timer C of §16.6 in spirit)."""
        old = self._move(OutgoingInput.TIMEOUT)
        if old is OutgoingState.TERMINATED:
            return []
        if old is OutgoingState.CANCELLING:
            return [Ended(reason="cancelled", phrase="no final response to the cancelled INVITE")]
        return [Ended(reason="no-answer", status=408)]

    def cancel(self) -> list[OutgoingOutput]:
        """Gives up the call before it is answered (CANCEL, §9.1)."""
        old = self._move(OutgoingInput.CANCEL)
        if old is OutgoingState.CALLING:
            self._cancel_wanted = True  # no provisional yet: a CANCEL could cross the INVITE
            return []
        if old is OutgoingState.CANCELLING:
            return []
        self._cancel_wanted = False
        return [SendInTransaction(request=self._new_cancel())]

    def hangup(self, reason: str = "local-bye") -> list[OutgoingOutput]:
        """Ends the call: BYE once up, CANCEL before; asked again while our CANCEL waits for
        its 487, the call ends at once (the endpoint releases the INVITE's transaction)."""
        if self.state is OutgoingState.CANCELLING:
            self._move(OutgoingInput.TIMEOUT)
            return [Ended(reason="cancelled", phrase="hung up while the CANCEL was pending")]
        if self.state in (OutgoingState.CALLING, OutgoingState.EARLY):
            return self.cancel()
        if self.state is OutgoingState.TERMINATED:
            return []
        self._move(OutgoingInput.HANGUP)
        return [*self._bye(), Ended(reason=reason)]

    def receive_bye(self, bye: Request) -> list[OutgoingOutput]:
        """The callee's BYE (§15.1.2)."""
        if self.state is not OutgoingState.CONFIRMED or self.dialog is None:
            return [Answer(response=make_response(bye, 481, to_tag=self.local_tag))]
        try:
            self.dialog.receive_request(bye)
        except RemoteProtocolError as exc:
            # §12.2.2: a CSeq that went backwards gets 500; the call goes on unchanged.
            refusal = make_response(bye, exc.status_hint, reason="CSeq Out of Order")
            return [Answer(response=refusal)]
        self._move(OutgoingInput.RECEIVE_BYE)
        return [Answer(response=make_response(bye, 200)), Ended(reason="remote-bye")]

    # -- helpers --------------------------------------------------------------------------

    def _success(self, response: Response) -> list[OutgoingOutput]:
        old = self._move(OutgoingInput.SUCCESS)
        if old in (OutgoingState.CONFIRMED, OutgoingState.TERMINATED) and self._ack is not None:
            tag = response.to.tag
            if self.dialog is None or tag == self.dialog.remote_tag:
                return [SendDirect(request=self._ack)]  # the 2xx again: the same ACK (§13.2.2.4)
            return self._other_fork(response)
        try:
            self.dialog = Dialog.from_uac(self.invite, response)
        except ProtocolError as exc:
            # No usable dialog (no To tag, no SIP Contact): no BYE can reach the callee. The
            # 2xx still gets an ACK, so that the callee stops retransmitting; the call failed.
            self.state = OutgoingState.TERMINATED
            self._ack = self._ack_without_dialog(response)
            reason = (
                f"protocol-error: {exc}; the answer was acknowledged but cannot be ended with a BYE"
            )
            return [SendDirect(request=self._ack), Ended(reason=reason, status=response.status)]
        self._ack = self.dialog.new_ack(self.invite, sent_by=self.sent_by, rng=self._rng)
        outputs: list[OutgoingOutput] = [SendDirect(request=self._ack)]
        if old is OutgoingState.CANCELLING or old is OutgoingState.TERMINATED:
            # The 2xx crossed our CANCEL (or came late): the call must still be ended (§9.1).
            return [*outputs, *self._bye(), Ended(reason="cancelled-after-answer")]
        return [*outputs, Established(sdp=response.body)]

    def _other_fork(self, response: Response) -> list[OutgoingOutput]:
        """A 2xx from another fork after the call was answered (or ended): its own dialog,
        ACKed and ended with a BYE (§13.2.2.4); its retransmissions get the same ACK again."""
        tag = response.to.tag or ""
        ack = self._fork_acks.get(tag)
        if ack is not None:
            return [SendDirect(request=ack)]
        try:
            dialog = Dialog.from_uac(self.invite, response)
        except ProtocolError:
            dialog = None  # no BYE could reach that callee; the ACK still goes
        if dialog is None:
            ack = self._ack_without_dialog(response)
            outputs: list[OutgoingOutput] = [SendDirect(request=ack)]
        else:
            ack = dialog.new_ack(self.invite, sent_by=self.sent_by, rng=self._rng)
            bye = dialog.new_request("BYE", sent_by=self.sent_by, rng=self._rng)
            outputs = [SendDirect(request=ack), SendInTransaction(request=bye)]
        if len(self._fork_acks) < MAX_FORKED_ANSWERS:
            self._fork_acks[tag] = ack
        return outputs

    def _ack_without_dialog(self, response: Response) -> Request:
        """The ACK for a 2xx that makes no usable dialog: the INVITE's Request-URI and Route,
        the 2xx's To (§13.2.2.4, §17.1.1.3), a new branch; it goes out on the call's flow."""
        invite = self.invite
        headers = Headers(
            [
                ("Via", f"SIP/2.0/TLS {self.sent_by};branch={new_branch(self._rng)}"),
                ("Max-Forwards", str(MAX_FORWARDS)),
                *[("Route", route) for route in invite.headers.get_all("Route")],
                ("From", invite.headers.get("From") or ""),
                ("To", response.headers.get("To") or ""),
                ("Call-ID", invite.call_id),
                ("CSeq", f"{invite.cseq.seq} ACK"),
                *credentials_of(invite),
            ]
        )
        return Request("ACK", invite.uri, headers)

    def _challenge(self, response: Response) -> list[OutgoingOutput] | None:
        if self._responder is None or self._challenges >= MAX_CHALLENGES_PER_ATTEMPT:
            return None  # §22.2 needs no endless retries: a bound ends a challenge loop
        self._challenges += 1
        try:
            credentials = self._responder.authorize(response, self.invite)
        except (CredentialsRejected, ProtocolError):
            return None  # a refusal: the caller sees the 401/407
        self._move(OutgoingInput.CHALLENGE)
        self.invite = self._new_invite(credentials)
        return [SendInTransaction(request=self.invite)]

    def _new_invite(self, credentials: list[tuple[str, str]]) -> Request:
        self._cseq += 1
        headers = Headers(
            [
                ("Via", f"SIP/2.0/TLS {self.sent_by};branch={new_branch(self._rng)}"),
                ("Max-Forwards", str(MAX_FORWARDS)),
                *[("Route", route) for route in self.routes],
                ("From", f"<{self.from_uri}>;tag={self.local_tag}"),
                ("To", f"<{self.target}>"),
                ("Call-ID", self.call_id),
                ("CSeq", f"{self._cseq} INVITE"),
                ("Contact", f"<{self.contact}>"),
                ("Allow", ALLOW),
                ("Content-Type", "application/sdp"),
                *credentials,
            ]
        )
        return Request("INVITE", self.target, headers, self.offer)

    def _new_cancel(self) -> Request:
        # §9.1: the INVITE's Request-URI, Call-ID, To, From, CSeq number and its one Via
        # (same branch), and the same Route header fields.
        invite = self.invite
        headers = Headers(
            [
                ("Via", invite.headers.get_fields("Via")[0]),
                ("Max-Forwards", str(MAX_FORWARDS)),
                *[("Route", route) for route in invite.headers.get_all("Route")],
                ("From", invite.headers.get("From") or ""),
                ("To", invite.headers.get("To") or ""),
                ("Call-ID", invite.call_id),
                ("CSeq", f"{invite.cseq.seq} CANCEL"),
            ]
        )
        return Request("CANCEL", invite.uri, headers)

    def _bye(self) -> list[OutgoingOutput]:
        if self.dialog is None:
            return []
        bye = self.dialog.new_request("BYE", sent_by=self.sent_by, rng=self._rng)
        return [SendInTransaction(request=bye)]

    def _move(self, event: OutgoingInput) -> OutgoingState:
        old = self.state
        new = TABLE.get((old, event))
        if new is None:
            raise LocalProtocolError(f"a call we placed cannot take {event.value} in {old.value}")
        self.state = new
        return old
