"""Typed header values: parse and format pairs for Via, CSeq, name-addr/addr-spec and Contact.

Every type here is a frozen, slotted dataclass whose `str()` is the header value to put on the
wire, and every `parse_*` function takes the header value (already unfolded and stripped, as
`Headers` holds it) and raises `ParseError` naming the header and the part that is wrong.

Parameters (URI, Via, header parameters) are `dict[str, str | None]` with lower-cased names and
values as written (a quoted value keeps its quotes), None for a parameter without "=value".

Speed. Each parser first tries one `fullmatch` of a *fast* pattern that covers the usual
spelling (no folding whitespace around ";" "/" ":", lower-case sip/sips scheme, no escapes in
quoted strings, lower-case names for the leading parameters) and whose groups are the fields;
the values are then built through their `sipua.sip.uri.mutable_twin`. Whatever the fast
pattern refuses goes the general way, which is the reference: it accepts a superset of the
fast patterns and raises the precise errors. The two give equal values on what both accept
(tests/sip/test_fields.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from sipua.sip.abnf import (
    CSEQ_RE,
    DIGITS_RE,
    GENERIC_PARAM_RE,
    GENERIC_PARAMS_RE,
    HOST,
    HOST_NAME,
    QUOTED_STRING_RE,
    TOKEN,
    VIA_HEAD_RE,
)
from sipua.sip.errors import ParseError
from sipua.sip.headers import split_list
from sipua.sip.uri import (
    PORT_0_65535,
    SIP_URI_FAST,
    AbsoluteUri,
    Uri,
    mutable_twin,
    parse_uri,
    sip_uri_of_groups,
)

#: CSeq numbers must be below 2**31 (RFC 3261 §8.1.1.5).
MAX_CSEQ: Final = 2**31 - 1
#: delta-seconds is at most 2**32 - 1 (RFC 3261 §20.19, §20.23).
MAX_DELTA_SECONDS: Final = 2**32 - 1

_DISPLAY_TOKENS_RE: Final = re.compile(rf"{TOKEN}(?:[ \t]++{TOKEN})*+")
_QUOTED_PAIR_RE: Final = re.compile(r"\\(.)", re.DOTALL)
_NEEDS_QUOTED_PAIR_RE: Final = re.compile(r'["\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')

# Fast patterns (see the module docstring). A quoted-string without quoted-pairs:
_PLAIN_QUOTED: Final = r'"[^"\\\r\n]*+"'
# gen-value = token / host / quoted-string (host: IPv6 references; names and IPv4 are tokens).
_GEN_VALUE: Final = rf"{TOKEN}|\[[0-9A-Fa-f:.]++\]|{_PLAIN_QUOTED}"
# generic-param with no whitespace around ";" and "=".
_FAST_PARAMS: Final = rf"(?:;{TOKEN}(?:=(?:{_GEN_VALUE}))?)*+"
# Splits an already matched `_FAST_PARAMS` text into (name, value) pairs.
_FAST_PARAM_PAIR_RE: Final = re.compile(rf";({TOKEN})(?:=({_GEN_VALUE}))?")
# A parameter whose name is in lower case already, captured as (name, value or None), so the
# usual short lists (";tag=x", ";branch=y;rport") become a dict without any further call.
_LC_PARAM: Final = r";([a-z0-9\-.!%*_+`'~]++)(?:=(" + _GEN_VALUE + "))?"


def _params_group(captured: int) -> str:
    # Groups: the whole parameter text, `captured` leading (name, value) pairs, the rest.
    leading = ""
    for _ in range(captured):
        leading = f"(?:{_LC_PARAM}{leading})?"
    return f"({leading}({_FAST_PARAMS}))"


# via-parm: "SIP/2.0/" transport SP host [":" port] params. Groups: transport, host, port,
# then `_params_group(3)`. One via only (a comma outside a quoted value makes it fail).
_VIA_FAST_RE: Final = re.compile(
    rf"SIP/2\.0/([A-Z]++) ({HOST})"
    rf"(?::({PORT_0_65535}))?(?![0-9]){_params_group(3)}"
)
# name-addr with a SIP URI, or an addr-spec SIP URI without "?" "," ";" in it. Groups:
# quoted display (without quotes), token display, the SIP_URI_FAST groups (7), then
# `_params_group(1)` (4); then, for the addr-spec form: scheme, user, password, host, port,
# `_params_group(1)`.
_NAME_ADDR_FAST: Final = (
    rf"(?:(?:\"([^\"\\\r\n]*+)\"[ \t]*+|({TOKEN}(?:[ \t]++{TOKEN})*+)[ \t]*+)?"
    rf"<{SIP_URI_FAST}>{_params_group(1)}"
    r"|(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$/]++)(?::([A-Za-z0-9\-_.!~*'()&=+$]*+))?@)?"
    rf"({HOST_NAME})(?::({PORT_0_65535}))?(?![0-9])"
    rf"{_params_group(1)})"
)
_NAME_ADDR_FAST_RE: Final = re.compile(_NAME_ADDR_FAST)


def _uncaptured(pattern: str) -> str:
    """`pattern` with every capturing group made non-capturing (a match that only validates
    need not record where each group was, which makes it faster)."""
    out: list[str] = []
    pos, in_class = 0, False
    while pos < len(pattern):
        char = pattern[pos]
        if char == "\\":
            out.append(pattern[pos : pos + 2])
            pos += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern.startswith("]", pos + 1) or pattern.startswith("^]", pos + 1):
                raise ValueError("a ']' first in a class is not supported here")
        elif char == "(" and not pattern.startswith("?", pos + 1):
            char = "(?:"
        out.append(char)
        pos += 1
    return "".join(out)


# A Contact value that is a list of such elements: validated in one go by the parser.
_NAME_ADDR_CHECK: Final = _uncaptured(_NAME_ADDR_FAST)
CONTACT_LIST_FAST_RE: Final = re.compile(
    rf"{_NAME_ADDR_CHECK}(?:[ \t]*+,[ \t]*+{_NAME_ADDR_CHECK})*+"
)
# One such element (From, To): a value it takes is one `_fast_name_address` builds.
NAME_ADDR_CHECK_RE: Final = re.compile(_NAME_ADDR_CHECK)


def parse_params(text: str, pos: int, what: str) -> dict[str, str | None]:
    """Parse `*( SEMI generic-param )` from `text[pos:]` to the end.

    Raises:
        ParseError: anything but well-formed parameters follows `pos`.
    """
    if GENERIC_PARAMS_RE.fullmatch(text, pos) is None:
        # Error path: walk the parameters one by one to say where it went wrong.
        while (m := GENERIC_PARAM_RE.match(text, pos)) is not None:
            pos = m.end()
        raise ParseError(f"{what}: malformed parameter at {text[pos : pos + 60]!r}")
    # gen-value is never empty, so "" from findall means "no value".
    return {name.lower(): value or None for name, value in GENERIC_PARAM_RE.findall(text, pos)}


def format_params(params: dict[str, str | None]) -> str:
    """`;name=value;flag` for a parameter dict."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def quote_string(text: str) -> str:
    """Quote a display name as a quoted-string, escaping what qdtext cannot hold.

    Raises:
        ValueError: the text contains CR or LF, which no quoted-string can carry.
    """
    if "\r" in text or "\n" in text:
        raise ValueError(f"display name {text[:100]!r} contains CR or LF")
    return '"' + _NEEDS_QUOTED_PAIR_RE.sub(lambda m: "\\" + m.group(), text) + '"'


