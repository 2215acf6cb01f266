"""Answering a request that cannot be parsed: recover just enough of it to say why.

Theory of operation. When `parse_message` refuses a framed request (a bad URI, a garbled
header, an unsupported SIP version) the UAS should still answer it: RFC 3261 §8.2 has a UAS
reject what it cannot process with a 4xx (or 505 for the version, §8.2.2 and §21.5.6), and a
response is what tells the peer's transaction to stop. A response needs the request's Via,
From, To, Call-ID and CSeq (§8.2.6.2), and nothing else.

`error_response` rebuilds a *minimal* request from the raw head: the method, a placeholder
Request-URI (a response never echoes the URI) and only those five header fields, unfolded,
then runs the ordinary parser and `make_response` on it. Whatever the parser accepts there is
safe to copy into a response; if it refuses, or the head is a response, an ACK (never
answered, §17.2.3) or has no usable method, there is no response and the message is just
dropped. A ``Warning: 399`` (§20.43) carries the reason, reduced to printable ASCII and
bounded, so the peer's operator can see what was wrong.

Everything is bounded: only the first `MAX_HEAD_BYTES` are looked at and at most
`MAX_RECOVERED_FIELDS` header lines are kept.
"""

from __future__ import annotations

import re
from typing import Final

from sipua.sip.errors import ProtocolError
from sipua.sip.message import Request, Response, make_response
from sipua.sip.parser import parse_message

#: Bytes of a refused message's head that are examined.
MAX_HEAD_BYTES: Final = 16 * 1024
#: Header lines kept from the head (Via may repeat; the rest appear once).
MAX_RECOVERED_FIELDS: Final = 32
#: Characters of the reason copied into the Warning header.
MAX_WARNING_CHARS: Final = 160
#: Warning agent (RFC 3261 §20.43 allows a pseudonym).
WARN_AGENT: Final = "sipua"

# Full and compact names (RFC 3261 §7.3.3) of the fields a response copies (§8.2.6.2).
_COPIED: Final = {
    "via": "Via",
    "v": "Via",
    "from": "From",
    "f": "From",
    "to": "To",
    "t": "To",
    "call-id": "Call-ID",
    "i": "Call-ID",
    "cseq": "CSeq",
}
_METHOD_RE: Final = re.compile(r"[A-Za-z0-9.!%*_+`'~-]{1,32}")  # token, bounded (§25.1)
_UNPRINTABLE_RE: Final = re.compile(r"[^\x20-\x7e]+")


def error_response(data: bytes, status: int, reason: str, *, to_tag: str) -> Response | None:
    """The error response to a request that did not parse, when one can be built.

    Args:
        data: the refused message's bytes (at least its head).
        status: the status to answer with (the `ParseError`'s `status_hint`: 400, 505, 513...).
        reason: what was wrong, for the Warning header (the parse error's message).
        to_tag: our To tag (a UAS adds one to a final response, §8.2.6.2).

    Returns:
        The response, or None: the message is a response or an ACK, or its Via, From, To,
        Call-ID or CSeq cannot be recovered (then nothing valid can answer it).
    """
    head = data[:MAX_HEAD_BYTES].split(b"\r\n\r\n", 1)[0]
    lines = _unfold(head.decode("utf-8", "replace").split("\r\n"))
    if not lines:
        return None
    method = lines[0].split(" ", 1)[0]
    if not _METHOD_RE.fullmatch(method) or method == "ACK" or lines[0].startswith("SIP/"):
        return None
    kept: list[str] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        canonical = _COPIED.get(name.strip().lower())
        if colon and canonical is not None:
            kept.append(f"{canonical}: {value.strip()}")
            if len(kept) >= MAX_RECOVERED_FIELDS:
                break
    minimal = "\r\n".join(
        [f"{method} sip:invalid SIP/2.0", *kept, "Content-Length: 0", "", ""]
    ).encode()
    try:
        request = parse_message(minimal)
        if not isinstance(request, Request) or request.cseq.method != method:
            return None
        # Parse every copied field now, so a garbled one means no response rather than a
        # response that echoes garbage.
        _ = (request.top_via, request.from_, request.to, request.call_id)
        response = make_response(request, status, to_tag=to_tag)
    except (ProtocolError, ValueError):
        return None
    response.headers.add("Warning", warning(reason))
    return response


def warning(reason: str) -> str:
    """A ``Warning: 399`` value (RFC 3261 §20.43) carrying `reason`, safe and bounded."""
    text = _UNPRINTABLE_RE.sub("?", reason)[:MAX_WARNING_CHARS]
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'399 {WARN_AGENT} "{text}"'


def _unfold(lines: list[str]) -> list[str]:
    """Joins folded continuation lines (RFC 3261 §7.3.1) to the line they continue."""
    unfolded: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        else:
            unfolded.append(line)
    return unfolded
