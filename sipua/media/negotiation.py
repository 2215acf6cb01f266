"""The SRTP policy applied to SDP offer/answer: which profile and keys to offer, which offers
and answers to accept, and the media parameters that result. Pure functions: no I/O, keys from
the random source passed in.

The policy is a desk phone's "RTP encryption" per account:

- `disabled`: plain RTP/AVP offers; RTP/SAVP offers are refused and crypto lines ignored.
- `optional`: offers RTP/AVP with a=crypto lines (best-effort SRTP: an answerer that knows SDES
  takes a key, one that does not answers plain RTP); accepts an RTP/SAVP or an RTP/AVP offer
  with a usable crypto line as SRTP, and a plain offer as plain RTP.
- `compulsory`: offers RTP/SAVP; refuses a plain offer and a plain answer (488).

SDES keys travel in the SDP, so they are only as secret as the hop that carries it: without a
TLS hop (`signalling_secure` False) no key is offered, any offered key is ignored, and
`compulsory` refuses the call.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

from sipua.media.errors import MediaRefused, SrtpError
from sipua.media.g711 import Codec
from sipua.media.sdp import (
    ACCEPTED_PROFILES,
    MAX_PORT,
    SRTP_PROFILE,
    CryptoLine,
    MediaOffer,
    SdpError,
    acceptable_audio,
    answer_streams,
    build_offer,
    chosen_formats,
    codec_of,
    parse_offer,
)
from sipua.media.srtp import (
    SUITES,
    SUITES_BY_NAME,
    KeySource,
    SrtpSuite,
    decode_key_params,
    inline_key,
    new_master_key,
)
from sipua.settings.model import SrtpPolicy

_NOT_TLS: Final = "the signalling hop is not TLS, so no SDES key is sent or accepted"


@dataclass(frozen=True, slots=True)
class MediaSecurity:
    """Whether a call's media is encrypted, and why (shown beside the account's lock)."""

    encrypted: bool
    suite: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """The suite and both master keys of an SRTP call (the keys never appear in a repr)."""

    suite: SrtpSuite
    local_key: bytes = field(repr=False)
    remote_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class MediaPlan:
    """What offer/answer decided: where to send, which codec, and the keys if SRTP."""

    remote_address: str
    remote_port: int
    #: Where RTCP goes: the RTP address and port with rtcp-mux, a=rtcp's, or the port above.
    remote_rtcp: tuple[str, int]
    codec: Codec
    payload_type: int
    event_payload_type: int | None
    rtcp_mux: bool
    srtp: SrtpKeys | None
    security: MediaSecurity
    #: Our direction: "sendrecv", "sendonly", "recvonly" or "inactive".
    direction: str = "sendrecv"


@dataclass(frozen=True, slots=True)
class LocalOffer:
    """An offer we made, and the keys it holds per crypto tag, to read the answer with."""

    body: bytes = field(repr=False)
    keys: dict[int, tuple[SrtpSuite, bytes]] = field(repr=False)
    rtcp_mux: bool
    address: str  # our media address, which the answer's must be reachable from


def make_offer(
    *,
    policy: SrtpPolicy,
    signalling_secure: bool,
    address: str,
    port: int,
    session_id: int,
    random_bytes: KeySource,
    rtcp_mux: bool = True,
) -> LocalOffer:
    """Our offer under `policy`.

    Raises:
        MediaRefused: `compulsory` over a hop that is not TLS (no key may be sent).
    """
    if policy == "disabled" or (policy == "optional" and not signalling_secure):
        body = build_offer(address=address, port=port, session_id=session_id, rtcp_mux=rtcp_mux)
        return LocalOffer(body, {}, rtcp_mux, address)
    if not signalling_secure:
        raise MediaRefused(f"SRTP is compulsory but {_NOT_TLS}")
    keys = {tag: (s, new_master_key(s, random_bytes)) for tag, s in enumerate(SUITES, 1)}
    lines = tuple(CryptoLine(tag, s.name, inline_key(key)) for tag, (s, key) in keys.items())
    profile = SRTP_PROFILE if policy == "compulsory" else ACCEPTED_PROFILES[0]
    body = build_offer(
        address=address,
        port=port,
        session_id=session_id,
        profile=profile,
        crypto=lines,
        rtcp_mux=rtcp_mux,
    )
    return LocalOffer(body, keys, rtcp_mux, address)


def _usable_crypto(stream: MediaOffer) -> tuple[CryptoLine, SrtpSuite, bytes] | None:
    for line in stream.crypto:
        suite = SUITES_BY_NAME.get(line.suite)
        if suite is None:
            continue
        try:
            return line, suite, decode_key_params(suite, line.key_params)
        except SrtpError:
            continue
    return None


def _ip(address: str, what: str) -> str:
    """`address` as the socket layer writes it (datagram sources are compared with it)."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise MediaRefused(f"the SDP's {what} address is not an IP address") from None


