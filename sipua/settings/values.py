"""What a setting's value may be: one parser per kind of value, and the small parsers behind them.

A parser takes the raw value and where it came from (`Source`) and returns the model's value, or
raises `Invalid` saying what was expected ("an integer from 0 to 65535"); the loader adds the
file, variable or flag and the value found. A value from the TOML file arrives typed (a bool, an
int, a list); from the environment and the command line it arrives as text (`Source.text`), so
the parsers also read `yes`, `30` or `a.pem:b.pem` there.

The parsers are declared with each setting (`sipua.settings.model`), and this module imports
only the standard library, so that building the command line's flags stays cheap.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sipua.hostport import split_host_port


class Invalid(Exception):
    """A value is not what its setting takes.

    Attributes:
        expected: Completes "expected ..." (the value found is quoted after it), or None when
            `detail` is the whole message (a value that must not be quoted, or one item of a
            list that is wrong).
        detail: The whole message after the place it came from.
    """

    def __init__(self, expected: str | None, *, detail: str | None = None) -> None:
        super().__init__(expected or detail)
        self.expected = expected
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Source:
    """Where a value came from.

    Attributes:
        where: How the user wrote it: `config.toml: accounts[0].expires`, `SIPUA_EXPIRES`,
            `--expires`.
        text: The value may be text to read (environment, flags); the file's values are typed.
        base: The directory relative paths are relative to (the file's), else None (the
            working directory).
    """

    where: str
    text: bool
    base: Path | None


#: Reads a raw value from a source into the model's value, or raises `Invalid`.
Parser = Callable[[object, Source], object]

_TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS: Final = frozenset({"0", "false", "no", "off"})


def boolean(value: object, source: Source) -> bool:
    """true/false in the file; also yes/no, on/off and 1/0 as text."""
    if isinstance(value, bool):
        return value
    if source.text and isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise Invalid("true or false" if not source.text else "one of true/false, yes/no, on/off, 1/0")


def integer(low: int, high: int | None = None, *, note: str = "") -> Parser:
    """A whole number from `low` (to `high`); `note` says why the range is what it is."""
    expected = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
    if note:
        expected += f" ({note})"

    def parse(value: object, source: Source) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif source.text and isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,20}\s*", value):
            number = int(value)
        if number is None or number < low or (high is not None and number > high):
            raise Invalid(expected)
        return number

    return parse


def seconds(high: float, *, zero: bool = False) -> Parser:
    """A finite number of seconds above 0 (or from 0, with `zero`) and at most `high`."""
    bound = ">= 0" if zero else "> 0"
    expected = f"a number of seconds {bound} and <= {high:g}"

    def parse(value: object, source: Source) -> float:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif source.text and isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
        if (
            number is None
            or not math.isfinite(number)
            or number < 0
            or (number == 0 and not zero)
            or number > high
        ):
            raise Invalid(expected)
        return number

    return parse


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a few words; `options` also become the flag's argparse choices."""

    options: tuple[str, ...]

    def __call__(self, value: object, source: Source) -> str:
        if isinstance(value, str) and value in self.options:
            return value
        raise Invalid("one of " + ", ".join(repr(option) for option in self.options))


@dataclass(frozen=True, slots=True)
class TlsVersion(Choice):
    """A TLS version: `"1.2"`; also `1.2` (a TOML float) and `TLSv1.2`."""

    def __call__(self, value: object, source: Source) -> str:
        # TOML users write `min_version = 1.2` as often as "1.2"; a float is unambiguous here.
        if isinstance(value, float) and repr(value) in self.options:
            return repr(value)
        if isinstance(value, str):
            word = value.strip().lower().removeprefix("tlsv")
            if word in self.options:
                return word
        raise Invalid("one of " + ", ".join(repr(option) for option in self.options))


def port_range(value: object, source: Source) -> tuple[int, int]:
    """`"16384-32767"` (file, environment, flag) or a two-element TOML array."""
    expected = "a port range 'LOW-HIGH' within 1024-65535 holding at least one even/odd pair"
    parts: list[object] = []
    if isinstance(value, str):
        parts = [part.strip() for part in value.split("-")]
    elif isinstance(value, list):
        parts = list(value)
    numbers = []
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            numbers.append(part)
        elif isinstance(part, str) and re.fullmatch(r"\d{1,5}", part):
            numbers.append(int(part))
    if len(numbers) != 2 or len(parts) != 2:
        raise Invalid(expected)
    low, high = numbers
    if not 1024 <= low < high <= 65535 or high - (low + low % 2) < 1:
        raise Invalid(expected)
    return low, high


def text(value: object, source: Source) -> str:
    """A non-empty string, stripped."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise Invalid("a non-empty string")


def secret_text(value: object, source: Source) -> str:
    """A non-empty string that is never quoted back (it may be the password itself)."""
    if isinstance(value, str) and value:
        return value
    raise Invalid(None, detail="expected a non-empty string")


def path(value: object, source: Source) -> Path:
    """A file or directory name; `~` expanded, relative to the file's directory in the file."""
    result = Path(text(value, source)).expanduser()
    if source.base is not None and not result.is_absolute():
        result = source.base / result
    return result


