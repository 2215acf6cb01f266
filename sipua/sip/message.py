"""SIP requests and responses, and `make_response` (RFC 3261 §8.2.6).

Design choice: `Request` and `Response` are frozen, slotted dataclasses, so a message cannot
change its start line under a transaction that already keyed on it; but the `Headers` inside
are mutable, which is how a UA builds and edits a message before sending it. To change the
method, URI, status or body, use `dataclasses.replace(msg, ...)` (it shares the Headers object;
pass `headers=msg.headers.copy()` to get an independent one).

Typed accessors (`call_id`, `cseq`, `vias`, `from_`, ...) parse the header on first use and cache
the result in the Headers (the cache is dropped whenever the headers change). They raise
`ParseError` when the header is present but malformed, and also when a header that every
message must carry (Call-ID, CSeq, From, To, Via: RFC 3261 §8.1.1) is missing.

Equality compares the start line, the headers in order (names compared by key, so "v" equals
"Via") and the body, but not Content-Length fields: Content-Length is framing, recomputed from
the body by `serialize`, so a message built without one equals its own parsed serialization.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sipua.sip.errors import ParseError
from sipua.sip.fields import (
    MAX_DELTA_SECONDS,
    Contact,
    CSeq,
    NameAddress,
    Via,
    parse_contacts,
    parse_cseq,
    parse_name_address,
    parse_name_address_list,
    parse_uint,
    parse_via,
    via_of_match,
)
from sipua.sip.headers import Headers
from sipua.sip.uri import Uri, slot_setters

SIP_VERSION: Final = "SIP/2.0"

#: Reason phrases (RFC 3261 §21 and the extensions a UA meets).
REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    430: "Flow Failed",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}

_CLASS_PHRASES: Final = {
    1: "Provisional",
    2: "Success",
    3: "Redirection",
    4: "Client Error",
    5: "Server Error",
    6: "Global Failure",
}


def reason_phrase(status: int) -> str:
    """The standard reason phrase for a status code (a class phrase for unknown codes)."""
    return REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Unknown")


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise ParseError(f"missing {name} header (required in every message, RFC 3261 §8.1.1)")
    return value


def _vias(headers: Headers) -> list[Via]:
    fields = headers.get_fields("Via")
    if not fields:
        raise ParseError("missing Via header (required in every message, RFC 3261 §8.1.1)")
    if len(fields) == 1:
        return parse_via(fields[0])
    vias: list[Via] = []
    for value in fields:
        vias += parse_via(value)
    return vias


def _contacts(headers: Headers) -> list[Contact]:
    contacts: list[Contact] = []
    for value in headers.get_fields("Contact"):
        contacts += parse_contacts(value)
    if len(contacts) > 1 and any(c.is_star for c in contacts):
        raise ParseError("Contact '*' must be the only contact (RFC 3261 §10.2.2)")
    return contacts


def _optional_uint(headers: Headers, name: str, maximum: int) -> int | None:
    value = headers.get(name)
    return None if value is None else parse_uint(value, name, maximum)


def _address_list(headers: Headers, name: str) -> list[NameAddress]:
    out: list[NameAddress] = []
    for value in headers.get_fields(name):
        out += parse_name_address_list(value, name)
    return out


class _Accessors:
    """Typed header accessors shared by Request and Response."""

    __slots__ = ()
    headers: Headers

    @property
    def call_id(self) -> str:
        """The Call-ID value.

        Raises:
            ParseError: missing.
        """
        values = self.headers._get_index().get("call-id")
        if not values:
            return _required(self.headers, "Call-ID")  # raises
        return values[0]

    @property
    def cseq(self) -> CSeq:
        """The parsed CSeq.

        Raises:
            ParseError: missing or malformed.
        """
        # The parser leaves the typed value in the cache: read it without a call first.
        value: CSeq | None = self.headers._cache.get("cseq")  # type: ignore[assignment]
        if value is None:
            return self.headers.cached("cseq", lambda h: parse_cseq(_required(h, "CSeq")))
        return value

    @property
    def vias(self) -> list[Via]:
        """Every Via, top first, comma-lists expanded.

        Raises:
            ParseError: missing or malformed.
        """
        cache = self.headers._cache
        value: list[Via] | None = cache.get("via")  # type: ignore[assignment]
        if value is None:
            # The parser validated every Via and kept the matches; build from them (the
            # headers' cache is cleared on any change, so they are never stale).
            matches: list[re.Match[str]] | None = cache.get("via-matches")  # type: ignore[assignment]
            if matches is None:
                return self.headers.cached("via", _vias)
            value = [via_of_match(m) for m in matches]
            cache["via"] = value
        return value

    @property
    def top_via(self) -> Via:
        """The topmost Via (RFC 3261 §8.2.6.2, §17.1.3: it keys the transaction)."""
        return self.vias[0]

    @property
    def from_(self) -> NameAddress:
        """The parsed From header.

        Raises:
            ParseError: missing or malformed.
        """
        value: NameAddress | None = self.headers._cache.get("from")  # type: ignore[assignment]
        if value is None:
            return self.headers.cached(
                "from", lambda h: parse_name_address(_required(h, "From"), "From")
            )
        return value

    @property
    def to(self) -> NameAddress:
        """The parsed To header.

        Raises:
            ParseError: missing or malformed.
        """
        value: NameAddress | None = self.headers._cache.get("to")  # type: ignore[assignment]
        if value is None:
            return self.headers.cached("to", lambda h: parse_name_address(_required(h, "To"), "To"))
        return value

    @property
    def contacts(self) -> list[Contact]:
        """Every Contact, in order; empty if there is none.

        Raises:
            ParseError: malformed.
        """
        return self.headers.cached("contact", _contacts)

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (0-255, RFC 3261 §20.22), or None."""
        return _optional_uint(self.headers, "Max-Forwards", 255)

    @property
    def expires(self) -> int | None:
        """Expires in seconds, or None."""
        return _optional_uint(self.headers, "Expires", MAX_DELTA_SECONDS)

    @property
    def min_expires(self) -> int | None:
        """Min-Expires in seconds (sent with 423, RFC 3261 §10.3), or None."""
        return _optional_uint(self.headers, "Min-Expires", MAX_DELTA_SECONDS)

    @property
    def content_type(self) -> str | None:
        """The Content-Type value as written, or None."""
        return self.headers.get("Content-Type")

    @property
    def routes(self) -> list[NameAddress]:
        """Every Route entry, in order."""
        return self.headers.cached("route", lambda h: _address_list(h, "Route"))

    @property
    def record_routes(self) -> list[NameAddress]:
        """Every Record-Route entry, in order."""
        return self.headers.cached("record-route", lambda h: _address_list(h, "Record-Route"))

    @property
    def supported(self) -> list[str]:
        """Supported option tags, lower-cased."""
        return [tag.lower() for tag in self.headers.get_all("Supported")]

    @property
    def require(self) -> list[str]:
        """Require option tags, lower-cased."""
        return [tag.lower() for tag in self.headers.get_all("Require")]