def _same_family(address: str, local: str, what: str) -> None:
    """Refuses a remote `address` of the other IP family than our media's `local` one: no
    datagram of our socket could reach it."""
    if (":" in address) != (":" in local):
        theirs, ours = ("IPv6", "IPv4") if ":" in address else ("IPv4", "IPv6")
        raise MediaRefused(
            f"the SDP's {what} address {address[:60]} is {theirs} and this call's media is "
            f"{ours}; offer an {ours} address"
        )


def _remote(
    stream: MediaOffer, rtcp_mux: bool, local: str
) -> tuple[tuple[str, int], tuple[str, int]]:
    """Where the stream's RTP and RTCP go, from our media address `local`.

    RTCP shares the RTP port with rtcp-mux (RFC 5761), goes where a=rtcp says (RFC 3605), and
    otherwise to the RTP port + 1 (RFC 3550 §11). An RTP port of 65535 with neither has no RTCP
    port at all (65536 does not exist): the stream is refused rather than half used, and so is
    an address of the other IP family than ours (no datagram of our socket could reach it).
    """
    if stream.address is None:
        raise MediaRefused("the SDP has no c= connection address for its audio stream")
    address = _ip(stream.address, "c=")
    _same_family(address, local, "c=")
    rtp = (address, stream.port)
    if rtcp_mux:
        return rtp, rtp
    if stream.rtcp_port is not None:
        rtcp_address = address
        if stream.rtcp_address is not None:
            rtcp_address = _ip(stream.rtcp_address, "a=rtcp")
            _same_family(rtcp_address, local, "a=rtcp")
        return rtp, (rtcp_address, stream.rtcp_port)
    if stream.port >= MAX_PORT:
        # The Warning's text is ASCII and at most 160 characters.
        raise MediaRefused(
            f"RTP port {stream.port} without a=rtcp-mux or a=rtcp leaves no RTCP port "
            f"({stream.port + 1}); use an even RTP port, rtcp-mux or a=rtcp"
        )
    return rtp, (address, stream.port + 1)


def _read(body: bytes, what: str) -> list[MediaOffer]:
    try:
        return parse_offer(body)
    except SdpError as exc:
        raise MediaRefused(f"malformed SDP {what}: {exc}") from None


def _offered_suites(stream: MediaOffer) -> str:
    names = sorted({line.suite for line in stream.crypto})
    return ", ".join(names[:8]) if names else "none"


_ANSWER_DIRECTION: Final = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


