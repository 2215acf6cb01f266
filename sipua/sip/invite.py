"""The UAS side of an INVITE session (RFC 3261 §13.3, §9.2, §15), sans-IO.

Theory of operation: an `InviteSession` is created for a new INVITE and answers it at once with
100 Trying and 180 Ringing (the 180 carries our To tag, which creates an early dialog). The UA
then calls `answer(sdp)` (200 OK with our Contact and the SDP answer) or `reject(status)`.

    RINGING --answer--> ANSWERED --ACK--> CONFIRMED --BYE--> TERMINATED
       |  \\--reject/CANCEL (487)--> TERMINATED           (ANSWERED --BYE--> TERMINATED too)
       \\--BYE before answer: 481 for the BYE (no confirmed dialog yet)

The transitions are one table, `TABLE` ((state, input) -> state, each row citing its RFC
section), as for the transactions; anything not in it is our own misuse and raises
`LocalProtocolError`. Retransmitted requests never reach the session: the transaction layer
answers them (`sipua.sip.endpoint`).

- Our own hang-up in ANSWERED waits for the ACK (or the ACK timeout) before it sends BYE
  (§15); in CONFIRMED it sends BYE at once.

- The 2xx is retransmitted by the UAS *core*, even on a reliable transport, with T1 doubling up to
  T2, until the ACK arrives; with no ACK within 64*T1 the session sends BYE and ends
  (§13.3.1.4), because a hop between us and the caller may be unreliable.
- CANCEL (§9.2): 200 for the CANCEL and 487 Request Terminated for the INVITE while no final
  response was sent; after that, CANCEL gets a 200 and changes nothing.
- Every response within the dialog copies Record-Route (§12.1.1) and carries our To tag.
- A session in TERMINATED is sticky: any further input raises `LocalProtocolError`, except that
  a retransmitted ACK/BYE is absorbed.

Every output is a `SendMessage`-like `Reply` (send this response on the connection the request
came in on, §18.2.2) or a `Send` for a request we originate (the BYE after a missing ACK), plus
user-level events: `CallAnswered`, `CallEnded(reason)`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final

from sipua.sip import Request, Response, make_response
from sipua.sip.dialog import Dialog
from sipua.sip.errors import LocalProtocolError
from sipua.sip.ids import RandomSource
from sipua.sip.methods import ALLOW
from sipua.sip.timers import DEFAULT_T1, DEFAULT_T2

# The UAS core's 2xx retransmissions use the transaction layer's T1 and T2 (RFC 3261 Table 4).
T1_SECONDS: Final = DEFAULT_T1
T2_SECONDS: Final = DEFAULT_T2
ACK_TIMEOUT_SECONDS: Final = 64 * T1_SECONDS  # §13.3.1.4


class InviteState(enum.Enum):
    """States of the UAS INVITE session."""

    RINGING = "ringing"
    ANSWERED = "answered"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """Send this response back on the connection its request arrived on (§18.2.2)."""

    response: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """Send this in-dialog request we originate (a BYE)."""

    request: Request


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered:
    """We sent 200 OK; the dialog is up once the ACK arrives."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallConfirmed:
    """The caller's ACK arrived for our 200 OK (with the answer when our 200 had the offer)."""

    sdp: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded:
    """The session ended.

    Attributes:
        reason: "remote-bye", "cancelled", "rejected", "ack-timeout" or "local-bye".
        status: the final status of the INVITE when it never got a 2xx.
    """

    reason: str
    status: int | None = None


InviteOutput = Reply | Send | CallAnswered | CallConfirmed | CallEnded


class SessionInput(enum.Enum):
    """What can happen to an inbound INVITE session."""

    ANSWER = "answer"
    REJECT = "reject"
    HANGUP = "hang up"
    RECEIVE_CANCEL = "CANCEL"
    RECEIVE_ACK = "ACK"
    RECEIVE_BYE = "BYE"
    RETRANSMIT_2XX = "2xx retransmission timer"
    ACK_TIMEOUT = "ACK timeout"


_S = InviteState
_I = SessionInput