def _equal_headers(a: Headers, b: Headers) -> bool:
    return [f for f in a.canonical() if f[0] != "content-length"] == [
        f for f in b.canonical() if f[0] != "content-length"
    ]


@dataclass(frozen=True, slots=True, eq=False)
class Request(_Accessors):
    """A SIP request (version SIP/2.0).

    Attributes:
        method: the method, case-sensitive (RFC 3261 §7.1).
        uri: the Request-URI.
        headers: the header fields.
        body: the body bytes.
    """

    method: str
    uri: Uri
    headers: Headers
    body: bytes = b""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (
            self.method == other.method
            and self.uri == other.uri
            and self.body == other.body
            and _equal_headers(self.headers, other.headers)
        )

    __hash__ = None  # type: ignore[assignment]  # holds mutable Headers


@dataclass(frozen=True, slots=True, eq=False)
class Response(_Accessors):
    """A SIP response (version SIP/2.0).

    Attributes:
        status: the status code, 100-699.
        reason: the reason phrase (may be empty, RFC 4475 §3.1.1.13).
        headers: the header fields.
        body: the body bytes.
    """

    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return (
            self.status == other.status
            and self.reason == other.reason
            and self.body == other.body
            and _equal_headers(self.headers, other.headers)
        )

    __hash__ = None  # type: ignore[assignment]  # holds mutable Headers


_new: Final = object.__new__
_SET_METHOD, _SET_URI, _SET_REQUEST_HEADERS, _SET_REQUEST_BODY = slot_setters(
    Request, "method", "uri", "headers", "body"
)
_SET_STATUS, _SET_REASON, _SET_RESPONSE_HEADERS, _SET_RESPONSE_BODY = slot_setters(
    Response, "status", "reason", "headers", "body"
)


def new_request(method: str, uri: Uri, headers: Headers, body: bytes) -> Request:
    """`Request(...)` for the parser's hot path: the same value, without the dataclass
    `__init__` (see `sipua.sip.uri.slot_setters`)."""
    request: Request = _new(Request)
    _SET_METHOD(request, method)
    _SET_URI(request, uri)
    _SET_REQUEST_HEADERS(request, headers)
    _SET_REQUEST_BODY(request, body)
    return request


def new_response(status: int, reason: str, headers: Headers, body: bytes) -> Response:
    """`Response(...)` for the parser's hot path (see `new_request`)."""
    response: Response = _new(Response)
    _SET_STATUS(response, status)
    _SET_REASON(response, reason)
    _SET_RESPONSE_HEADERS(response, headers)
    _SET_RESPONSE_BODY(response, body)
    return response


def make_response(
    request: Request, status: int, reason: str | None = None, *, to_tag: str | None = None
) -> Response:
    """Build a response to `request` per RFC 3261 §8.2.6.2.

    Copies every Via (in order, as written), From, To, Call-ID and CSeq. If `to_tag` is given
    and the request's To has no tag, the tag is added to To (§8.2.6.2: a UAS adds one; a 100
    Trying does not need one).

    Args:
        request: the request being answered.
        status: the status code, 100-699.
        reason: the reason phrase; defaults to the standard phrase for `status`.
        to_tag: the UAS's tag for To.

    Raises:
        ValueError: status out of range.
        ParseError: the request lacks or garbles a header the response must copy.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} is out of range (100-699)")
    src = request.headers
    items = [("Via", value) for value in src.get_fields("Via")]
    if not items:
        raise ParseError("cannot answer a request without Via (RFC 3261 §8.2.6.2)")
    to_value = _required(src, "To")
    if to_tag is not None and request.to.tag is None:
        to_value = f"{to_value};tag={to_tag}"
    items += [
        ("From", _required(src, "From")),
        ("To", to_value),
        ("Call-ID", _required(src, "Call-ID")),
        ("CSeq", _required(src, "CSeq")),
    ]
    return Response(status, reason_phrase(status) if reason is None else reason, Headers(items))