def certificate_files(value: object, source: Source) -> tuple[Path, ...]:
    """Existing certificate files: a TOML array, repeated flags, or text split at `os.pathsep`."""
    items: list[object]
    if isinstance(value, list):
        items = value
    elif source.text and isinstance(value, str):
        items = [part for part in value.split(os.pathsep) if part]
    else:
        raise Invalid("a list of certificate files")
    paths: list[Path] = []
    for item in items:
        try:
            name = path(item, source)
        except Invalid:
            raise Invalid("a list of certificate file names") from None
        # Not an "expected ..., got <the whole list>" message: the one file that is wrong.
        if not name.exists():
            raise Invalid(
                None,
                detail=f"the certificate file {str(name)!r} does not exist; give the path of a "
                "CA certificate file (PEM or DER)",
            )
        if not name.is_file():
            raise Invalid(
                None,
                detail=f"{str(name)!r} is not a file; give the path of a CA certificate file "
                "(PEM or DER)",
            )
        paths.append(name)
    return tuple(paths)


def address(value: object, source: Source) -> tuple[str, int | None]:
    """An IP address and maybe a port to listen on: `0.0.0.0:5061`, `[::]`, port 0 allowed."""
    written = text(value, source)
    try:
        host, port = split_host_port(written, allow_port_zero=True)
    except ValueError as exc:
        raise Invalid(f"HOST[:PORT] ({exc})") from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise Invalid("an IP address to listen on, like 0.0.0.0:5061 or [::]:5061") from None
    return host, port


def proxy(value: object, source: Source) -> str:
    """`host[:port]`, an IP literal (IPv6 in brackets) or a name."""
    written = text(value, source)
    try:
        split_host_port(written)
    except ValueError as exc:
        raise Invalid(f"HOST[:PORT] ({exc})") from None
    return written


def listen_host(value: object, source: Source) -> str:
    """An IP literal to bind (IPv6 with or without brackets)."""
    host = text(value, source).removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise Invalid("an IP address to listen on, like 0.0.0.0 or ::") from None
    return host


def aor(value: object, source: Source) -> str:
    """A `sip:`/`sips:` address of record with a user and a host."""
    written = text(value, source)
    try:
        aor_parts(written)
    except ValueError as exc:
        detail = str(exc)
        if detail.startswith("expected "):
            raise Invalid(detail.removeprefix("expected ")) from None
        raise Invalid(f"a SIP address of record with a valid host ({detail})") from None
    return written


def tls_name(value: object, source: Source) -> str:
    """A host name without a port."""
    written = text(value, source)
    try:
        host, port = split_host_port(written)
    except ValueError:
        host, port = "", None
    if not host or port is not None:
        raise Invalid("a host name (the name in the registrar's certificate), without a port")
    return host


def mac(value: object, source: Source) -> str:
    """A MAC address in any usual spelling, as 12 lowercase hex digits."""
    digits = re.sub(r"[:\-.]", "", text(value, source)).lower()
    if not re.fullmatch(r"[0-9a-f]{12}", digits):
        raise Invalid("a MAC address like 00:15:65:aa:bb:cc")
    return digits


def instance_id(value: object, source: Source) -> str:
    """A UUID URN (RFC 5626 §4.1 asks for a URN; a UUID one, RFC 4122, is the usual)."""
    import uuid

    written = text(value, source)
    try:
        return "urn:uuid:" + str(uuid.UUID(written.removeprefix("urn:uuid:")))
    except ValueError:
        raise Invalid("a UUID URN like urn:uuid:00000000-0000-4000-8000-000000000000") from None


def ciphers(value: object, source: Source) -> str:
    """An OpenSSL cipher list (printable ASCII; OpenSSL itself judges the names)."""
    written = text(value, source)
    if not written.isascii() or not written.isprintable():
        raise Invalid("an OpenSSL cipher list like 'ECDHE+AESGCM:ECDHE+CHACHA20'")
    return written


def groups(value: object, source: Source) -> str:
    """OpenSSL key-exchange group names separated by ':'."""
    written = text(value, source)
    if not written.isascii() or not written.isprintable() or " " in written:
        raise Invalid("OpenSSL group names separated by ':' like 'X25519:P-256'")
    return written


def pins(value: object, source: Source) -> tuple[str, ...]:
    """RFC 7469 SPKI pins: a TOML array, repeated flags, or text split at ','."""
    items: list[object]
    if isinstance(value, list):
        items = value
    elif source.text and isinstance(value, str):
        items = [part for part in value.split(",") if part.strip()]
    else:
        raise Invalid("a list of SPKI pins like ['sha256/AAAA...=']")
    found: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise Invalid("a list of SPKI pins like ['sha256/AAAA...=']")
        try:
            parse_pin(item)
        except ValueError as exc:
            raise Invalid(None, detail=f"{item[:MAX_SHOWN_CHARS]!r}: {exc}") from None
        found.append(item.strip())
    if not found:
        raise Invalid("at least one SPKI pin")
    return tuple(dict.fromkeys(found))


