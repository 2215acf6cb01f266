"""The media of sipua's calls: the endpoint's session describer and the sessions it binds.

`MediaDescriber` is the `SessionDescriber` the endpoint (`sipua.sip.endpoint`) asks for our
SDP. Without `CallMedia` it writes a valid answer (PCMU/PCMA, telephone-event) announcing
`MEDIA_PORT`, and no RTP flows. With it, an answer is written for a `MediaSession` bound first
on the address the SDP announces (an exhausted port range refuses the INVITE with 503), under
the account's SRTP policy (`sipua.media.negotiation`: 488 with a Warning when the offer is not
acceptable). The bound session waits, keyed by our To tag, until the call handler takes it to
run once the call is answered; `release` closes one that never ran (the call was refused after
its answer was written, cancelled or rejected).

Binding a UDP socket does not block, so the endpoint may call the describer synchronously; the
media itself runs in the call handler's tasks.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from typing import Final

from sipua.logs import get_logger
from sipua.media.errors import MediaError, MediaRefused
from sipua.media.negotiation import LocalOffer, MediaPlan, accept_answer, answer_offer, make_offer
from sipua.media.sdp import SdpError, answer_streams, build_offer, parse_offer
from sipua.media.session import MediaSession, PortRange
from sipua.media.sources import MediaSpec
from sipua.settings.model import SrtpPolicy
from sipua.sip.endpoint import Refusal
from sipua.sip.rejection import warning

#: The media port announced without `CallMedia` (no RTP flows there).
MEDIA_PORT: Final = 4000
#: Sessions bound and not yet taken at once; one per ringing call at most, so this is a bound
#: the call cap keeps well below.
MAX_WAITING_SESSIONS: Final = 256

_log = get_logger(component="media")


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


class MediaDescriber:
    """Writes sipua's SDP for the endpoint, binding a media session per answer when configured.

    Args:
        rng: the source of o= session ids.
        media: the media of answered calls; None answers without carrying RTP.
    """

    def __init__(self, rng: random.Random, media: CallMedia | None = None) -> None:
        self._rng = rng
        self.media = media
        self._waiting: dict[str, tuple[MediaSession, MediaPlan]] = {}
        self._offered: dict[str, tuple[MediaSession, LocalOffer, CallMedia]] = {}
        # Offers answered by early media (a 183), kept for the 2xx's answer (`replan`).
        self._early: dict[str, tuple[LocalOffer, CallMedia]] = {}

    def answer(self, offer: bytes, *, address: str, tag: str) -> bytes:
        """Our answer to `offer` (RFC 3264 §6), for the call whose To tag is `tag`.

        Raises:
            Refusal: 488 with a Warning naming the line for an offer that does not parse, 488
                for one with nothing we take, 503 when no media port pair is free.
        """
        try:
            streams = parse_offer(offer)
        except SdpError as exc:
            # 488 (RFC 3261 §21.4.26, as SIP stacks answer an SDP they cannot read): the
            # request is well-formed SIP; it is its session description that is not usable.
            raise Refusal(488, f"SDP offer: {exc}", ("Warning", warning(str(exc)))) from None
        session_id = self._rng.getrandbits(31)
        if self.media is None:
            answer = answer_streams(
                streams, address=address, port=MEDIA_PORT, session_id=session_id
            )
            if answer is None:
                why = "no audio stream with PCMU or PCMA over RTP/AVP"
                raise Refusal(488, why, ("Warning", f'304 sipua "{why}"'))
            return answer
        return self._bind_and_answer(offer, address, session_id, tag, self.media)

    def offer(self, *, address: str, tag: str) -> bytes:
        """Our offer for an INVITE that came without one (§13.3.1.4): the answer comes in the
        ACK (`accept`).

        Raises:
            Refusal: 503 when no media port pair is free.
        """
        try:
            return self.offer_for_call(address=address, tag=tag)
        except MediaError as exc:
            _log.warning("media-port-unavailable", reason=str(exc))
            raise Refusal(503, str(exc), ("Retry-After", "5")) from None

    def offer_for_call(self, *, address: str, tag: str) -> bytes:
        """Our offer for a call we place (`tag`: our From tag): with media, a session is bound
        and its offer made under the account's SRTP policy (keys only go over TLS, which every
        connection of sipua is).

        Raises:
            MediaError: no media port pair is free (`PortRangeExhausted`), or the policy
                cannot make an offer.
        """
        config = self.media
        if config is None:
            return build_offer(
                address=address, port=MEDIA_PORT, session_id=self._rng.getrandbits(31)
            )
        if len(self._offered) >= MAX_WAITING_SESSIONS:
            raise MediaError("too many offers wait for their answer")
        session = MediaSession.open(address, config.ports, symmetric=config.symmetric)
        try:
            local = make_offer(
                policy=config.srtp,
                signalling_secure=True,
                address=address,
                port=session.port,
                session_id=self._rng.getrandbits(31),
                random_bytes=secrets.token_bytes,
            )
        except MediaError:
            session.close()
            raise
        self._offered[tag] = (session, local, config)
        return local.body

    def accept(
        self, tag: str, answer: bytes, *, early: bool = False
    ) -> tuple[MediaSession, MediaPlan] | None:
        """The session and plan the `answer` to our offer sets up for the call `tag` (the
        callee's 2xx or 183, or the ACK of our 2xx to an INVITE without an offer), to run (the
        caller closes it); None without media or without our offer. An `early` answer (a
        183's) keeps the offer, so that the 2xx's answer can set the media up anew (`replan`).

        Raises:
            MediaRefused: the answer is not acceptable (a plain answer under `compulsory`, keys
                or a codec we did not offer); the session is closed.
        """
        offered = self._offered.pop(tag, None)
        if offered is None:
            return None
        session, local, config = offered
        try:
            plan = accept_answer(local, answer, policy=config.srtp, signalling_secure=True)
        except MediaRefused:
            session.close()
            raise
        if early:
            self._early[tag] = (local, config)
        return session, plan

    def replan(self, tag: str, answer: bytes) -> MediaPlan | None:
        """The plan of the 2xx's `answer` for a call `tag` whose early media runs on the
        session `accept` gave (a 2xx from another fork than the 183's, or another answer);
        None when no early answer kept the offer.

        Raises:
            MediaRefused: the answer is not acceptable; the running session is the caller's.
        """
        kept = self._early.pop(tag, None)
        if kept is None:
            return None
        local, config = kept
        return accept_answer(local, answer, policy=config.srtp, signalling_secure=True)

    def release(self, tag: str) -> None:
        """Closes the session bound for `tag` if it never ran."""
        waiting = self._waiting.pop(tag, None)
        if waiting is not None:
            waiting[0].close()
        offered = self._offered.pop(tag, None)
        if offered is not None:
            offered[0].close()
        self._early.pop(tag, None)

    def take(self, tag: str) -> tuple[MediaSession, MediaPlan] | None:
        """The session bound for the answered call `tag`, to run (the caller closes it)."""
        return self._waiting.pop(tag, None)

    def _bind_and_answer(
        self, offer: bytes, address: str, session_id: int, tag: str, config: CallMedia
    ) -> bytes:
        if len(self._waiting) >= MAX_WAITING_SESSIONS:
            raise Refusal(503, "too many calls are ringing", ("Retry-After", "5"))
        try:
            session = MediaSession.open(address, config.ports, symmetric=config.symmetric)
        except MediaError as exc:  # the range is exhausted, or the address cannot be bound
            _log.warning("media-port-unavailable", reason=str(exc))
            raise Refusal(503, str(exc), ("Retry-After", "5")) from None
        try:
            # Every connection sipua has is TLS: SDES keys may go into this answer.
            answer, plan = answer_offer(
                offer,
                policy=config.srtp,
                signalling_secure=True,
                address=address,
                port=session.port,
                session_id=session_id,
                random_bytes=secrets.token_bytes,
            )
        except MediaRefused as exc:
            session.close()
            raise Refusal(exc.status, str(exc), ("Warning", warning(str(exc)))) from None
        self._waiting[tag] = (session, plan)
        return answer