def unquote_string(quoted: str) -> str:
    """The content of a quoted-string (with its quotes), quoted-pairs undone."""
    inner = quoted[1:-1]
    return _QUOTED_PAIR_RE.sub(r"\1", inner) if "\\" in inner else inner


@dataclass(frozen=True, slots=True)
class CSeq:
    """CSeq value (RFC 3261 §20.16): sequence number and method."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


_CSEQ_TWIN: Final = mutable_twin(CSeq)
_new: Final = object.__new__


def parse_cseq(value: str) -> CSeq:
    """Parse a CSeq value.

    Raises:
        ParseError: not "number method", or the number is 2**31 or more (RFC 4475 §3.1.2.4).
    """
    m = CSEQ_RE.fullmatch(value)
    if m is None:
        raise ParseError(f"CSeq {value[:100]!r} is not '<number> <method>'")
    digits, method = m.groups()
    # Check the length before int(): a 5000-digit number is a cheap way to burn CPU.
    seq = int(digits) if len(digits) <= 10 else MAX_CSEQ + 1
    if seq > MAX_CSEQ:
        raise ParseError(f"CSeq number {digits[:40]} is out of range (must be below 2**31)")
    cseq: Any = _new(_CSEQ_TWIN)
    cseq.seq = seq
    cseq.method = method
    cseq.__class__ = CSeq
    built: CSeq = cseq
    return built


def parse_uint(value: str, header: str, maximum: int) -> int:
    """Parse a non-negative decimal header value (Max-Forwards, Expires, Content-Length...).

    Raises:
        ParseError: not all digits, or above `maximum`.
    """
    if DIGITS_RE.fullmatch(value) is None:
        raise ParseError(f"{header} {value[:60]!r} is not a non-negative integer")
    # Up to 18 digits int() is cheap; beyond, compare lengths first (CPU burn, see parse_cseq).
    if len(value) <= 18:
        number = int(value)
        if number <= maximum:
            return number
    elif len(value.lstrip("0")) <= len(str(maximum)) and int(value) <= maximum:
        return int(value)
    raise ParseError(f"{header} {value[:40]} is out of range (at most {maximum})")


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 §20.42); the protocol is always SIP/2.0.

    Attributes:
        transport: "UDP", "TCP", "TLS", ... upper-cased.
        host: sent-by host (IPv6 with brackets).
        port: sent-by port, or None.
        params: branch, received, rport, maddr, ttl and extensions.
    """

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        """The branch parameter (RFC 3261 §8.1.1.7), or None."""
        return self.params.get("branch")

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"