def url(value: object, source: Source) -> str:
    """A provisioning URL: `https://`, `file://` or `http://` (the last only when allowed)."""
    written = text(value, source)
    try:
        provisioning_url_scheme(written)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return written


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}\Z")


def account_name(value: object, source: Source) -> str:
    """A short label: letters, digits and `. _ @ + -`."""
    if isinstance(value, str) and _NAME.match(value):
        return value
    raise Invalid("a name of letters, digits and . _ @ + - (at most 64 characters)")


#: Longest value quoted back in an error message.
MAX_SHOWN_CHARS: Final = 60


def describe(value: object) -> str:
    """How a bad value is quoted back: short, and in TOML's words for non-text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= MAX_SHOWN_CHARS else value[:MAX_SHOWN_CHARS] + "..."
        return repr(shown)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


# --- small parsers shared by the settings parsers and by code that consumes settings ----------

#: The one hash RFC 7469 pins sipua takes (`sha256/BASE64` of the SubjectPublicKeyInfo).
PIN_PREFIX: Final = "sha256/"
_PIN_BASE64 = re.compile(r"[A-Za-z0-9+/]{43}=\Z")
#: URL schemes a provisioning URL may use (`http` only with `certificates.allow_http`).
PROVISIONING_SCHEMES: Final = ("https", "http", "file")


def parse_pin(written: str) -> bytes:
    """The SHA-256 digest an RFC 7469 pin (`sha256/BASE64`) names.

    Raises:
        ValueError: `written` is not `sha256/` followed by the base64 of 32 bytes.
    """
    import base64
    import binascii

    body = written.strip()
    if not body.startswith(PIN_PREFIX) or not _PIN_BASE64.match(body[len(PIN_PREFIX) :]):
        raise ValueError(
            "expected an SPKI pin like sha256/AAAA...= (RFC 7469: 'sha256/' and 44 base64 "
            "characters); `sipua cert show ID` prints a certificate's pin"
        )
    try:
        return base64.b64decode(body[len(PIN_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("the pin's base64 does not decode") from None


def provisioning_url_scheme(written: str) -> str:
    """The scheme of a provisioning URL, lower-cased.

    Raises:
        ValueError: not an `https://`, `http://` or `file://` URL with a host (or a file path).
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(written)
    except ValueError as exc:
        raise ValueError(f"not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in PROVISIONING_SCHEMES:
        raise ValueError("an https://, file:// or (when allowed) http:// URL")
    if scheme == "file":
        if not parts.path.startswith("/") or parts.netloc not in ("", "localhost"):
            raise ValueError("a file:// URL with an absolute path, like file:///etc/ca.pem")
    elif not parts.hostname:
        raise ValueError(f"a {scheme}:// URL with a host")
    return scheme


# RFC 3261 §19.1.1 SIP-URI = "sip:"/"sips:" [userinfo "@"] hostport ... ; an AOR needs the user.
_AOR = re.compile(r"(?P<scheme>sips?):(?P<user>[^@\s:;?]+)@(?P<hostport>[^;?>\s]+)\Z", re.I)


def aor_parts(written: str) -> tuple[str, str, str, int | None]:
    """Splits an address of record into scheme, user, host and port.

    Args:
        written: e.g. `sips:alice@example.test` or `sip:alice@[2001:db8::1]:5061`.

    Returns:
        `(scheme, user, host, port)`, the scheme lower-cased, port None when not given.

    Raises:
        ValueError: `written` is not a `sip:`/`sips:` URI with a user and a host.
    """
    match = _AOR.match(written)
    if match is None:
        raise ValueError("expected a SIP address of record like sips:alice@example.test")
    host, port = split_host_port(match["hostport"])
    # The core's RFC 3261 grammar, which every message sipua sends is held to (imported here:
    # the flags that import this module stay light for `sipua --help`).
    from sipua.sip.errors import ProtocolError
    from sipua.sip.uri import SipUri

    try:
        SipUri.parse(written)
    except ProtocolError:
        raise ValueError(
            f"expected a SIP address of record like sips:alice@example.test; the user part "
            f"{match['user'][:64]!r} holds characters a SIP URI allows only %-escaped "
            "(RFC 3261 §25.1: letters, digits and -_.!~*'()&=+$,/ or %HH)"
        ) from None
    return match["scheme"].lower(), match["user"], host, port


def choices_of(parse: Parser) -> Sequence[str] | None:
    """The words a parser takes, when it takes only a few (the flag's argparse choices)."""
    return parse.options if isinstance(parse, Choice) else None
