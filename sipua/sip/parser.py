"""`parse_message`: one complete SIP message in bytes -> `Request` or `Response`.

Theory of operation. The parser makes one pass over the header block with C-speed primitives
and does per-header Python work only where the RFC demands a check:

1. Find the end of the header block (the first CRLFCRLF). The block is decoded once, as UTF-8
   with `surrogateescape`, so any byte sequence survives a parse/serialize round trip.
2. Split off the start line and parse it (a 505 for a version we do not speak wins over
   anything in the headers).
3. Split the header block on CRLF and each line at its first ":" (`_header_fields`); a bare CR
   or LF, a line without a colon or a name that is not a token is an error, so a garbage line
   (RFC 4475's test.dat) is never skipped. A name spelling is checked once and then remembered
   (`_NAME_CACHE`). A line that starts with whitespace is a fold (RFC 3261 §7.3.1): all folds
   are undone with one substitution and the split starts again.
4. The key -> values index is built in the same loop; it becomes the `Headers` index.
5. Validate eagerly what RFC 4475 requires a receiver to reject: the start line (single SPs,
   version, 3-digit status), Content-Length (digits, one value, not more than the bytes present),
   single-valued headers appearing once, the mandatory headers present, CSeq range and method,
   and the syntax of Via, From, To and Contact. Via, From, To and CSeq are parsed here (one
   match each on the usual spelling, see `sipua.sip.fields`) and left in the Headers cache,
   so reading them later costs nothing; Contact is only validated, with one match per field,
   and built when read; everything else is parsed lazily.

The input is a whole message, as a datagram or as `StreamFramer` framed it. Without a
Content-Length the body is the rest of the input (RFC 3261 §18.3, datagram rule); with one, bytes
beyond it are ignored (RFC 4475 §3.1.1.8: extra octets in a datagram) and fewer bytes than it
names is an error (§3.1.2.2).

Limits: the whole input (`DEFAULT_MAX_MESSAGE_BYTES`, status 513), the number of header lines
(`MAX_HEADER_COUNT`) and the length of the header block. Every step is linear in the input.
Only `ParseError` escapes.
"""

from __future__ import annotations

import re
from typing import Final

from sipua.sip.abnf import (
    CALL_ID_RE,
    DATE_RE,
    FOLD_RE,
    HEADER_LINE_RE,
    METHOD_RE,
    REASON_PHRASE_RE,
    SIP_VERSION_RE,
    STATUS_CODE_RE,
    TOKEN_RE,
)
from sipua.sip.errors import ParseError
from sipua.sip.fields import (
    CONTACT_LIST_FAST_RE,
    NAME_ADDR_CHECK_RE,
    Via,
    _fast_via,
    parse_contacts,
    parse_cseq,
    parse_name_address,
    parse_uint,
    parse_via,
    via_fast_match,
)
from sipua.sip.headers import Headers, header_key
from sipua.sip.message import SIP_VERSION, Request, Response, new_request, new_response
from sipua.sip.uri import SipUri, Uri, parse_uri

#: Largest message accepted, in bytes (64 KiB; RFC 3261 §18.1.1 keeps UDP far below this).
DEFAULT_MAX_MESSAGE_BYTES: Final = 64 * 1024
#: Most header lines in one message.
MAX_HEADER_COUNT: Final = 256

# Headers that may appear at most once (RFC 3261 §7.3.1: only list headers may repeat).
# RFC 4475 §3.3.8 (multi01) repeats these; answering 400 is the RFC's suggestion.
_SINGLE_KEYS: Final = ("call-id", "from", "to", "cseq", "max-forwards", "content-type")
# Every request and response carries these (RFC 3261 §8.1.1); RFC 4475 §3.3.1 (insuf).
_REQUIRED: Final = (("call-id", "Call-ID"), ("from", "From"), ("to", "To"), ("via", "Via"))

