"""Answering a request that cannot be parsed: recover just enough of it to say why.

Theory of operation. When `parse_message` refuses a framed request (a bad URI, a garbled
header, an unsupported SIP version) the UAS should still answer it: RFC 3261 §8.2 has a UAS
reject what it cannot process with a 4xx (or 505 for the version, §8.2.2 and §21.5.6), and a
response is what tells the peer's transaction to stop. On a stream the response goes back on
the connection the request came in on (§18.2.2), so it reaches the peer even when Via is
garbled; RFC 4475 asks for exactly these answers (badinv01, badaspec, quotbal, scalar02,
mismatch01/02: 400; badvers: 505; insuf: 400).

`error_response` therefore builds the response from the raw head, without parsing the fields
it copies (§8.2.6.2): every Via, From, To, Call-ID and CSeq line is copied verbatim, in order,
unfolded, whatever it holds; a To without a tag gets ours. What a field lacks is left out
rather than invented. There is no response when the message is a response, an ACK (never
answered, §17.2.3, judged by the request line or the CSeq method), or lacks Via or CSeq: a
response without Via is discarded by whoever receives it (§18.1.2), and one without CSeq
matches no client transaction (§17.1.3 matches on the branch and the CSeq method). A
``Warning: 399`` (§20.43) carries the reason, reduced to printable ASCII and bounded, so the
peer's operator can see what was wrong.

Everything is bounded: only the first `MAX_HEAD_BYTES` are looked at, at most
`MAX_RECOVERED_VIAS` Via lines and one of each other copied field are kept, and each copied
value is cut at `MAX_COPIED_VALUE_CHARS`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from sipua.sip.headers import Headers
from sipua.sip.message import Response, reason_phrase

#: Bytes of a refused message's head that are examined.
MAX_HEAD_BYTES: Final = 16 * 1024
#: Via lines kept from the head; From, To, Call-ID and CSeq are kept once each besides, so a
#: flood of Vias cannot crowd them out.
MAX_RECOVERED_VIAS: Final = 28
#: Characters of one copied header value.
MAX_COPIED_VALUE_CHARS: Final = 2048
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
_SINGLE: Final = frozenset({"From", "To", "Call-ID", "CSeq"})
_TAG_RE: Final = re.compile(r";\s*tag\s*=", re.IGNORECASE)
_CSEQ_METHOD_RE: Final = re.compile(r"\s*[0-9]*\s+(\S+)\s*")
_BRANCH_RE: Final = re.compile(r";\s*branch\s*=\s*([^;\s,]+)", re.IGNORECASE)
_UNPRINTABLE_RE: Final = re.compile(r"[^\x20-\x7e]+")
_LINE_BREAK_RE: Final = re.compile(r"[\r\n]")


def error_response(data: bytes, status: int, reason: str, *, to_tag: str) -> Response | None:
    """The error response to a request that did not parse, when one can be built.

    Args:
        data: the refused message's bytes (at least its head).
        status: the status to answer with (the `ParseError`'s `status_hint`: 400, 505, 513...).
        reason: what was wrong, for the Warning header (the parse error's message).
        to_tag: our To tag (a UAS adds one to a final response, §8.2.6.2).

    Returns:
        The response, or None: the message is a response or an ACK, or it lacks Via or CSeq
        (then no peer could match an answer to its request).
    """
    lines = _head(data)
    if not lines:
        return None
    request_line = lines[0].lstrip()
    if request_line.startswith("SIP/") or request_line.split(" ", 1)[0] == "ACK":
        return None
    kept: list[tuple[str, str]] = []
    seen: set[str] = set()
    vias = 0
    for canonical, value in _fields(lines[1:]):
        if canonical in seen:
            continue
        if canonical in _SINGLE:
            seen.add(canonical)
        else:
            vias += 1
            if vias > MAX_RECOVERED_VIAS:
                continue
        # A bare CR or LF inside a line would end the copied field early: make it a space.
        value = _LINE_BREAK_RE.sub(" ", value.strip()[:MAX_COPIED_VALUE_CHARS])
        if canonical == "To" and _TAG_RE.search(value) is None:
            value = f"{value};tag={to_tag}"
        if canonical == "CSeq" and _cseq_method(value) == "ACK":
            return None
        kept.append((canonical, value))
    if not vias or "CSeq" not in seen:
        return None  # discarded without Via (§18.1.2), unmatched without CSeq (§17.1.3)
    response = Response(status, reason_phrase(status), Headers(kept))
    response.headers.add("Warning", warning(reason))
    return response


def unreadable_response_key(data: bytes) -> tuple[str, str] | None:
    """The top Via's branch and the CSeq method of a response that did not parse, read from
    its raw head as `error_response` reads a request's, so that the client transaction it
    answers can end at once instead of at its timeout (the response itself is discarded,
    RFC 3261 §18.1.2). None for a request, or when either is missing."""
    lines = _head(data)
    if not lines or not lines[0].lstrip().startswith("SIP/"):
        return None
    branch: str | None = None
    method: str | None = None
    for canonical, value in _fields(lines[1:]):
        if canonical == "Via" and branch is None:
            match = _BRANCH_RE.search(value.split(",", 1)[0])  # the top Via of the field
            if match is None:
                return None  # the top Via has no branch: it matches no transaction of ours
            branch = match.group(1)
        elif canonical == "CSeq" and method is None:
            method = _cseq_method(value.strip())
    if branch is None or method is None:
        return None
    return branch, method


def _head(data: bytes) -> list[str]:
    """The unfolded lines of a refused message's head, its first `MAX_HEAD_BYTES` at most."""
    head = data[:MAX_HEAD_BYTES].split(b"\r\n\r\n", 1)[0]
    # surrogateescape: copied values go back byte for byte (the serializer's inverse).
    return _unfold(head.decode("utf-8", "surrogateescape").split("\r\n"))


def _fields(lines: list[str]) -> Iterator[tuple[str, str]]:
    """(canonical name, raw value) of every Via, From, To, Call-ID and CSeq line, in order."""
    for line in lines:
        name, colon, value = line.partition(":")
        canonical = _COPIED.get(name.strip().lower())
        if colon and canonical is not None:
            yield canonical, value


def _cseq_method(value: str) -> str | None:
    m = _CSEQ_METHOD_RE.fullmatch(value)
    return m.group(1) if m else None


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
