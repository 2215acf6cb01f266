"""SDP for audio calls (RFC 4566, RFC 3264 offer/answer): reading a peer's SDP, writing ours.

`parse_offer` reads an offer or an answer: per m= section the media, port, profile, formats,
rtpmap/fmtp, direction, connection address (the stream's c= or the session's), ptime, rtcp-mux
(RFC 5761), a=rtcp's port and address (RFC 3605) and SDES a=crypto lines (RFC 4568 §9.1, kept
as written: the SRTP module decodes the keys). It checks the structure it relies on (every
line ``<letter>=<value>``, ``v=0`` first, m=, rtpmap, rtcp and crypto fields well formed,
numbers as ASCII digits in range, c= with three fields) and raises only `SdpError`, naming the
line that is wrong. Sizes, lines, streams, formats and crypto lines are bounded.

`answer_streams` answers one audio stream (the first acceptable plain RTP/AVP one, or the one
the caller chose, e.g. an RTP/SAVP stream with the crypto line it picked) with PCMU or PCMA
(RFC 3551 static types 0 and 8), plus telephone-event (RFC 4733) when offered; every other
stream is refused with port 0, as RFC 3264 §6 requires (the answer has the same number of m=
lines, in the same order). No acceptable stream gives None, and the caller answers 488 Not
Acceptable Here. `build_offer` writes our offer (RTP/AVP, or RTP/SAVP with crypto lines).
Which profile and keys to use is the SRTP policy's decision (`sipua.media.negotiation`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from sipua.media.g711 import PAYLOAD_TYPES

MAX_SDP_BYTES: Final = 16 * 1024
MAX_SDP_LINES: Final = 512
MAX_MEDIA_LINES: Final = 16
MAX_FORMATS: Final = 64
MAX_CRYPTO_LINES: Final = 16
MAX_PORT: Final = 65535
#: The codecs sipua plays, by their RFC 3551 static payload type as SDP writes it.
STATIC_CODECS: Final = {str(pt): codec for codec, pt in PAYLOAD_TYPES.items()}
SUPPORTED_CODECS: Final = frozenset(PAYLOAD_TYPES)
ACCEPTED_PROFILES: Final = ("RTP/AVP",)
SRTP_PROFILE: Final = "RTP/SAVP"
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
_CRYPTO_RE: Final = re.compile(
    r"(?P<tag>[0-9]{1,9}) (?P<suite>[A-Za-z0-9_]{1,64}) (?P<key>[!-~]{1,512})"
    r"(?: (?P<params>[ -~]{1,512}))?",
    re.ASCII,
)
_ENCODING_RE: Final = re.compile(r"[!#-'*+\-.0-9A-Z^-~]{1,64}/[0-9]{1,9}(/[0-9]{1,3})?", re.ASCII)


# RFC 4568 §9.2 SDES key parameter: "inline:" key||salt in base64, then optional
# "|lifetime|MKI:length" (not secret, kept).
_SDES_KEY: Final = re.compile(r"(inline:)[A-Za-z0-9+/=]+", re.I)


def redact_sdes_keys(text: str) -> str:
    """`text` with the key of every `inline:` SDES key parameter replaced by `<redacted>`
    (SRTP master keys travel in SDP and must never reach a log or an error message)."""
    if "inline:" not in text.lower():
        return text
    return _SDES_KEY.sub(lambda m: m[1] + "<redacted>", text)


class SdpError(ValueError):
    """The offer is not SDP we can read; the message names the offending line (with any SDES
    key in what it quotes redacted: the message goes into a 488's Warning and the log)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact_sdes_keys(message))


@dataclass(frozen=True, slots=True)
class CryptoLine:
    """An SDES a=crypto attribute (RFC 4568 §9.1). `key_params` holds the key: never log it."""

    tag: int
    suite: str
    key_params: str
    session_params: str = ""

    def render(self) -> str:
        params = f" {self.session_params}" if self.session_params else ""
        return f"a=crypto:{self.tag} {self.suite} {self.key_params}{params}"

    def __repr__(self) -> str:
        return f"CryptoLine(tag={self.tag}, suite={self.suite!r}, key_params='<redacted>')"


@dataclass(slots=True)
class MediaOffer:
    """One m= section of an offer (or of an answer)."""

    media: str
    port: int
    proto: str
    formats: list[str]
    rtpmap: dict[str, str] = field(default_factory=dict)  # payload type -> "name/rate[/ch]"
    fmtp: dict[str, str] = field(default_factory=dict)
    direction: str = "sendrecv"
    #: The connection address for this stream (its own c=, else the session's), None if none.
    address: str | None = None
    crypto: list[CryptoLine] = field(default_factory=list)
    rtcp_mux: bool = False
    #: a=rtcp (RFC 3605): the RTCP port when it is not the RTP port + 1, and its own address.
    rtcp_port: int | None = None
    rtcp_address: str | None = None
    ptime: int | None = None


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


def _connection_line(value: str, line: str, what: str = "c= line") -> str:
    parts = value.split(" ")
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6") or not parts[2]:
        raise SdpError(f"{what} {_quote(line)} is not 'IN IP4|IP6 <address>'")
    return parts[2].split("/")[0]  # a multicast TTL/count suffix is not part of the address


def _attribute(stream: MediaOffer, value: str, line: str) -> None:
    name, _, attr = value.partition(":")
    if name in _ANSWER_DIRECTION:
        stream.direction = name
        return
    if name == "rtcp-mux":
        stream.rtcp_mux = True
        return
    if name == "rtcp":
        port, _, connection = attr.partition(" ")
        if _DIGITS_RE.fullmatch(port) is None or not 1 <= int(port) <= MAX_PORT:
            raise SdpError(f"a=rtcp line {_quote(line)} has port {port[:12]!r}, not 1-{MAX_PORT}")
        stream.rtcp_port = int(port)
        if connection:
            stream.rtcp_address = _connection_line(connection, line, "a=rtcp address in")
        return
    if name == "ptime":
        if _DIGITS_RE.fullmatch(attr) is None or not 1 <= int(attr) <= 1000:
            raise SdpError(f"a=ptime line {_quote(line)} is not 1-1000 milliseconds")
        stream.ptime = int(attr)
        return
    if name == "crypto":
        match = _CRYPTO_RE.fullmatch(attr)
        if match is None:
            raise SdpError("a=crypto line is not '<tag> <suite> <key-params> [<params>]'")
        if len(stream.crypto) >= MAX_CRYPTO_LINES:
            raise SdpError(f"m= section has more than {MAX_CRYPTO_LINES} a=crypto lines")
        stream.crypto.append(
            CryptoLine(int(match["tag"]), match["suite"], match["key"], match["params"] or "")
        )
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
    session_address: str | None = None
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
            stream.address = session_address
            media.append(stream)
        elif kind == "c":
            address = _connection_line(value, line)
            if media:
                media[-1].address = address
            else:
                session_address = address
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
    return STATIC_CODECS.get(pt, "")


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
    """Builds the plain RTP/AVP answer to `offer`, or None when no stream is acceptable.

    Args:
        offer: the offer body.
        address: our connection address (an IPv4 or IPv6 literal) for c=.
        port: the media port we announce.
        session_id: the o= session id (from the injected random source).
        version: the o= version.

    Raises:
        SdpError: the offer is not readable SDP.
    """
    return answer_streams(
        parse_offer(offer), address=address, port=port, session_id=session_id, version=version
    )


def acceptable_audio(streams: list[MediaOffer], profiles: tuple[str, ...]) -> list[int]:
    """The indexes of the audio streams we could accept: a profile in `profiles`, a port, and a
    codec we speak."""
    return [
        index
        for index, stream in enumerate(streams)
        if stream.media == "audio"
        and stream.proto in profiles
        and stream.port != 0
        and any(_codec_name(stream, pt) in SUPPORTED_CODECS for pt in stream.formats)
    ]


def chosen_formats(stream: MediaOffer) -> tuple[str, str | None]:
    """The codec payload type we take from a stream (its first PCMU/PCMA) and its
    telephone-event payload type, if offered.

    Raises:
        SdpError: the stream offers neither PCMU nor PCMA.
    """
    codecs = [pt for pt in stream.formats if _codec_name(stream, pt) in SUPPORTED_CODECS]
    if not codecs:
        raise SdpError(f"m={stream.media} {stream.port} offers neither PCMU nor PCMA")
    events = [pt for pt in stream.formats if _codec_name(stream, pt) == "telephone-event"]
    return codecs[0], (events[0] if events else None)


def codec_of(stream: MediaOffer, pt: str) -> str:
    """The lower-case encoding name of payload type `pt` in `stream` ("pcmu", "pcma"...)."""
    return _codec_name(stream, pt)


def answer_streams(
    streams: list[MediaOffer],
    *,
    address: str,
    port: int,
    session_id: int,
    version: int = 1,
    chosen: int | None = None,
    crypto: CryptoLine | None = None,
    rtcp_mux: bool = False,
) -> bytes | None:
    """The answer to an offer already read by `parse_offer` (see `build_answer`).

    Args:
        chosen: the index of the stream to accept (from `acceptable_audio`); None takes the
            first acceptable plain RTP/AVP stream.
        crypto: our a=crypto line for the accepted stream (an RTP/SAVP answer).
        rtcp_mux: answer a=rtcp-mux (only when the offer had it, RFC 5761 §5.1.1).
    """
    if chosen is None:
        candidates = acceptable_audio(streams, ACCEPTED_PROFILES)
        if not candidates:
            return None
        chosen = candidates[0]
    lines = _session_lines(address, session_id, version)
    for index, stream in enumerate(streams):
        if index != chosen:
            lines.append(f"m={stream.media} 0 {stream.proto} {' '.join(stream.formats[:1])}")
            continue
        codec, event = chosen_formats(stream)
        formats = [codec] if event is None else [codec, event]
        lines.append(f"m=audio {port} {stream.proto} {' '.join(formats)}")
        for pt in formats:
            name = stream.rtpmap.get(pt) or f"{_codec_name(stream, pt).upper()}/8000"
            lines.append(f"a=rtpmap:{pt} {name}")
            if pt in stream.fmtp:
                lines.append(f"a=fmtp:{pt} {stream.fmtp[pt]}")
        lines.append("a=ptime:20")
        if rtcp_mux:
            lines.append("a=rtcp-mux")
        if crypto is not None:
            lines.append(crypto.render())
        lines.append(f"a={_ANSWER_DIRECTION[stream.direction]}")
    return ("\r\n".join(lines) + "\r\n").encode()


def build_offer(
    *,
    address: str,
    port: int,
    session_id: int,
    version: int = 1,
    profile: str = "RTP/AVP",
    crypto: tuple[CryptoLine, ...] = (),
    rtcp_mux: bool = False,
) -> bytes:
    """Our offer: PCMU and PCMA (RFC 3551) and telephone-event (RFC 4733), ptime 20, sendrecv.

    `profile` RTP/SAVP with `crypto` lines offers SRTP only (RFC 4568 §3.1.4); RTP/AVP with
    crypto lines offers SRTP to an answerer that takes it and plain RTP to one that ignores them.
    An INVITE that came without an offer gets one in its 2xx (RFC 3261 §13.3.1.4), answered in
    the ACK.
    """
    lines = _session_lines(address, session_id, version)
    lines += [
        f"m=audio {port} {profile} 0 8 {TELEPHONE_EVENT_PT}",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        f"a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000",
        f"a=fmtp:{TELEPHONE_EVENT_PT} 0-16",
        "a=ptime:20",
    ]
    if rtcp_mux:
        lines.append("a=rtcp-mux")
    lines += [line.render() for line in crypto]
    lines.append("a=sendrecv")
    return ("\r\n".join(lines) + "\r\n").encode()
