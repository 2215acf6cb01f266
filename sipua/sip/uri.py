"""SIP, SIPS and tel URIs, and every other scheme kept as opaque text.

`parse_uri(text)` returns a `SipUri` for `sip:`/`sips:` (RFC 3261 §19.1), a `TelUri` for `tel:`
(RFC 3966, the basic form) and an `AbsoluteUri` for any other scheme (RFC 3261 §19.1.1 allows
absoluteURI anywhere a URI goes; RFC 4475 §3.3.2 and §3.3.4 say such messages must still parse).

Escaping (RFC 3261 §19.1.2): the user and password of a `SipUri` are stored *unescaped*
(`sip:%75ser@h` has `user == "user"`), so comparing two values compares what they mean; `str()`
escapes again whatever is not allowed bare. URI parameter and header values are kept as written
(they are rarely escaped and compared case-insensitively anyway); parameter *names* are lower-cased.

Comparison (RFC 3261 §19.1.4) is `SipUri.matches(other)`. `==` is plain structural equality of
the parsed fields, which is what round-trip tests need; the two differ in parameter handling
(an extra `;foo` on one side is ignored by `matches`, not by `==`).

IPv6 hosts are stored as references with their brackets, `"[2001:db8::1]"` (RFC 5118), so `host`
can be written back into a URI or a Via sent-by unchanged.

Speed. A `sip:`/`sips:` URI written in lower case (nearly all of them) is parsed by one
`fullmatch` of `SIP_URI_FAST` whose groups are the fields, and the `SipUri` is built through
its `mutable_twin` rather than the frozen dataclass's `__init__` (which costs one
`object.__setattr__` per field). Anything the fast pattern does not take (an upper-case
scheme, IPv6 text in a form it does not know, a port above 65535) goes the general way, which
is the reference: the fast path accepts a subset of what it accepts and builds equal values
(tests/sip/test_uri.py checks both).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, unquote

from sipua.sip.abnf import HOST, HOST_NAME
from sipua.sip.errors import ParseError

# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1)
_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*+")

# user = 1*( unreserved / escaped / user-unreserved )
# user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
_USER_SAFE: Final = "-_.!~*'()&=+$,;?/"
_USER: Final = r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]++|%[0-9A-Fa-f]{2})++"
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
#: A user that `quote(user, safe=_USER_SAFE)` leaves as it is (ASCII letters, digits, safe).
_PLAIN_USER_RE: Final = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]*+")
_PASSWORD_SAFE: Final = "-_.!~*'()&=+$,"  # noqa: S105 - a character class, not a secret
_PASSWORD: Final = r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]++|%[0-9A-Fa-f]{2})*+"  # noqa: S105 - a grammar rule, not a secret
# pname / pvalue = 1*paramchar ; paramchar = param-unreserved / unreserved / escaped
_PCHAR: Final = r"(?:[A-Za-z0-9\[\]/:&+$\-_.!~*'()]++|%[0-9A-Fa-f]{2})++"
_PARAM_RE: Final = re.compile(_PCHAR)
_PARAM_PAIR_RE: Final = re.compile(rf";({_PCHAR})(?:=({_PCHAR}))?")
# hname / hvalue: hnv-unreserved / unreserved / escaped ; hvalue may be empty
_HCHAR: Final = r"(?:[A-Za-z0-9\[\]/?:+$\-_.!~*'()]++|%[0-9A-Fa-f]{2})"
_HEADER: Final = rf"{_HCHAR}++={_HCHAR}*+"

# SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
# userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
# The user may contain ";" and "?", but not "@", so the userinfo group only matches when an
# "@" follows; otherwise the text starts with the host. One regex validates the whole URI.
_SIP_URI_RE: Final = re.compile(
    rf"(?:({_USER})(?::({_PASSWORD}))?@)?"
    rf"({HOST})"
    r"(?::([0-9]{1,5}))?"
    rf"((?:;{_PCHAR}(?:={_PCHAR})?)*+)"
    rf"(?:\?({_HEADER}(?:&{_HEADER})*+))?"
)
# IPv6address (RFC 3986 §3.2.2) in its plain hexadecimal forms, for the fast path only: eight
# h16, or at most seven around one "::" (the lookahead allows at most 7 colons). Every address
# it takes is one `ipaddress.IPv6Address` (the general path's check) takes; the other forms
# (a dotted IPv4 tail, "1:2:3:4:5:6:7::") go the general way. Linear: the lookahead is one
# possessive scan and the structure has no ambiguity.
_H16: Final = r"[0-9A-Fa-f]{1,4}"
IPV6_REFERENCE: Final = (
    r"\[(?=(?:[0-9A-Fa-f]*+:){2,7}[0-9A-Fa-f]*+\])"
    rf"(?:{_H16}(?::{_H16}){{7}}|(?:{_H16}(?::{_H16}){{0,6}})?::(?:{_H16}(?::{_H16}){{0,6}})?)\]"
)
# port = 1*DIGIT, but only 0-65535 (so the fast path never needs a range check).
PORT_0_65535: Final = (
    r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
)
# The fast SIP-URI: lower-case scheme, the full userinfo/params/headers grammar, a host that
# needs no further check. Groups: scheme, user, password, host, port, params, headers. A user
# with "%" is unescaped by the caller, as on the general path.
SIP_URI_FAST: Final = (
    rf"(sips?):(?:({_USER})(?::({_PASSWORD}))?@)?"
    rf"({IPV6_REFERENCE}|{HOST_NAME})"
    rf"(?::({PORT_0_65535}))?(?![0-9])"
    rf"((?:;{_PCHAR}(?:={_PCHAR})?)*+)"
    rf"(?:\?({_HEADER}(?:&{_HEADER})*+))?"
)
_SIP_URI_FAST_RE: Final = re.compile(SIP_URI_FAST)

# telephone-subscriber (RFC 3966): global "+" digits or a local number, visual separators allowed
_TEL_NUMBER_RE: Final = re.compile(r"\+?[0-9A-Fa-f*#.\-()]++")
# What an opaque absoluteURI may contain after its scheme: no whitespace, quotes or brackets.
_OPAQUE_RE: Final = re.compile(r'[^\x00-\x20<>"\x7f]++')

MAX_PORT: Final = 65535


def host_port(host: str, port: int | None = None) -> str:
    """``host[:port]``, an IPv6 address in brackets (RFC 5118 §4); brackets are not doubled."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def _bad(text: str, what: str) -> ParseError:
    return ParseError(f"malformed URI {text[:200]!r}: {what}")


