"""A minimal SDP offer/answer (RFC 4566, RFC 3264) for auto-answered calls.

sipua does not carry media: it answers an offer with a valid SDP answer so that the call
completes, and sends no RTP. The answer accepts the first audio stream whose profile is plain
RTP/AVP and which offers a codec we name (PCMU or PCMA, RFC 3551 static types 0 and 8),
plus telephone-event (RFC 4733) when offered; every other stream is refused with port 0, as
RFC 3264 §6 requires (the answer has the same number of m= lines, in the same order). An offer
with no acceptable audio stream gets None, and the caller answers 488 Not Acceptable Here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

MAX_SDP_BYTES: Final = 16 * 1024
MAX_MEDIA_LINES: Final = 16
SUPPORTED_CODECS: Final = {"pcmu": 0, "pcma": 8}  # RFC 3551 static payload types
ACCEPTED_PROFILES: Final = ("RTP/AVP",)


class SdpError(ValueError):
    """The offer is not SDP we can read."""


@dataclass(slots=True)
class MediaOffer:
    """One m= section of an offer."""

    media: str
    port: int
    proto: str
    formats: list[str]
    rtpmap: dict[str, str] = field(default_factory=dict)  # payload type -> "name/rate[/ch]"
    fmtp: dict[str, str] = field(default_factory=dict)


def parse_offer(body: bytes) -> list[MediaOffer]:
    """Reads the m= sections of an SDP offer (only what an answer needs).

    Raises:
        SdpError: not SDP (no v=0 first, unreadable m= line, too large, too many streams).
    """
    if len(body) > MAX_SDP_BYTES:
        raise SdpError(f"SDP offer of {len(body)} bytes is over {MAX_SDP_BYTES}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("SDP offer is not UTF-8") from exc
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP offer does not start with v=0")
    media: list[MediaOffer] = []
    for line in lines[1:]:
        kind, _, value = line.partition("=")
        if kind == "m":
            if len(media) >= MAX_MEDIA_LINES:
                raise SdpError(f"SDP offer has more than {MAX_MEDIA_LINES} m= lines")
            parts = value.split()
            if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                raise SdpError(f"unreadable m= line: {line!r}")
            media.append(MediaOffer(parts[0], int(parts[1].split("/")[0]), parts[2], parts[3:]))
        elif kind == "a" and media:
            name, _, attr = value.partition(":")
            pt, _, rest = attr.partition(" ")
            if name == "rtpmap":
                media[-1].rtpmap[pt] = rest
            elif name == "fmtp":
                media[-1].fmtp[pt] = rest
    return media


def _codec_name(offer: MediaOffer, pt: str) -> str:
    mapped = offer.rtpmap.get(pt)
    if mapped:
        return mapped.split("/")[0].lower()
    return {"0": "pcmu", "8": "pcma"}.get(pt, "")


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
    streams = parse_offer(offer)
    family = "IP6" if ":" in address else "IP4"
    lines = [
        "v=0",
        f"o=sipua {session_id} {version} IN {family} {address}",
        "s=sipua",
        f"c=IN {family} {address}",
        "t=0 0",
    ]
    accepted = False
    for stream in streams:
        if accepted or stream.media != "audio" or stream.proto not in ACCEPTED_PROFILES:
            lines.append(f"m={stream.media} 0 {stream.proto} {' '.join(stream.formats[:1])}")
            continue
        codecs = [pt for pt in stream.formats if _codec_name(stream, pt) in SUPPORTED_CODECS]
        if not codecs or stream.port == 0:
            lines.append(f"m={stream.media} 0 {stream.proto} {' '.join(stream.formats[:1])}")
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
        lines.append("a=sendrecv")
        accepted = True
    if not accepted:
        return None
    return ("\r\n".join(lines) + "\r\n").encode()
