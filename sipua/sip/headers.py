"""`Headers`: the ordered, case-insensitive multimap of a SIP message's header fields.

Theory of operation. Fields are kept as `(name, value)` pairs in wire order, with the name as
written (so a compact `v` stays `v` on the way out) and the value without surrounding
whitespace. Lookups go through a *key*: the lower-cased full name, with compact forms
(RFC 3261 §7.3.3 and the extensions listed in `COMPACT_FORMS`) expanded, so `get("v")`,
`get("VIA")` and `get("Via")` are the same lookup. An index from key to values is built once,
on first lookup (the parser hands it over ready-made), and dropped on any change.

`get_all` splits comma-separated values (RFC 3261 §7.3.1) only for headers whose grammar is a
list (`LIST_HEADERS`); the splitting respects quoted strings and `<...>`. Headers whose values
contain commas by grammar (WWW-Authenticate, Authorization, Date, ...) are never split.

Typed values (Via, From, CSeq, ...) are parsed by `sipua.sip.fields` on demand and cached here
with `cached()`, keyed by a slot name; any change to the headers clears that cache, so a typed
value is never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final, TypeVar, cast

from sipua.sip.abnf import LIST_ELEMENT_RE, TOKEN_RE
from sipua.sip.errors import ParseError

_T = TypeVar("_T")

#: Compact form -> full name (RFC 3261 §7.3.3 and the IANA SIP header registry).
COMPACT_FORMS: Final[dict[str, str]] = {
    "a": "Accept-Contact",  # RFC 3841
    "b": "Referred-By",  # RFC 3892
    "c": "Content-Type",
    "d": "Request-Disposition",  # RFC 3841
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",  # RFC 3841
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",  # RFC 6665
    "r": "Refer-To",  # RFC 3515
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",  # RFC 6665
    "v": "Via",
    "x": "Session-Expires",  # RFC 4028
    "y": "Identity",  # RFC 8224
}

#: Keys (lower-case full names) whose grammar is a comma-separated list, so `get_all` splits them.
LIST_HEADERS: Final[frozenset[str]] = frozenset(
    {
        "accept",
        "accept-contact",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "error-info",
        "history-info",
        "in-reply-to",
        "p-asserted-identity",
        "p-associated-uri",
        "path",
        "proxy-require",
        "reason",
        "record-route",
        "reject-contact",
        "request-disposition",
        "require",
        "route",
        "security-client",
        "security-server",
        "security-verify",
        "service-route",
        "supported",
        "unsupported",
        "via",
        "warning",
    }
)

_COMPACT_KEYS: Final = {short: full.lower() for short, full in COMPACT_FORMS.items()}
_KEY_CACHE: dict[str, str] = {}
_KEY_CACHE_MAX: Final = 4096  # distinct spellings remembered; bounded against hostile peers


def header_key(name: str) -> str:
    """The lookup key of a header name: lower-case full name ("v" and "VIA" give "via")."""
    key = _KEY_CACHE.get(name)
    if key is None:
        lowered = name.lower()
        key = _COMPACT_KEYS.get(lowered, lowered)
        if len(_KEY_CACHE) < _KEY_CACHE_MAX:
            _KEY_CACHE[name] = key
    return key


def split_list(value: str, *, allow_empty: bool = True) -> list[str]:
    """Split a comma-separated header value (RFC 3261 §7.3.1), respecting quotes and `<...>`.

    Args:
        value: the header field value.
        allow_empty: drop empty elements (True) or reject them (False; the grammar of Via and
            Contact has none, RFC 4475 §3.1.2.1).

    Raises:
        ParseError: a quoted string or `<` is not closed, or an empty element is not allowed.
    """
    if "," not in value:
        if not value and not allow_empty:
            raise ParseError("empty header value where a list of values is required")
        return [value] if value else []
    items: list[str] = []
    pos, end = 0, len(value)
    while pos < end:
        m = LIST_ELEMENT_RE.match(value, pos)
        if m is not None:
            item = m.group().strip(" \t")
            pos = m.end()
        else:
            item = ""
        if item:
            items.append(item)
        elif not allow_empty:
            raise ParseError(f"empty element in header value list {value[:200]!r}")
        if pos < end:
            if value[pos] != ",":
                raise ParseError(
                    f"cannot split header value {value[:200]!r}: unbalanced quote or '<'"
                )
            pos += 1
    if not allow_empty and value.rstrip(" \t").endswith(","):
        raise ParseError(f"empty element at the end of header value list {value[:200]!r}")
    return items


class Headers:
    """An ordered, case-insensitive multimap of header fields.

    Args:
        items: (name, value) pairs in wire order.
    """

    __slots__ = ("_cache", "_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        # The index is built in the same pass: a message built to be sent is read (Call-ID,
        # Via) and serialized right away.
        checked: list[tuple[str, str]] = []
        index: dict[str, list[str]] = {}
        for name, value in items:
            if name not in _TOKEN_NAMES:
                _checked_name(name)
            if "\r" in value or "\n" in value:
                checked_value(value)  # raises
            if value[:1] in _BLANKS or value[-1:] in _BLANKS:
                value = value.strip(" \t")
            checked.append((name, value))
            key = _KEY_CACHE.get(name) or header_key(name)
            values = index.get(key)
            if values is None:
                index[key] = [value]
            else:
                values.append(value)
        self._items = checked
        self._index: dict[str, list[str]] | None = index
        self._cache: dict[str, object] = {}

    @classmethod
    def _trusted(cls, items: list[tuple[str, str]], index: dict[str, list[str]]) -> Headers:
        """Build from already-validated items and index (the parser's, or a registration's
        header block checked once), without copying."""
        self = cls.__new__(cls)
        self._items = items
        self._index = index
        self._cache = {}
        return self

    def _get_index(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for name, value in self._items:
                key = header_key(name)
                values = index.get(key)
                if values is None:
                    index[key] = [value]
                else:
                    values.append(value)
            self._index = index
        return index

    def _changed(self) -> None:
        self._index = None
        self._cache.clear()

    def get(self, name: str) -> str | None:
        """The value of the first field with this name, or None."""
        values = self._get_index().get(header_key(name))
        return values[0] if values else None

    def get_fields(self, name: str) -> list[str]:
        """Every field value with this name, unsplit, in wire order."""
        return list(self._get_index().get(header_key(name), ()))

    def get_all(self, name: str) -> list[str]:
        """Every value with this name, comma-lists split for list headers (`LIST_HEADERS`).

        Raises:
            ParseError: a list value has an unbalanced quote or '<'.
        """
        key = header_key(name)
        values = self._get_index().get(key)
        if not values:
            return []
        if key not in LIST_HEADERS:
            return list(values)
        out: list[str] = []
        for value in values:
            out += split_list(value)
        return out

    def add(self, name: str, value: str) -> None:
        """Append a field at the end."""
        self._items.append((_checked_name(name), checked_value(value)))
        self._changed()

    def set(self, name: str, value: str) -> None:
        """Replace every field with this name by one field, at the position of the first."""
        key = header_key(name)
        new = (_checked_name(name), checked_value(value))
        out: list[tuple[str, str]] = []
        placed = False
        for item in self._items:
            if header_key(item[0]) == key:
                if not placed:
                    out.append(new)
                    placed = True
            else:
                out.append(item)
        if not placed:
            out.append(new)
        self._items = out
        self._changed()

    def remove(self, name: str) -> int:
        """Remove every field with this name; return how many were removed."""
        key = header_key(name)
        kept = [item for item in self._items if header_key(item[0]) != key]
        removed = len(self._items) - len(kept)
        if removed:
            self._items = kept
            self._changed()
        return removed

    def copy(self) -> Headers:
        """An independent copy (typed-value cache not shared)."""
        copy = Headers._trusted(list(self._items), {})
        copy._index = None
        return copy

    def cached(self, slot: str, compute: Callable[[Headers], _T]) -> _T:
        """Return `compute(self)`, cached under `slot` until the headers change.

        Used by the message accessors for typed values; `compute` must be a pure function of
        the headers. Exceptions are not cached.
        """
        cache = self._cache
        if slot in cache:
            return cast(_T, cache[slot])
        value = compute(self)
        cache[slot] = value
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and header_key(name) in self._get_index()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self.canonical() == other.canonical()

    __hash__ = None  # type: ignore[assignment]  # mutable, like list

    def canonical(self) -> list[tuple[str, str]]:
        """(key, value) pairs in wire order: what equality compares."""
        return [(header_key(name), value) for name, value in self._items]

    def __repr__(self) -> str:
        # Credentials are not passwords, but they are replayable within their nonce: keep them
        # out of reprs, which end up in logs and tracebacks.
        shown = [
            (name, "<redacted>" if header_key(name) in _REDACTED else value)
            for name, value in self._items
        ]
        return f"Headers({shown!r})"


_REDACTED: Final = frozenset({"authorization", "proxy-authorization"})
_BLANKS: Final = frozenset({" ", "\t"})


# Header names that passed the token check (a request built by sipua repeats the same dozen);
# bounded, so odd names only take the regex again.
_TOKEN_NAMES: set[str] = set()
_TOKEN_NAMES_MAX: Final = 1024


def _checked_name(name: str) -> str:
    if name in _TOKEN_NAMES:
        return name
    if not TOKEN_RE.fullmatch(name):
        raise ValueError(f"header name {name!r} is not a token (RFC 3261 §7.3.1)")
    if len(_TOKEN_NAMES) < _TOKEN_NAMES_MAX:
        _TOKEN_NAMES.add(name)
    return name


def checked_value(value: str) -> str:
    """`value` without blanks at its ends.

    Raises:
        ValueError: it holds a CR or LF (a field value is one line).
    """
    if "\r" in value or "\n" in value:
        # A CR or LF in a value would let a caller inject header lines; fold-free values only.
        raise ValueError(f"header value {value[:200]!r} contains CR or LF")
    return value.strip(" \t")