_VIA_TWIN: Final = mutable_twin(Via)


def _fast_params(text: str) -> dict[str, str | None]:
    """The parameters of a text that matched `_FAST_PARAMS`."""
    if '"' in text:
        # A quoted value may hold ";" or "=". gen-value is never empty, so "" means no value.
        return {name.lower(): value or None for name, value in _FAST_PARAM_PAIR_RE.findall(text)}
    # Token and IPv6 values hold neither ";" nor "=".
    if text.find(";", 1) < 0:  # one parameter, the usual From/To tag
        name, eq, value = text[1:].partition("=")
        return {name.lower(): value if eq else None}
    params: dict[str, str | None] = {}
    for param in text[1:].split(";"):
        name, eq, value = param.partition("=")
        params[name.lower()] = value if eq else None
    return params


def parse_via(value: str) -> list[Via]:
    """Parse one Via header field value, which may hold several comma-separated vias.

    Raises:
        ParseError: a via is malformed or the list has empty elements (RFC 4475 §3.1.2.1).
    """
    fast = _fast_via(value)
    return [fast] if fast is not None else _parse_via_general(value)


def _fast_via(value: str) -> Via | None:
    """The single via of `value` by `_VIA_FAST_RE`, or None if the pattern does not take it."""
    m = _VIA_FAST_RE.fullmatch(value)
    if m is None:
        return None
    return via_of_match(m)