# Methods that are tokens, so the token regex need not run for them.
_KNOWN_METHODS: Final = frozenset(
    {"ACK", "BYE", "CANCEL", "INFO", "INVITE", "MESSAGE", "NOTIFY", "OPTIONS", "PRACK"}
    | {"PUBLISH", "REFER", "REGISTER", "SUBSCRIBE", "UPDATE"}
)

# Header-name spellings as written before the colon ("Via", "v", "Subject ") that have passed
# the token check -> (name without trailing whitespace, lookup key). Bounded: a peer inventing
# names only makes its own lines take the slow check.
_NAME_CACHE: dict[str, tuple[str, str]] = {}
_NAME_CACHE_MAX: Final = 4096


def parse_message(data: bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Request | Response:
    """Parse one complete SIP message.

    Args:
        data: the message bytes (a datagram, or one message framed by `StreamFramer`).
            CRLFs before the start line are skipped (RFC 3261 §7.5).
        max_bytes: reject larger input with status hint 513.

    Returns:
        The parsed `Request` or `Response`.

    Raises:
        ParseError: the bytes are not an acceptable SIP message; `status_hint` is 400, 505
            (unsupported SIP version) or 513 (too large).
    """
    if len(data) > max_bytes:
        raise ParseError(
            f"message of {len(data)} bytes exceeds the {max_bytes}-byte limit", status_hint=513
        )
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        raise ParseError("no empty line ends the header block (RFC 3261 §7)")
    head = data[start:end].decode("utf-8", "surrogateescape")
    first, _, block = head.partition("\r\n")
    if block[:1] == " " or block[:1] == "\t":
        # The first header line continues the start line (RFC 3261 §7.3.1 folding); other
        # folds are found, and undone, by _header_fields.
        first, _, block = FOLD_RE.sub(" ", head).partition("\r\n")

    # The start line first: a version we do not speak is a 505 whatever the headers hold.
    method: str | None = None
    uri: Uri | None = None
    status = 0
    reason = ""
    if first.startswith("SIP/"):
        status, reason = _status_line(first)
    else:
        method, uri = _request_line(first)

    items, index, repeated = _header_fields(block)
    headers = Headers._trusted(items, index)
    body_start = end + 4
    lengths = index.get("content-length")
    if lengths is None:
        # Datagram rule (RFC 3261 §18.3): no Content-Length, the body runs to the end.
        body = data[body_start:]
    elif (
        len(lengths) == 1 and len(lengths[0]) <= 6 and lengths[0].isascii() and lengths[0].isdigit()
    ):
        # The usual case, inline; _body has the general rules and their errors.
        length = int(lengths[0])
        if length > len(data) - body_start:
            _body(data, body_start, index)
        body = data[body_start : body_start + length]
    else:
        body = _body(data, body_start, index)
    if repeated:
        for key in _SINGLE_KEYS:
            values = index.get(key)
            if values is not None and len(values) > 1:
                raise ParseError(f"header {key!r} appears {len(values)} times; it may appear once")
    from_values = index.get("from")
    to_values = index.get("to")
    via_values = index.get("via")
    cseq_values = index.get("cseq")
    if (
        from_values is None
        or to_values is None
        or via_values is None
        or cseq_values is None
        or "call-id" not in index
    ):
        for key, name in _REQUIRED:
            if key not in index:
                raise ParseError(
                    f"missing {name} header (required in every message, RFC 3261 §8.1.1)"
                )
        raise ParseError("missing CSeq header (required in every message, RFC 3261 §8.1.1)")
    cseq = parse_cseq(cseq_values[0])

    cache = headers._cache
    cache["cseq"] = cseq
    # Every Via is validated here; on the usual spelling by one match, kept so that the Via
    # objects are built from it when read (a UA reads the top one of a response only).
    matches: list[re.Match[str]] = []
    for value in via_values:
        match = via_fast_match(value)
        if match is None:
            cache["via"] = _all_vias(via_values)  # raises if one is malformed
            break
        matches.append(match)
    else:
        cache["via-matches"] = matches
    # From and To are validated with one C-speed match each and built when read (a UA reads
    # them for requests, rarely for responses); a value the fast grammar does not take is
    # parsed for real here, raising if malformed, and the result is kept.
    from_value = from_values[0]
    if NAME_ADDR_CHECK_RE.fullmatch(from_value) is None:
        cache["from"] = parse_name_address(from_value, "From")
    to_value = to_values[0]
    if NAME_ADDR_CHECK_RE.fullmatch(to_value) is None:
        cache["to"] = parse_name_address(to_value, "To")
    contact_values = index.get("contact")
    if contact_values is not None:
        # Validate with one C-speed match per field; the Contact objects are built only if
        # `contacts` is read. A value the fast grammar does not take is parsed for real here
        # (raising if malformed), and then the result is kept, as before.
        for value in contact_values:
            if CONTACT_LIST_FAST_RE.fullmatch(value) is None:
                contacts = []
                for value in contact_values:
                    contacts += parse_contacts(value)
                cache["contact"] = contacts
                break
    max_forwards = index.get("max-forwards")
    if max_forwards is not None:
        hops = max_forwards[0]
        if not (len(hops) <= 3 and hops.isascii() and hops.isdigit() and int(hops) <= 255):
            parse_uint(hops, "Max-Forwards", 255)
    call_id = index["call-id"][0]
    if CALL_ID_RE.fullmatch(call_id) is None:
        raise ParseError(f"Call-ID {call_id[:60]!r} is not 'word[@word]' (RFC 3261 §25.1)")
    date = index.get("date")
    if date is not None and DATE_RE.fullmatch(date[0]) is None:
        # RFC 4475 §3.1.2.12: a Date not in RFC 1123 GMT form is a 400.
        raise ParseError(f"Date {date[0][:60]!r} is not an RFC 1123 date in GMT (§20.17)")

    if method is None or uri is None:
        return new_response(status, reason, headers, body)
    if cseq.method != method:
        raise ParseError(
            f"CSeq method {cseq.method!r} does not match the request method "
            f"{method!r} (RFC 3261 §8.1.1.5)"
        )
    return new_request(method, uri, headers, body)


def _all_vias(values: list[str]) -> list[Via]:
    vias: list[Via] = []
    for value in values:
        via = _fast_via(value)
        if via is None:
            vias += parse_via(value)
        else:
            vias.append(via)
    return vias


def _header_fields(block: str) -> tuple[list[tuple[str, str]], dict[str, list[str]], bool]:
    """Split the unfolded header block into fields, the key -> values index, and whether any
    key appears more than once.

    One `split` on CRLF and one `partition` per line; a line's name is checked against the
    token grammar only the first time that spelling is seen (`_NAME_CACHE`). A line that is
    not `token ":" value` (RFC 4475's test.dat), or a bare CR or LF anywhere, is an error.
    """
    if not block:
        return [], {}, False
    lines = block.split("\r\n")
    count = len(lines)
    if block.count("\r") != count - 1 or block.count("\n") != count - 1:
        unfolded = FOLD_RE.sub(" ", block)
        raise ParseError(f"malformed header line {_bad_line(unfolded)!r} (expected 'Name: value')")
    if count > MAX_HEADER_COUNT:
        if "\r\n " in block or "\r\n\t" in block:
            return _header_fields(FOLD_RE.sub(" ", block))
        _check_lines(lines, block)
        raise ParseError(f"{count} header lines exceed the limit of {MAX_HEADER_COUNT}")
    names = _NAME_CACHE
    items: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    repeated = False
    for line in lines:
        raw, colon, value = line.partition(":")
        known = names.get(raw)
        if known is None or not colon:
            if line[0] == " " or line[0] == "\t":
                # A folded line (RFC 3261 §7.3.1): undo every fold, once, and start again.
                return _header_fields(FOLD_RE.sub(" ", block))
            known = _checked_name(raw, colon, block)
        name, key = known
        value = value.strip(" \t")
        items.append((name, value))
        if key in index:
            index[key].append(value)
            repeated = True
        else:
            index[key] = [value]
    return items, index, repeated


def _checked_name(raw: str, colon: str, block: str) -> tuple[str, str]:
    # header-name = token ; HCOLON = *( SP / HTAB ) ":" SWS (RFC 3261 §7.3.1)
    name = raw.rstrip(" \t")
    if not colon or TOKEN_RE.fullmatch(name) is None:
        unfolded = FOLD_RE.sub(" ", block)  # name the whole logical line
        raise ParseError(f"malformed header line {_bad_line(unfolded)!r} (expected 'Name: value')")
    known = (name, header_key(name))
    if len(_NAME_CACHE) < _NAME_CACHE_MAX:
        _NAME_CACHE[raw] = known
    return known


def _check_lines(lines: list[str], block: str) -> None:
    # Error path only (too many lines): a malformed line is reported first, as it would be
    # with fewer lines.
    for line in lines:
        raw, colon, _ = line.partition(":")
        if raw not in _NAME_CACHE or not colon:
            _checked_name(raw, colon, block)


def _body(data: bytes, body_start: int, index: dict[str, list[str]]) -> bytes:
    lengths = index["content-length"]
    if len(lengths) > 1 and len(set(lengths)) > 1:
        raise ParseError(f"conflicting Content-Length values {lengths[:4]} (RFC 4475 §3.3.9)")
    length = parse_uint(lengths[0], "Content-Length", DEFAULT_MAX_MESSAGE_BYTES * 16)
    available = len(data) - body_start
    if length > available:
        raise ParseError(
            f"Content-Length {length} is larger than the {available} body bytes received"
        )
    return data[body_start : body_start + length]


def _status_line(first: str) -> tuple[int, str]:
    version, _, rest = first.partition(" ")
    if version != SIP_VERSION:
        _check_version(version)
    code, sp, reason = rest.partition(" ")
    if STATUS_CODE_RE.fullmatch(code) is None:
        raise ParseError(f"status code {code[:20]!r} is not 3 digits in 100-699")
    # Printable ASCII has no control characters: the regex is needed only for the rest.
    if (
        sp
        and not (reason.isascii() and reason.isprintable())
        and REASON_PHRASE_RE.fullmatch(reason) is None
    ):
        raise ParseError(f"reason phrase {reason[:100]!r} contains control characters")
    return int(code), reason


def _request_line(first: str) -> tuple[str, Uri]:
    parts = first.split(" ")
    if len(parts) != 3:
        raise ParseError(
            f"request line {first[:200]!r} is not 'Method SP Request-URI SP SIP/2.0' "
            "(single spaces, no trailing whitespace)"
        )
    method, uri_text, version = parts
    if method not in _KNOWN_METHODS and METHOD_RE.fullmatch(method) is None:
        raise ParseError(f"method {method[:60]!r} is not a token")
    if version != SIP_VERSION:
        _check_version(version)
    uri = parse_uri(uri_text)
    if isinstance(uri, SipUri) and uri.headers:
        # RFC 3261 §19.1.1 table 1: headers are not allowed in a Request-URI (RFC 4475
        # §3.1.2.11). Rejecting is safer than ignoring them.
        raise ParseError(f"Request-URI {uri_text[:200]!r} carries URI headers ('?...')")
    return method, uri


def _check_version(version: str) -> None:
    if version != SIP_VERSION:
        if SIP_VERSION_RE.fullmatch(version) is not None:
            raise ParseError(f"SIP version {version!r} is not supported", status_hint=505)
        raise ParseError(f"expected SIP version 'SIP/2.0', got {version[:40]!r}")


def _bad_line(block: str) -> str:
    # Error path only: find the first line the header regex rejects, to name it.
    for line in block.split("\r\n"):
        if HEADER_LINE_RE.fullmatch(line) is None:
            return line[:200]
    return block[:200]  # pragma: no cover - the count check guarantees a bad line