def answer_offer(
    offer: bytes,
    *,
    policy: SrtpPolicy,
    signalling_secure: bool,
    address: str,
    port: int,
    session_id: int,
    random_bytes: KeySource,
) -> tuple[bytes, MediaPlan]:
    """Our answer to a peer's offer under `policy`, and the media it sets up.

    Raises:
        MediaRefused: malformed SDP, no PCMU/PCMA audio stream, or no stream the policy allows
            (the message says which, as a 488's Warning).
    """
    streams = _read(offer, "offer")
    candidates = acceptable_audio(streams, (*ACCEPTED_PROFILES, SRTP_PROFILE))
    if not candidates:
        raise MediaRefused("the offer has no audio stream with PCMU or PCMA")
    refusal = ""
    for index in candidates:
        stream = streams[index]
        srtp = stream.proto == SRTP_PROFILE
        crypto = _usable_crypto(stream) if policy != "disabled" and signalling_secure else None
        if srtp and policy == "disabled":
            refusal = "the offer is RTP/SAVP (SRTP only) and SRTP is disabled"
            continue
        if (srtp or policy == "compulsory") and not signalling_secure:
            refusal = f"SRTP is required but {_NOT_TLS}"
            continue
        if (srtp or policy == "compulsory") and crypto is None:
            refusal = (
                "SRTP is required and the offer has no usable SDES crypto line "
                f"(suites offered: {_offered_suites(stream)})"
            )
            continue
        try:
            (remote_address, remote_port), remote_rtcp = _remote(stream, stream.rtcp_mux, address)
        except MediaRefused as exc:
            refusal = str(exc)
            continue
        keys = None
        answer_crypto = None
        if crypto is not None:
            line, suite, remote_key = crypto
            local_key = new_master_key(suite, random_bytes)
            keys = SrtpKeys(suite, local_key, remote_key)
            answer_crypto = CryptoLine(line.tag, suite.name, inline_key(local_key))
            security = MediaSecurity(True, suite.name, f"SRTP {suite.name}, SDES keys over TLS")
        elif stream.crypto and not signalling_secure:
            security = MediaSecurity(False, None, _NOT_TLS)
        elif policy == "disabled":
            security = MediaSecurity(False, None, "SRTP is disabled for this account")
        else:
            security = MediaSecurity(False, None, "the peer offered plain RTP")
        body = answer_streams(
            streams,
            address=address,
            port=port,
            session_id=session_id,
            chosen=index,
            crypto=answer_crypto,
            rtcp_mux=stream.rtcp_mux,
        )
        assert body is not None  # `index` is an acceptable stream
        codec_pt, event_pt = chosen_formats(stream)
        plan = MediaPlan(
            remote_address=remote_address,
            remote_port=remote_port,
            remote_rtcp=remote_rtcp,
            codec="pcmu" if codec_of(stream, codec_pt) == "pcmu" else "pcma",
            payload_type=int(codec_pt),
            event_payload_type=None if event_pt is None else int(event_pt),
            rtcp_mux=stream.rtcp_mux,
            srtp=keys,
            security=security,
            direction=_ANSWER_DIRECTION[stream.direction],
        )
        return body, plan
    raise MediaRefused(refusal)


def accept_answer(
    local: LocalOffer, answer: bytes, *, policy: SrtpPolicy, signalling_secure: bool
) -> MediaPlan:
    """The media an answer to our offer (`local`) sets up.

    Raises:
        MediaRefused: malformed SDP, the audio stream refused, a codec we did not offer, crypto
            that does not match our offer, or a plain answer under `compulsory`.
    """
    streams = _read(answer, "answer")
    if not streams or streams[0].media != "audio" or streams[0].port == 0:
        raise MediaRefused("the answer refused our audio stream")
    stream = streams[0]
    try:
        codec_pt, event_pt = chosen_formats(stream)
    except SdpError as exc:
        raise MediaRefused(f"the answer's codec is not one we offered: {exc}") from None
    rtcp_mux = local.rtcp_mux and stream.rtcp_mux
    (remote_address, remote_port), remote_rtcp = _remote(stream, rtcp_mux, local.address)
    keys = None
    if stream.crypto:
        line = stream.crypto[0]
        offered = local.keys.get(line.tag)
        if offered is None or offered[0].name != line.suite or not signalling_secure:
            raise MediaRefused(
                f"the answer's a=crypto (tag {line.tag}, {line.suite[:64]}) matches none we offered"
            )
        suite, local_key = offered
        try:
            remote_key = decode_key_params(suite, line.key_params)
        except SrtpError as exc:
            raise MediaRefused(f"the answer's SDES key is unusable: {exc}") from None
        keys = SrtpKeys(suite, local_key, remote_key)
        security = MediaSecurity(True, suite.name, f"SRTP {suite.name}, SDES keys over TLS")
    elif policy == "compulsory":
        raise MediaRefused("SRTP is compulsory and the answer is plain RTP")
    elif policy == "disabled":
        security = MediaSecurity(False, None, "SRTP is disabled for this account")
    elif not signalling_secure:
        security = MediaSecurity(False, None, _NOT_TLS)
    else:
        security = MediaSecurity(False, None, "the peer answered plain RTP")
    return MediaPlan(
        remote_address=remote_address,
        remote_port=remote_port,
        remote_rtcp=remote_rtcp,
        codec="pcmu" if codec_of(stream, codec_pt) == "pcmu" else "pcma",
        payload_type=int(codec_pt),
        event_payload_type=None if event_pt is None else int(event_pt),
        rtcp_mux=rtcp_mux,
        srtp=keys,
        security=security,
        direction=_ANSWER_DIRECTION[stream.direction],
    )