def via_fast_match(value: str) -> re.Match[str] | None:
    """`value` matched by the fast single-via pattern (build it with `via_of_match`), or None.

    A None means only that the general parser must judge the value, not that it is malformed.
    """
    return _VIA_FAST_RE.fullmatch(value)


def via_of_match(m: re.Match[str]) -> Via:
    """The `Via` of a `via_fast_match` match."""
    transport, host, port, params, n1, v1, n2, v2, n3, v3, rest = m.groups()
    via: Any = _new(_VIA_TWIN)
    via.transport = transport
    via.host = host
    via.port = None if port is None else int(port)
    if rest or n1 is None:
        via.params = _fast_params(params) if params else {}
    elif n2 is None:
        via.params = {n1: v1}
    elif n3 is None:
        via.params = {n1: v1, n2: v2}
    else:
        via.params = {n1: v1, n2: v2, n3: v3}
    via.__class__ = Via
    built: Via = via
    return built


def _parse_via_general(value: str) -> list[Via]:
    vias: list[Via] = []
    for element in split_list(value, allow_empty=False):
        m = VIA_HEAD_RE.match(element)
        if m is None:
            raise ParseError(f"Via {element[:100]!r} is not 'SIP/2.0/<transport> <host>[:port]'")
        name, version, transport, host, port = m.groups()
        if name.upper() != "SIP" or version != "2.0":
            raise ParseError(f"Via protocol {name}/{version} is not SIP/2.0")
        port_number = None
        if port is not None:
            port_number = parse_uint(port, "Via port", 65535)
        vias.append(
            Via(transport.upper(), host, port_number, parse_params(element, m.end(), "Via"))
        )
    return vias


@dataclass(frozen=True, slots=True)
class NameAddress:
    """A name-addr or addr-spec with header parameters (From, To, Route, Contact...).

    Attributes:
        display_name: the display name, unquoted, or None.
        uri: the address.
        params: header parameters (tag, expires, q, lr...), not URI parameters.
    """

    display_name: str | None
    uri: Uri
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        """The tag parameter (RFC 3261 §19.3), or None."""
        return self.params.get("tag")

    def __str__(self) -> str:
        # Always the name-addr form: an addr-spec with ";", "," or "?" would be misread
        # (RFC 3261 §20.10), and "<...>" is never wrong.
        name = "" if self.display_name is None else quote_string(self.display_name) + " "
        return f"{name}<{self.uri}>{format_params(self.params)}"


@dataclass(frozen=True, slots=True)
class Contact(NameAddress):
    """A Contact value (RFC 3261 §20.10); `is_star` marks the "*" of a remove-all REGISTER."""

    is_star: bool = False

    @classmethod
    def star(cls) -> Contact:
        """The wildcard contact "*" (RFC 3261 §10.2.2)."""
        return cls(None, AbsoluteUri("*", ""), {}, True)

    @property
    def expires(self) -> int | None:
        """The expires parameter in seconds, or None if absent.

        Raises:
            ParseError: present but not delta-seconds.
        """
        value = self.params.get("expires")
        if value is None:
            return None
        return parse_uint(value, "Contact expires", MAX_DELTA_SECONDS)

    def __str__(self) -> str:
        return "*" if self.is_star else NameAddress.__str__(self)


_NAME_ADDRESS_TWIN: Final = mutable_twin(NameAddress)


def _fast_name_address(value: str, cls: type[NameAddress]) -> NameAddress | None:
    """`cls` built from a `_NAME_ADDR_FAST_RE` match of `value`, or None if it does not match."""
    m = _NAME_ADDR_FAST_RE.fullmatch(value)
    if m is None:
        return None
    g = m.groups()
    scheme = g[2]
    if scheme is not None:  # name-addr: [display] <SIP-URI>
        uri = sip_uri_of_groups(scheme, g[3], g[4], g[5], g[6], g[7], g[8])
        display = g[0] if g[0] is not None else g[1]
        params, name, param, rest = g[9:13]
    else:  # addr-spec
        uri = sip_uri_of_groups(g[13], g[14], g[15], g[16], g[17], "", None)
        display = None
        params, name, param, rest = g[18:]
    if rest or name is None:
        header_params = _fast_params(params) if params else {}
    else:
        header_params = {name: param}
    if cls is not NameAddress:
        return cls(display, uri, header_params)  # Contact: built when read, not while parsing
    address: Any = _new(_NAME_ADDRESS_TWIN)
    address.display_name = display
    address.uri = uri
    address.params = header_params
    address.__class__ = NameAddress
    built: NameAddress = address
    return built