#: (state, input) -> next state. Anything missing is our own misuse (LocalProtocolError).
TABLE: Final[Mapping[tuple[InviteState, SessionInput], InviteState]] = {
    (_S.RINGING, _I.ANSWER): _S.ANSWERED,  # 2xx with the answer, retransmitted (§13.3.1.4)
    (_S.RINGING, _I.REJECT): _S.TERMINATED,  # a non-2xx final response (§13.3.1.3)
    (_S.RINGING, _I.HANGUP): _S.TERMINATED,  # 480: we never answered
    (_S.ANSWERED, _I.HANGUP): _S.ANSWERED,  # the BYE waits for the ACK (§15)
    (_S.CONFIRMED, _I.HANGUP): _S.TERMINATED,  # BYE (§15.1.1)
    (_S.RINGING, _I.RECEIVE_CANCEL): _S.TERMINATED,  # 200 for it, 487 for the INVITE (§9.2)
    (_S.ANSWERED, _I.RECEIVE_CANCEL): _S.ANSWERED,  # 200, no effect after a final (§9.2)
    (_S.CONFIRMED, _I.RECEIVE_CANCEL): _S.CONFIRMED,
    (_S.TERMINATED, _I.RECEIVE_CANCEL): _S.TERMINATED,
    (_S.RINGING, _I.RECEIVE_ACK): _S.RINGING,  # absorbed
    (_S.ANSWERED, _I.RECEIVE_ACK): _S.CONFIRMED,  # the dialog is confirmed (§13.3.1.4)
    (_S.CONFIRMED, _I.RECEIVE_ACK): _S.CONFIRMED,  # retransmitted ACK, absorbed
    (_S.TERMINATED, _I.RECEIVE_ACK): _S.TERMINATED,
    (_S.RINGING, _I.RECEIVE_BYE): _S.RINGING,  # 481: no confirmed dialog yet (§15)
    (_S.ANSWERED, _I.RECEIVE_BYE): _S.TERMINATED,  # 200 (§15.1.2)
    (_S.CONFIRMED, _I.RECEIVE_BYE): _S.TERMINATED,  # 200 (§15.1.2)
    (_S.TERMINATED, _I.RECEIVE_BYE): _S.TERMINATED,  # 481: a retransmission, absorbed
    (_S.ANSWERED, _I.RETRANSMIT_2XX): _S.ANSWERED,  # T1 doubling up to T2 (§13.3.1.4)
    (_S.ANSWERED, _I.ACK_TIMEOUT): _S.TERMINATED,  # BYE after 64*T1 without ACK (§13.3.1.4)
}


