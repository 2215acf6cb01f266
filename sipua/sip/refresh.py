"""Refreshing an established call: re-INVITE and UPDATE without a change, and session timers.

Theory of operation. A PBX keeps a call alive, or checks that the other side still has it, by
sending a re-INVITE (RFC 3261 §14) or an UPDATE (RFC 3311) inside the dialog, usually with the
same SDP as before and, under RFC 4028, a Session-Expires header. sipua does not renegotiate
media, but it must answer a refresh, or the PBX ends the call:

- an offer whose o= line (origin, RFC 4566 §5.2: username, session id and version) is the one
  the peer sent before changes nothing (RFC 3264 §8: the version only moves with a change): it
  is answered with our current SDP as it was; a request without a body is answered with our SDP
  as the offer (a re-INVITE's answer then comes in the ACK);
- an offer that changes the session is refused with 488 and the call goes on unchanged (RFC 3264
  §8: "the session continues as if the offer had not been made");
- Session-Expires (RFC 4028): an interval below `MIN_SESSION_EXPIRES` is refused with 422 and
  Min-SE; otherwise the 200 carries it back with `Require: timer`, the refresher being the one
  the peer named or, when it named none, the peer itself (`uac`): sipua never has to refresh.
  If no refresh comes within the interval, the call is over (§10: the side that is not the
  refresher sends BYE shortly before the expiry, here at it).

Everything here is pure: the caller keeps the call's state and acts on `RefreshAnswer`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Final

from sipua.sip.message import Request, Response, make_response
from sipua.sip.methods import ALLOW

#: RFC 4028 §4: the smallest Session-Expires a UAS must accept, and what sipua asks for.
MIN_SESSION_EXPIRES: Final = 90
#: Session-Expires values beyond this are taken as this (a day; bounded deadlines).
MAX_SESSION_EXPIRES: Final = 86400
SUPPORTED: Final = "timer"

_ORIGIN_RE: Final = re.compile(rb"^o=([^\r\n]*)", re.MULTILINE)
_SESSION_EXPIRES_RE: Final = re.compile(r"\s*([0-9]{1,10})\s*((?:;[^;]*)*)", re.ASCII)
_REFRESHER_RE: Final = re.compile(r";\s*refresher\s*=\s*(uac|uas)\b", re.IGNORECASE)


def sdp_origin(body: bytes) -> bytes | None:
    """The o= line of an SDP body (its origin and version), or None when there is none."""
    m = _ORIGIN_RE.search(body[:4096])
    return m.group(1).strip() if m else None


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshAnswer:
    """What to answer a refresh with.

    Attributes:
        response: the response to send (200, 422, 488, 491...).
        expires: the session interval the 200 agreed to (seconds), or None without timers.
        origin: the peer's SDP origin from now on (unchanged unless it sent none before).
    """

    response: Response
    expires: int | None = None
    origin: bytes | None = None


def answer_refresh(
    request: Request,
    *,
    local_tag: str,
    contact: str,
    local_sdp: bytes,
    remote_origin: bytes | None,
) -> RefreshAnswer:
    """The answer to a re-INVITE or UPDATE inside an established call.

    Args:
        request: the re-INVITE or UPDATE (its dialog and CSeq already checked).
        local_tag: our tag in the dialog.
        contact: our Contact URI (a target refresh request gets it back, RFC 3261 §12.2.2).
        local_sdp: our current session description, sent again unchanged.
        remote_origin: the o= line of the peer's last SDP (`sdp_origin`), None if unknown.
    """
    expires, refresher = _session_expires(request)
    if expires is not None and expires < MIN_SESSION_EXPIRES:
        response = make_response(request, 422, to_tag=local_tag)
        response.headers.add("Min-SE", str(MIN_SESSION_EXPIRES))
        return RefreshAnswer(response=response)
    origin = remote_origin
    if request.body:
        offered = sdp_origin(request.body)
        if remote_origin is not None and offered != remote_origin:
            response = make_response(request, 488, to_tag=local_tag)
            why = "sipua does not change an established session (its media stays as it is)"
            response.headers.add("Warning", f'399 sipua "{why}"')
            return RefreshAnswer(response=response)
        origin = offered
    ok = make_response(request, 200, to_tag=local_tag)
    ok.headers.add("Contact", f"<{contact}>")
    ok.headers.add("Allow", ALLOW)
    ok.headers.add("Supported", SUPPORTED)
    if expires is not None:
        ok.headers.add("Session-Expires", f"{expires};refresher={refresher or 'uac'}")
        ok.headers.add("Require", SUPPORTED)
    ok.headers.add("Content-Type", "application/sdp")
    return RefreshAnswer(response=replace(ok, body=local_sdp), expires=expires, origin=origin)


def _session_expires(request: Request) -> tuple[int | None, str | None]:
    value = request.headers.get("Session-Expires")  # the compact form "x" too (headers.py)
    if value is None:
        return None, None
    m = _SESSION_EXPIRES_RE.fullmatch(value)
    if m is None:
        return None, None  # unreadable: treated as absent (no timer), never as a refusal
    refresher = _REFRESHER_RE.search(m.group(2))
    return (
        min(int(m.group(1)), MAX_SESSION_EXPIRES),
        refresher.group(1).lower() if refresher else None,
    )


def initial_session_expires(invite: Request) -> int | None:
    """The session interval a new INVITE asks for (RFC 4028), at least `MIN_SESSION_EXPIRES`,
    when the caller supports timers; None otherwise."""
    if "timer" not in invite.supported and "timer" not in required(invite):
        return None
    expires, _refresher = _session_expires(invite)
    if expires is None:
        return None
    return max(expires, MIN_SESSION_EXPIRES)


def required(request: Request) -> list[str]:
    """The option tags of the request's Require header fields, lower-cased (at most 16)."""
    tags = [
        tag.strip().lower()
        for value in request.headers.get_all("Require")
        for tag in value.split(",")
        if tag.strip()
    ]
    return tags[:16]