def _split_name_address(value: str, what: str) -> tuple[str | None, Uri, dict[str, str | None]]:
    if value.startswith('"'):
        m = QUOTED_STRING_RE.match(value)
        if m is None:
            raise ParseError(f"{what} {value[:100]!r}: unterminated quoted display name")
        display: str | None = unquote_string(m.group())
        lt = m.end()
        while lt < len(value) and value[lt] in " \t":
            lt += 1
        if lt >= len(value) or value[lt] != "<":
            raise ParseError(f"{what} {value[:100]!r}: expected '<' after the display name")
    else:
        lt = value.find("<")
        if lt < 0:
            return _split_addr_spec(value, what)
        name = value[:lt].rstrip(" \t")
        if name and _DISPLAY_TOKENS_RE.fullmatch(name) is None:
            # RFC 4475 §3.1.2.15: "Bell, Alexander" must be quoted.
            raise ParseError(f"{what} {value[:100]!r}: display name must be tokens or quoted")
        display = name or None
    gt = value.find(">", lt)
    if gt < 0:
        raise ParseError(f"{what} {value[:100]!r}: '<' without '>'")
    uri = parse_uri(value[lt + 1 : gt])
    return display, uri, parse_params(value, gt + 1, what)


def _split_addr_spec(value: str, what: str) -> tuple[str | None, Uri, dict[str, str | None]]:
    semi = value.find(";")
    uri_text = (value if semi < 0 else value[:semi]).rstrip(" \t")
    if "," in uri_text or "?" in uri_text:
        # RFC 3261 §20.10: a URI with ",", "?" or ";" must be enclosed in "<>" (RFC 4475 §3.1.2.13).
        raise ParseError(f"{what} {value[:100]!r}: a URI with ',' or '?' must be in '<>'")
    params = {} if semi < 0 else parse_params(value, semi, what)
    return None, parse_uri(uri_text), params


def parse_name_address(value: str, what: str = "address") -> NameAddress:
    """Parse a single name-addr or addr-spec with parameters (From, To).

    Args:
        value: the header value.
        what: the header name, for error messages.

    Raises:
        ParseError: malformed display name, URI or parameters.
    """
    fast = _fast_name_address(value, NameAddress)
    if fast is not None:
        return fast
    display, uri, params = _split_name_address(value, what)
    return NameAddress(display, uri, params)


def parse_name_address_list(value: str, what: str = "address") -> list[NameAddress]:
    """Parse a comma-separated list of name-addr values (Route, Record-Route, Path...)."""
    return [parse_name_address(v, what) for v in split_list(value, allow_empty=False)]


def parse_contacts(value: str) -> list[Contact]:
    """Parse one Contact header field value: "*" or a list of contacts.

    Raises:
        ParseError: a contact is malformed or the list has empty elements.
    """
    if value == "*":
        return [Contact.star()]
    return [parse_contact(element) for element in split_list(value, allow_empty=False)]


def parse_contact(element: str) -> Contact:
    """Parse one element of a Contact list (not "*"), without blanks at its ends.

    Raises:
        ParseError: the element is not a name-addr or addr-spec with parameters.
    """
    fast = _fast_name_address(element, Contact)
    if isinstance(fast, Contact):
        return fast
    display, uri, params = _split_name_address(element, "Contact")
    return Contact(display, uri, params)