class InviteSession:
    """One inbound INVITE and the dialog it creates.

    Args:
        invite: the INVITE request.
        local_tag: our To tag (from `sipua.sip.ids.new_tag`).
        contact: our Contact URI as text (``sips:user@host:port``).
        sent_by: our Via sent-by for requests we originate in the dialog.
        rng: branch source for those requests.

    Raises:
        RemoteProtocolError: the INVITE cannot make a usable dialog (`Dialog.from_uas`).
    """

    def __init__(
        self,
        invite: Request,
        *,
        local_tag: str,
        contact: str,
        sent_by: str,
        rng: RandomSource,
    ) -> None:
        if invite.method != "INVITE":
            raise LocalProtocolError(f"an InviteSession starts with an INVITE, not {invite.method}")
        self.invite = invite
        self.local_tag = local_tag
        self.contact = contact
        self.sent_by = sent_by
        self.state = InviteState.RINGING
        self.dialog = Dialog.from_uas(invite, local_tag)
        self._rng = rng
        self._ok: Response | None = None
        self._retransmit_at: float | None = None
        self._retransmit_interval = T1_SECONDS
        self._ack_deadline: float | None = None
        #: We hung up after the 2xx but before its ACK; the BYE goes out when the ACK comes.
        self.hangup_pending = False
        self._hangup_reason = "local-bye"  # the pending hang-up's reason, for its CallEnded

    @property
    def call_id(self) -> str:
        """The Call-ID of the session."""
        return self.invite.call_id

    def start(self) -> list[InviteOutput]:
        """Answers the new INVITE with 100 Trying and 180 Ringing."""
        trying = make_response(self.invite, 100)
        return [Reply(response=trying), Reply(response=self._response(180))]

    # -- inputs ---------------------------------------------------------------------------

    def answer(
        self, sdp: bytes, now: float, extra: tuple[tuple[str, str], ...] = ()
    ) -> list[InviteOutput]:
        """Sends 200 OK with our session description (and `extra` header fields, such as
        Session-Expires) and starts waiting for the ACK."""
        self._move(SessionInput.ANSWER)
        ok = self._response(200)
        ok.headers.add("Contact", f"<{self.contact}>")
        ok.headers.add("Allow", ALLOW)
        for name, value in extra:
            ok.headers.add(name, value)
        ok.headers.add("Content-Type", "application/sdp")
        self._ok = replace(ok, body=sdp)
        self._retransmit_interval = T1_SECONDS
        self._retransmit_at = now + T1_SECONDS
        self._ack_deadline = now + ACK_TIMEOUT_SECONDS
        return [Reply(response=self._ok), CallAnswered()]

    def reject(self, status: int) -> list[InviteOutput]:
        """Rejects the INVITE (486 Busy Here, 603 Decline, 488...)."""
        if not 300 <= status < 700:
            raise LocalProtocolError(f"a rejection needs a status 300-699, not {status}")
        self._move(SessionInput.REJECT)
        return [Reply(response=self._response(status)), CallEnded(reason="rejected", status=status)]

    def hangup(self, reason: str = "local-bye") -> list[InviteOutput]:
        """Ends the call from our side: BYE once confirmed, else reject with 480.

        Answered but not yet acknowledged, the BYE waits (§15: the callee MUST NOT send BYE
        on a confirmed dialog before the ACK for its 2xx arrived or the server transaction
        timed out): it goes out with the ACK, or at the ACK timeout. Meanwhile the 2xx is
        still retransmitted, or the caller could never confirm; `hangup_pending` says so.
        """
        old = self._move(SessionInput.HANGUP)
        if old is InviteState.RINGING:
            return [Reply(response=self._response(480)), CallEnded(reason=reason, status=480)]
        if old is InviteState.ANSWERED:
            self.hangup_pending = True
            self._hangup_reason = reason
            return []
        return self._bye(reason)

    def receive_cancel(self, cancel: Request) -> list[InviteOutput]:
        """CANCEL for our INVITE (§9.2): 200 for it, and 487 for the INVITE if still ringing."""
        # §8.2.6.2: every response but 100 carries a To tag; §9.2: the same as the INVITE's.
        ok = Reply(response=make_response(cancel, 200, to_tag=self.local_tag))
        if self._move(SessionInput.RECEIVE_CANCEL) is not InviteState.RINGING:
            return [ok]
        terminated = Reply(response=self._response(487))
        return [ok, terminated, CallEnded(reason="cancelled", status=487)]

    def receive_ack(self, ack: Request) -> list[InviteOutput]:
        """The ACK for our 2xx (§13.3.1.4); retransmitted ACKs are absorbed. Its body is the
        answer when our 2xx carried the offer (an INVITE without one)."""
        if self._move(SessionInput.RECEIVE_ACK) is not InviteState.ANSWERED:
            return []
        self._stop_timers()
        if self.hangup_pending:
            return [CallConfirmed(sdp=ack.body), *self.hangup(self._hangup_reason)]
        return [CallConfirmed(sdp=ack.body)]

    def receive_bye(self, bye: Request) -> list[InviteOutput]:
        """BYE from the peer (§15.1.2): 200 and the end; 481 before the dialog is confirmed."""
        if self.state in (InviteState.ANSWERED, InviteState.CONFIRMED):
            self.dialog.receive_request(bye)  # §12.2.2: 500 for an old CSeq, no state change
        if self._move(SessionInput.RECEIVE_BYE) in (InviteState.RINGING, InviteState.TERMINATED):
            # §15: a caller must not BYE before the dialog is confirmed on its side; it is not
            # one for us until we answer. After the end, a retransmission.
            return [Reply(response=make_response(bye, 481, to_tag=self.local_tag))]
        self._stop_timers()
        return [Reply(response=make_response(bye, 200)), CallEnded(reason="remote-bye")]

    # -- time -----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The next 2xx retransmission or the ACK timeout."""
        deadlines = [d for d in (self._retransmit_at, self._ack_deadline) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[InviteOutput]:
        """Retransmits the 2xx (T1 doubling to T2) or gives up on the ACK with a BYE."""
        if self.state is not InviteState.ANSWERED:
            return []
        if self._ack_deadline is not None and now >= self._ack_deadline:
            self._move(SessionInput.ACK_TIMEOUT)
            return self._bye("ack-timeout")
        outputs: list[InviteOutput] = []
        if self._retransmit_at is not None and now >= self._retransmit_at and self._ok:
            self._move(SessionInput.RETRANSMIT_2XX)
            outputs.append(Reply(response=self._ok))
            self._retransmit_interval = min(self._retransmit_interval * 2, T2_SECONDS)
            self._retransmit_at = now + self._retransmit_interval
        return outputs

    # -- helpers --------------------------------------------------------------------------

    def _move(self, event: SessionInput) -> InviteState:
        """Takes the transition for `event`; returns the state it left."""
        old = self.state
        new = TABLE.get((old, event))
        if new is None:
            raise LocalProtocolError(f"cannot {event.value} a call in state {old.value}")
        self.state = new
        return old

    def _stop_timers(self) -> None:
        self._retransmit_at = None
        self._ack_deadline = None

    def _bye(self, reason: str) -> list[InviteOutput]:
        bye = self.dialog.new_request("BYE", sent_by=self.sent_by, rng=self._rng)
        self.state = InviteState.TERMINATED
        self._stop_timers()
        return [Send(request=bye), CallEnded(reason=reason)]

    def _response(self, status: int) -> Response:
        response = make_response(self.invite, status, to_tag=self.local_tag)
        if 100 < status < 300:
            # §12.1.1: the UAS copies Record-Route into responses that create the dialog, field
            # by field as received (one field listing 500 routes stays one field).
            for value in self.invite.headers.get_fields("Record-Route"):
                response.headers.add("Record-Route", value)
        return response


def options_response(request: Request, *, to_tag: str) -> Response:
    """200 OK to OPTIONS with what we allow and accept (RFC 3261 §11.2)."""
    response = make_response(request, 200, to_tag=to_tag)
    response.headers.add("Allow", ALLOW)
    response.headers.add("Accept", "application/sdp")
    response.headers.add("Supported", "outbound, timer")
    return response
