"""A minimal SDP offer/answer (RFC 4566, RFC 3264) for auto-answered calls.

sipua does not carry media yet: it answers an offer with a valid SDP answer so that the call
completes, and sends no RTP. The answer accepts the first audio stream whose profile is plain
RTP/AVP and which offers a codec we name (PCMU or PCMA, RFC 3551 static types 0 and 8), plus
telephone-event (RFC 4733) when offered; every other stream is refused with port 0, as RFC 3264
§6 requires (the answer has the same number of m= lines, in the same order). An offer with no
acceptable audio stream gets None, and the caller answers 488 Not Acceptable Here. An INVITE
without an offer gets `build_offer` in its 2xx (RFC 3261 §13.3.1.4), answered in the ACK.

The offer is a peer's bytes: `parse_offer` checks the structure it relies on (every line
``<letter>=<value>``, ``v=0`` first, m= and rtpmap numbers as ASCII digits in range, c= with
three fields) and raises only `SdpError`, naming the line that is wrong. Sizes, lines, streams
and formats are bounded.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Final

from sipua.sip.endpoint import Refusal
from sipua.sip.rejection import warning

MAX_SDP_BYTES: Final = 16 * 1024
MAX_SDP_LINES: Final = 512
MAX_MEDIA_LINES: Final = 16
MAX_FORMATS: Final = 64
MAX_PORT: Final = 65535
#: The media port announced in our SDP (no media flows yet).
MEDIA_PORT: Final = 4000
SUPPORTED_CODECS: Final = {"pcmu": 0, "pcma": 8}  # RFC 3551 static payload types
ACCEPTED_PROFILES: Final = ("RTP/AVP",)
#: Characters of an offending line quoted in an error.
MAX_QUOTED_CHARS: Final = 80
#: The payload type sipua offers for telephone-event (dynamic, RFC 4733 §7.1.1).
TELEPHONE_EVENT_PT: Final = 101
#: RFC 3264 §6.1: the answer's direction for each offered one.
_ANSWER_DIRECTION: Final = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}

_LINE_RE: Final = re.compile(r"([a-z])=(.*)", re.ASCII)
_DIGITS_RE: Final = re.compile(r"[0-9]{1,5}", re.ASCII)
_TOKEN_RE: Final = re.compile(r"[!#-'*+\-.0-9A-Z^-~]+", re.ASCII)  # RFC 4566 §9 token
_FORMAT_RE: Final = re.compile(r"[!#-'*+\-.0-9A-Z^-~]{1,32}", re.ASCII)
_ENCODING_RE: Final = re.compile(r"[!#-'*+\-.0-9A-Z^-~]{1,64}/[0-9]{1,9}(/[0-9]{1,3})?", re.ASCII)


class SdpError(ValueError):
    """The offer is not SDP we can read; the message names the offending line."""


@dataclass(slots=True)
class MediaOffer:
    """One m= section of an offer."""

    media: str
    port: int
    proto: str
    formats: list[str]
    rtpmap: dict[str, str] = field(default_factory=dict)  # payload type -> "name/rate[/ch]"
    fmtp: dict[str, str] = field(default_factory=dict)
    direction: str = "sendrecv"


def _quote(line: str) -> str:
    return repr(line[:MAX_QUOTED_CHARS] + ("..." if len(line) > MAX_QUOTED_CHARS else ""))


def _port(text: str, line: str) -> int:
    # ASCII digits only: str.isdigit() takes "²" and other digits int() refuses.
    if _DIGITS_RE.fullmatch(text) is None or int(text) > MAX_PORT:
        raise SdpError(f"m= line {_quote(line)} has port {text[:12]!r}, not 0-{MAX_PORT}")
    return int(text)


def _media_line(value: str, line: str) -> MediaOffer:
    parts = value.split(" ")
    if len(parts) < 4 or not all(parts):
        raise SdpError(f"m= line {_quote(line)} is not '<media> <port> <proto> <fmt> ...'")
    media, port_text, proto, *formats = parts
    if _TOKEN_RE.fullmatch(media) is None:
        raise SdpError(f"m= line {_quote(line)} has an invalid media type")
    port_text, slash, count = port_text.partition("/")
    port = _port(port_text, line)
    if slash and (_DIGITS_RE.fullmatch(count) is None or int(count) == 0):
        raise SdpError(f"m= line {_quote(line)} has an invalid port count {count[:12]!r}")
    if not all(_TOKEN_RE.fullmatch(part) for part in proto.split("/")):
        raise SdpError(f"m= line {_quote(line)} has an invalid transport protocol")
    if len(formats) > MAX_FORMATS:
        raise SdpError(f"m= line {_quote(line)} lists more than {MAX_FORMATS} formats")
    for fmt in formats:
        if _FORMAT_RE.fullmatch(fmt) is None:
            raise SdpError(f"m= line {_quote(line)} has an invalid format {fmt[:12]!r}")
    return MediaOffer(media, port, proto, formats)


def _connection_line(value: str, line: str) -> None:
    parts = value.split(" ")
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6") or not parts[2]:
        raise SdpError(f"c= line {_quote(line)} is not 'IN IP4|IP6 <address>'")


def _attribute(stream: MediaOffer, value: str, line: str) -> None:
    name, _, attr = value.partition(":")
    if name in _ANSWER_DIRECTION:
        stream.direction = name
        return
    if name not in ("rtpmap", "fmtp"):
        return
    pt, _, rest = attr.partition(" ")
    if _DIGITS_RE.fullmatch(pt) is None or int(pt) > 127:
        raise SdpError(f"a={name} line {_quote(line)} has payload type {pt[:12]!r}, not 0-127")
    if name == "rtpmap":
        if _ENCODING_RE.fullmatch(rest.strip()) is None:
            raise SdpError(f"a=rtpmap line {_quote(line)} is not '<pt> <encoding>/<rate>'")
        stream.rtpmap[pt] = rest.strip()
    else:
        stream.fmtp[pt] = rest.strip()


def parse_offer(body: bytes) -> list[MediaOffer]:
    """Reads the m= sections of an SDP offer (only what an answer needs).

    Raises:
        SdpError: not SDP (no v=0 first, a line that is not ``x=value``, an unreadable m=,
            c= or rtpmap line, too large, too many lines, streams or formats).
    """
    if len(body) > MAX_SDP_BYTES:
        raise SdpError(f"SDP offer of {len(body)} bytes is over {MAX_SDP_BYTES}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError(f"SDP offer is not UTF-8 (byte {exc.start})") from None
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if len(lines) > MAX_SDP_LINES:
        raise SdpError(f"SDP offer has more than {MAX_SDP_LINES} lines")
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP offer does not start with v=0")
    media: list[MediaOffer] = []
    session_direction = "sendrecv"
    for line in lines[1:]:
        m = _LINE_RE.fullmatch(line)
        if m is None:
            raise SdpError(f"SDP line {_quote(line)} is not '<letter>=<value>'")
        kind, value = m.groups()
        if kind == "m":
            if len(media) >= MAX_MEDIA_LINES:
                raise SdpError(f"SDP offer has more than {MAX_MEDIA_LINES} m= lines")
            stream = _media_line(value, line)
            stream.direction = session_direction
            media.append(stream)
        elif kind == "c":
            _connection_line(value, line)
        elif kind == "a":
            if media:
                _attribute(media[-1], value, line)
            elif value in _ANSWER_DIRECTION:
                session_direction = value  # RFC 4566 §6: a session-level default
    return media


def _codec_name(offer: MediaOffer, pt: str) -> str:
    mapped = offer.rtpmap.get(pt)
    if mapped:
        return mapped.split("/")[0].lower()
    return {"0": "pcmu", "8": "pcma"}.get(pt, "")


def _session_lines(address: str, session_id: int, version: int) -> list[str]:
    family = "IP6" if ":" in address else "IP4"
    return [
        "v=0",
        f"o=sipua {session_id} {version} IN {family} {address}",
        "s=sipua",
        f"c=IN {family} {address}",
        "t=0 0",
    ]


def build_answer(
    offer: bytes, *, address: str, port: int, session_id: int, version: int = 1
) -> bytes | None:
    """Builds the SDP answer to `offer`, or None when no stream is acceptable.

    Args:
        offer: the offer body.
        address: our connection address (an IPv4 or IPv6 literal) for c=.
        port: the media port we announce (nothing listens there: sipua sends no media).
        session_id: the o= session id (from the injected random source).
        version: the o= version.

    Raises:
        SdpError: the offer is not readable SDP.
    """
    return answer_streams(
        parse_offer(offer), address=address, port=port, session_id=session_id, version=version
    )


def answer_streams(
    streams: list[MediaOffer], *, address: str, port: int, session_id: int, version: int = 1
) -> bytes | None:
    """The answer to an offer already read by `parse_offer` (see `build_answer`)."""
    lines = _session_lines(address, session_id, version)
    accepted = False
    for stream in streams:
        refused = f"m={stream.media} 0 {stream.proto} {' '.join(stream.formats[:1])}"
        if accepted or stream.media != "audio" or stream.proto not in ACCEPTED_PROFILES:
            lines.append(refused)
            continue
        codecs = [pt for pt in stream.formats if _codec_name(stream, pt) in SUPPORTED_CODECS]
        if not codecs or stream.port == 0:
            lines.append(refused)
            continue
        chosen = [codecs[0]]
        events = [pt for pt in stream.formats if _codec_name(stream, pt) == "telephone-event"]
        chosen += events[:1]
        lines.append(f"m=audio {port} {stream.proto} {' '.join(chosen)}")
        for pt in chosen:
            name = stream.rtpmap.get(pt) or ("PCMU/8000" if pt == "0" else "PCMA/8000")
            lines.append(f"a=rtpmap:{pt} {name}")
            if pt in stream.fmtp:
                lines.append(f"a=fmtp:{pt} {stream.fmtp[pt]}")
        lines.append(f"a={_ANSWER_DIRECTION[stream.direction]}")
        accepted = True
    if not accepted:
        return None
    return ("\r\n".join(lines) + "\r\n").encode()


def build_offer(*, address: str, port: int, session_id: int, version: int = 1) -> bytes:
    """An offer for an INVITE that came without one (RFC 3261 §13.3.1.4: it goes in the 2xx).

    PCMU and PCMA (RFC 3551) and telephone-event (RFC 4733), sendrecv.
    """
    lines = _session_lines(address, session_id, version)
    lines += [
        f"m=audio {port} RTP/AVP 0 8 {TELEPHONE_EVENT_PT}",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        f"a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000",
        f"a=fmtp:{TELEPHONE_EVENT_PT} 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


class SdpDescriber:
    """The endpoint's session describer (`sipua.sip.endpoint.SessionDescriber`) over SDP.

    Args:
        rng: the source of o= session ids.
        port: the media port announced.
    """

    def __init__(self, rng: random.Random, port: int = MEDIA_PORT) -> None:
        self._rng = rng
        self._port = port

    def answer(self, offer: bytes, *, address: str) -> bytes:
        """The answer to `offer` (RFC 3264 §6).

        Raises:
            Refusal: 400 for an offer that does not parse (with a Warning naming the line),
                488 for one with no stream we take.
        """
        try:
            streams = parse_offer(offer)
        except SdpError as exc:
            raise Refusal(400, f"SDP offer: {exc}", ("Warning", warning(str(exc)))) from None
        session_id = self._rng.getrandbits(31)
        answer = answer_streams(streams, address=address, port=self._port, session_id=session_id)
        if answer is None:
            why = "no audio stream with PCMU or PCMA over RTP/AVP"
            raise Refusal(488, why, ("Warning", f'304 sipua "{why}"'))
        return answer

    def offer(self, *, address: str) -> bytes:
        """Our offer for an INVITE without one."""
        return build_offer(address=address, port=self._port, session_id=self._rng.getrandbits(31))