def _parse_params(text: str, uri: str) -> dict[str, str | None]:
    # text is ";name[=value]..." already validated by _SIP_URI_RE, or a tel: tail.
    pairs = _PARAM_PAIR_RE.findall(text)
    if sum(len(n) + len(v) + (2 if v else 1) for n, v in pairs) != len(text):
        raise _bad(uri, f"bad parameters {text[:100]!r}")
    # pvalue is never empty, so "" from findall means "no value".
    return {name.lower(): value or None for name, value in pairs}


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _check_ipv6(host: str, uri: str) -> None:
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        raise _bad(uri, f"bad IPv6 reference {host!r}") from None


@dataclass(frozen=True, slots=True)
class SipUri:
    """A `sip:` or `sips:` URI (RFC 3261 §19.1.1).

    Attributes:
        scheme: "sip" or "sips", lower case.
        user: the user part, unescaped; None when absent.
        password: the password, unescaped; None when absent (it is deprecated, §19.1.1).
        host: host name, IPv4 address or bracketed IPv6 reference.
        port: explicit port, or None (the default depends on the transport).
        params: URI parameters, names lower-cased, None for a parameter without a value.
        headers: URI headers (after "?"), values as written (escaped).
    """

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    password: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a sip: or sips: URI.

        Raises:
            ParseError: the text is not a SIP or SIPS URI.
        """
        uri = parse_uri(text)
        if not isinstance(uri, SipUri):
            raise _bad(text, "expected a sip: or sips: URI")
        return uri

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        user = self.user
        if user is not None:
            # A user of unreserved characters only (the usual case) needs no escaping.
            if _PLAIN_USER_RE.fullmatch(user) is None:
                user = quote(user, safe=_USER_SAFE, errors="surrogateescape")
            out.append(user)
            if self.password is not None:
                out += [":", quote(self.password, safe=_PASSWORD_SAFE, errors="surrogateescape")]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out += [":", str(self.port)]
        if self.params:
            out.append(_format_params(self.params))
        if self.headers:
            out += ["?", "&".join(f"{k}={v}" for k, v in self.headers.items())]
        return "".join(out)

    @property
    def secure(self) -> bool:
        """True for a sips: URI (RFC 3261 §19.1: TLS on every hop)."""
        return self.scheme == "sips"

    def matches(self, other: object) -> bool:
        """Compare per RFC 3261 §19.1.4 (not the same as `==`).

        Scheme, host and parameter values are compared case-insensitively, user and password
        case-sensitively after unescaping; an absent port differs from an explicit default one.
        The parameters user, ttl, method, maddr and transport must match if either side has
        them; any other parameter must match only if both sides have it. Headers must match
        exactly, as sets.
        """
        if not isinstance(other, SipUri):
            return False
        if (
            self.scheme != other.scheme
            or self.user != other.user
            or self.password != other.password
            or self.host.lower() != other.host.lower()
            or self.port != other.port
        ):
            return False
        for name in self.params.keys() | other.params.keys():
            mine, theirs = self.params.get(name, ""), other.params.get(name, "")
            if name in self.params and name in other.params:
                if _lower_unescaped(mine) != _lower_unescaped(theirs):
                    return False
            elif name in ("user", "ttl", "method", "maddr", "transport"):
                return False
        mine_h = {k.lower(): unquote(v) for k, v in self.headers.items()}
        theirs_h = {k.lower(): unquote(v) for k, v in other.headers.items()}
        return mine_h == theirs_h


def _lower_unescaped(value: str | None) -> str | None:
    return None if value is None else unquote(value).lower()


@dataclass(frozen=True, slots=True)
class TelUri:
    """A `tel:` URI (RFC 3966), basic form: a number and its parameters.

    Attributes:
        number: the global ("+...") or local number, as written.
        params: parameters (phone-context, ext, isub, ...), names lower-cased.
    """

    number: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        """Always "tel"."""
        return "tel"

    def __str__(self) -> str:
        return f"tel:{self.number}{_format_params(self.params)}"


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """Any other URI scheme, kept as opaque text (RFC 3261 §19.1.1 absoluteURI).

    Attributes:
        scheme: the scheme, lower case.
        rest: everything after the first ":".
    """

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | TelUri | AbsoluteUri

Setter = Callable[[object, Any], None]


def slot_setters(cls: type, *names: str) -> tuple[Setter, ...]:
    """The slot descriptors' `__set__` of a slotted (frozen) dataclass, for fast construction.

    A frozen dataclass's `__init__` assigns through `object.__setattr__`, by name, per field;
    calling the slot descriptors directly does the same assignment for about half the cost.
    Only for the parser's hot path, which always sets every field.
    """
    return tuple(cls.__dict__[name].__set__ for name in names)


_new: Final = object.__new__


def mutable_twin(cls: type) -> type:
    """A plain class with exactly the slots of `cls` (a slotted frozen dataclass on `object`).

    The fastest way CPython sets a slot is an ordinary attribute store, which a frozen class
    refuses. The parser's hot path therefore fills an instance of the twin and then gives it
    its real class (`value.__class__ = cls`), which CPython allows because the two layouts are
    the same. The value is then indistinguishable from one built by `cls(...)`: same type,
    fields, equality, repr and immutability (tests/sip/test_uri.py and test_fields.py check).

    Raises:
        TypeError: `cls` does not have a layout a twin can share (checked once, at import).
    """
    if cls.__bases__ != (object,) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a slotted class directly on object")
    twin = type(f"{cls.__name__}Twin", (), {"__slots__": cls.__dict__["__slots__"]})
    probe: Any = _new(twin)
    probe.__class__ = cls  # raises TypeError now, not in the hot path, if layouts differ
    return twin


_SIP_URI_TWIN: Final = mutable_twin(SipUri)


def new_sip_uri(
    scheme: str,
    user: str | None,
    host: str,
    port: int | None,
    params: dict[str, str | None],
    headers: dict[str, str],
    password: str | None,
) -> SipUri:
    """`SipUri(...)` without the dataclass `__init__`: equal, frozen, same type; faster."""
    uri: Any = _new(_SIP_URI_TWIN)
    uri.scheme = scheme
    uri.user = user
    uri.host = host
    uri.port = port
    uri.params = params
    uri.headers = headers
    uri.password = password
    uri.__class__ = SipUri
    built: SipUri = uri
    return built


def sip_uri_of_groups(
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port: str | None,
    params: str,
    headers: str | None,
) -> SipUri:
    """Build a `SipUri` from the groups of a `SIP_URI_FAST` match (already fully validated)."""
    if user is not None and "%" in user:
        user = unquote(user, errors="surrogateescape")
    if password is not None and "%" in password:
        password = unquote(password, errors="surrogateescape")
    uri: Any = _new(_SIP_URI_TWIN)
    uri.scheme = scheme
    uri.user = user
    uri.host = host
    uri.port = None if port is None else int(port)
    if params:
        # Validated as *( ";" pname [ "=" pvalue ] ), and neither holds ";" or "=".
        parsed: dict[str, str | None] = {}
        for param in params[1:].split(";"):
            name, eq, value = param.partition("=")
            parsed[name.lower()] = value if eq else None
        uri.params = parsed
    else:
        uri.params = {}
    uri.headers = dict(h.split("=", 1) for h in headers.split("&")) if headers else {}
    uri.password = password
    uri.__class__ = SipUri
    built: SipUri = uri
    return built


def parse_uri(text: str) -> Uri:
    """Parse a URI of any scheme.

    Args:
        text: the URI, without surrounding whitespace or angle brackets.

    Returns:
        A `SipUri`, `TelUri` or `AbsoluteUri`.

    Raises:
        ParseError: the text is not a well-formed URI.
    """
    fast = _SIP_URI_FAST_RE.fullmatch(text)
    if fast is not None:
        return sip_uri_of_groups(*fast.groups())
    return _parse_uri_general(text)


def _parse_uri_general(text: str) -> Uri:
    """`parse_uri` without the fast path: the reference the fast path must agree with."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise _bad(text, "no scheme")
    scheme = scheme.lower()
    if scheme == "sip" or scheme == "sips":
        return _parse_sip(scheme, rest, text)
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not _TEL_NUMBER_RE.fullmatch(number):
            raise _bad(text, "bad telephone number")
        return TelUri(number, _parse_params(";" + params, text) if params else {})
    if not _OPAQUE_RE.fullmatch(rest):
        raise _bad(text, "empty or contains whitespace, quotes or angle brackets")
    return AbsoluteUri(scheme, rest)


def _parse_sip(scheme: str, rest: str, text: str) -> SipUri:
    m = _SIP_URI_RE.fullmatch(rest)
    if m is None:
        raise _bad(text, "expected [user[:password]@]host[:port][;params][?headers]")
    user, password, host, port, params, headers = m.groups()
    if user is not None and "%" in user:
        user = unquote(user, errors="surrogateescape")
    if password is not None and "%" in password:
        password = unquote(password, errors="surrogateescape")
    port_number: int | None = None
    if port is not None:
        port_number = int(port)
        if port_number > MAX_PORT:
            raise _bad(text, f"port {port} out of range")
    if host[0] == "[":
        _check_ipv6(host, text)
    return new_sip_uri(
        scheme,
        user,
        host,
        port_number,
        _parse_params(params, text) if params else {},
        dict(h.split("=", 1) for h in headers.split("&")) if headers else {},
        password,
    )
