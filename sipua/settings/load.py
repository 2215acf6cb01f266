"""Loading settings: a TOML file, then `SIPUA_*` environment variables, then command-line flags.

Theory of operation. Each source is turned into validated values keyed by a dotted setting name
(`expires` of an account is `account.expires`, the TLS floor is `tls.min_version`), each value
remembering where it came from (`config.toml: accounts[0].expires`, `SIPUA_EXPIRES`,
`--expires`). The layers are then laid over the model's defaults in precedence order:

    command-line flags  >  environment  >  configuration file  >  defaults (model.py)

so every error can name the file, variable or flag, the key, what was expected and what was
found. The file is strict: an unknown key is an error with a did-you-mean, because a typo such
as `only_trused = false` silently ignored would weaken the trust policy.

Account-level values from the environment and flags (`--aor`, `--expires`, ...) apply to one
account: the one `--account NAME` (or `SIPUA_ACCOUNT`) selects, else the file's only account, else
a new account made from the flags alone (so `--aor`, `--username` and `--password-file` are
enough to register without a file). With a selection, only that account is returned.

Lists from a higher layer replace, not extend, the lower layer's list (`--trusted-cert` replaces
`tls.trusted_certs` from the file): what the command line says is what runs.

Passwords come from `password_file`, `password_env` or a literal `password` in the file (allowed,
with a warning when the file is world-readable); from `SIPUA_PASSWORD` or `SIPUA_PASSWORD_FILE`;
and on the command line only as `--password-file`, never as a value (other users can read a
process's arguments). Relative paths in the file are relative to the file's directory; relative
paths from flags and the environment are relative to the working directory.

Environment variables (each overrides the file; the flag of the same name overrides it):

    SIPUA_CONFIG            configuration file (as --config)
    SIPUA_ACCOUNT           account to use (as --account)
    SIPUA_AOR, SIPUA_USERNAME, SIPUA_PROXY, SIPUA_TLS_NAME, SIPUA_EXPIRES,
    SIPUA_KEEPALIVE, SIPUA_INSTANCE_ID, SIPUA_ANSWER, SIPUA_AUTO_ANSWER_DELAY, SIPUA_REGISTER
                            the selected account's settings
    SIPUA_PASSWORD          the selected account's password (the value itself)
    SIPUA_PASSWORD_FILE     a file holding it
    SIPUA_TRUSTED_CERTS     trusted CA files, separated by ':' (os.pathsep)
    SIPUA_ONLY_TRUSTED, SIPUA_CA_TYPE, SIPUA_CN_VALIDATION, SIPUA_ALLOW_WILDCARDS,
    SIPUA_DEVICE_CERT, SIPUA_MAC, SIPUA_TLS_MIN_VERSION, SIPUA_TLS_MAX_VERSION,
    SIPUA_CIPHERS, SIPUA_KEYLOG_FILE, SIPUA_HANDSHAKE_TIMEOUT, SIPUA_VERIFY_CLIENT
                            the [tls] settings
    SIPUA_LISTEN (HOST:PORT), SIPUA_LISTEN_ENABLED, SIPUA_MAX_CONNECTIONS,
    SIPUA_MAX_CONNECTIONS_PER_ADDRESS, SIPUA_LISTEN_HANDSHAKE_TIMEOUT, SIPUA_IDLE_TIMEOUT,
    SIPUA_SERVERS_ONLY      the [listen] settings
    SIPUA_EXPIRY_WARNING_DAYS, SIPUA_CERT_CHECK_INTERVAL, SIPUA_TRUSTED_CERTIFICATES_URL,
    SIPUA_TRUSTED_CERTIFICATES_DELETE, SIPUA_SERVER_CERTIFICATES_URL,
    SIPUA_SERVER_CERTIFICATES_DELETE, SIPUA_PROVISION_INTERVAL, SIPUA_PROVISION_ALLOW_HTTP
                            the [certificates] settings
    SIPUA_PINS (separated by ','), SIPUA_TRUST_ON_FIRST_USE
                            the selected account's key continuity settings
    SIPUA_DATA_DIR, SIPUA_LOG_FORMAT, SIPUA_LOG_LEVEL, SIPUA_TRACE
                            the top-level settings

Booleans read from text accept 1/0, true/false, yes/no and on/off.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import stat
import tomllib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Final, Literal, cast

from sipua.errors import ConfigError
from sipua.settings.model import (
    ANSWER_POLICIES,
    CA_TYPES,
    DEVICE_CERTS,
    LOG_FORMATS,
    LOG_LEVELS,
    SRTP_POLICIES,
    TLS_VERSIONS,
    VERIFY_CLIENT_MODES,
    AccountSettings,
    CertificateSettings,
    ListenSettings,
    MediaSettings,
    Settings,
    TlsSettings,
    aor_parts,
    default_data_dir,
    parse_pin,
    provisioning_url_scheme,
    split_host_port,
)
from sipua.settings.secret import Secret

#: A configuration file larger than this is the wrong file.
MAX_CONFIG_BYTES: Final = 1024 * 1024
#: At most this many accounts per file (`sipua load` generates its accounts instead).
MAX_ACCOUNTS: Final = 1000
#: Longest value quoted back in an error message.
_MAX_SHOWN_CHARS: Final = 60

ENV_PREFIX: Final = "SIPUA_"


@dataclass(frozen=True, slots=True)
class Override:
    """One setting given by a higher layer than the file (a flag or an environment variable).

    Attributes:
        key: The dotted setting name: `data_dir`, `tls.ca_type`, `listen.address`,
            `account.expires`, ...
        value: The raw value: text (validated and converted by the loader), a bool, or a list
            of text for list settings.
        where: How the user wrote it, for error messages: `--expires`, `SIPUA_EXPIRES`.
    """

    key: str
    value: object
    where: str


#: Environment variable -> dotted setting name. SIPUA_CONFIG and SIPUA_ACCOUNT are read apart.
ENV_VARS: Final[Mapping[str, str]] = {
    "SIPUA_AOR": "account.aor",
    "SIPUA_USERNAME": "account.username",
    "SIPUA_PASSWORD": "account.password",
    "SIPUA_PASSWORD_FILE": "account.password_file",
    "SIPUA_PROXY": "account.proxy",
    "SIPUA_TLS_NAME": "account.tls_name",
    "SIPUA_EXPIRES": "account.expires",
    "SIPUA_REGISTER": "account.register",
    "SIPUA_KEEPALIVE": "account.keepalive_interval",
    "SIPUA_INSTANCE_ID": "account.instance_id",
    "SIPUA_AUTO_ANSWER_DELAY": "account.auto_answer_delay",
    "SIPUA_ANSWER": "account.answer",
    "SIPUA_SRTP": "account.srtp",
    "SIPUA_SYMMETRIC_RTP": "account.symmetric_rtp",
    "SIPUA_MEDIA_PORTS": "media.port_range",
    "SIPUA_TRUSTED_CERTS": "tls.trusted_certs",
    "SIPUA_ONLY_TRUSTED": "tls.only_trusted",
    "SIPUA_CA_TYPE": "tls.ca_type",
    "SIPUA_CN_VALIDATION": "tls.cn_validation",
    "SIPUA_ALLOW_WILDCARDS": "tls.allow_wildcards",
    "SIPUA_DEVICE_CERT": "tls.device_cert",
    "SIPUA_MAC": "tls.mac",
    "SIPUA_TLS_MIN_VERSION": "tls.min_version",
    "SIPUA_TLS_MAX_VERSION": "tls.max_version",
    "SIPUA_CIPHERS": "tls.ciphers",
    "SIPUA_TLS13_CIPHERS": "tls.tls13_ciphers",
    "SIPUA_TLS_GROUPS": "tls.groups",
    "SIPUA_KEYLOG_FILE": "tls.keylog_file",
    "SIPUA_HANDSHAKE_TIMEOUT": "tls.handshake_timeout",
    "SIPUA_VERIFY_CLIENT": "tls.verify_client",
    "SIPUA_LISTEN": "listen.address",
    "SIPUA_LISTEN_ENABLED": "listen.enabled",
    "SIPUA_MAX_CONNECTIONS": "listen.max_connections",
    "SIPUA_MAX_CONNECTIONS_PER_ADDRESS": "listen.max_connections_per_address",
    "SIPUA_LISTEN_HANDSHAKE_TIMEOUT": "listen.handshake_timeout",
    "SIPUA_IDLE_TIMEOUT": "listen.idle_timeout",
    "SIPUA_SERVERS_ONLY": "listen.servers_only",
    "SIPUA_EXPIRY_WARNING_DAYS": "certificates.expiry_warning_days",
    "SIPUA_CERT_CHECK_INTERVAL": "certificates.check_interval",
    "SIPUA_TRUSTED_CERTIFICATES_URL": "certificates.trusted_certificates_url",
    "SIPUA_TRUSTED_CERTIFICATES_DELETE": "certificates.trusted_certificates_delete",
    "SIPUA_SERVER_CERTIFICATES_URL": "certificates.server_certificates_url",
    "SIPUA_SERVER_CERTIFICATES_DELETE": "certificates.server_certificates_delete",
    "SIPUA_PROVISION_INTERVAL": "certificates.provision_interval",
    "SIPUA_PROVISION_ALLOW_HTTP": "certificates.allow_http",
    "SIPUA_PINS": "account.pins",
    "SIPUA_TRUST_ON_FIRST_USE": "account.trust_on_first_use",
    "SIPUA_DATA_DIR": "data_dir",
    "SIPUA_LOG_FORMAT": "log_format",
    "SIPUA_LOG_LEVEL": "log_level",
    "SIPUA_TRACE": "trace",
}
_ENV_SELECTORS: Final = ("SIPUA_CONFIG", "SIPUA_ACCOUNT")


# --- value converters --------------------------------------------------------------------------


class _Invalid(Exception):
    """A value is not what a setting expects; `expected` completes "expected ..."."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


@dataclass(frozen=True, slots=True)
class _Source:
    where: str  # "config.toml: accounts[0].expires", "SIPUA_EXPIRES", "--expires"
    text: bool  # the value may be text to parse (environment, flags)
    base: Path | None  # directory relative paths are relative to (the file's), else None


_Converter = Callable[[object, _Source], object]

_TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS: Final = frozenset({"0", "false", "no", "off"})


def _to_bool(value: object, source: _Source) -> bool:
    if isinstance(value, bool):
        return value
    if source.text and isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise _Invalid("true or false" if not source.text else "one of true/false, yes/no, on/off, 1/0")


def _int(low: int, high: int | None = None) -> _Converter:
    expected = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"

    def convert(value: object, source: _Source) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif source.text and isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,20}\s*", value):
            number = int(value)
        if number is None or number < low or (high is not None and number > high):
            raise _Invalid(expected)
        return number

    return convert


def _seconds(low: float, *, allow_low: bool, high: float) -> _Converter:
    bound = f">= {low:g}" if allow_low else f"> {low:g}"
    expected = f"a number of seconds {bound} and <= {high:g}"

    def convert(value: object, source: _Source) -> float:
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
            or number < low
            or (number == low and not allow_low)
            or number > high
        ):
            raise _Invalid(expected)
        return number

    return convert


def _choice(options: Sequence[str]) -> _Converter:
    expected = "one of " + ", ".join(repr(option) for option in options)

    def convert(value: object, source: _Source) -> str:
        if isinstance(value, str) and value in options:
            return value
        raise _Invalid(expected)

    return convert


def _tls_version(value: object, source: _Source) -> str:
    # TOML users write `min_version = 1.2` as often as "1.2"; a float is unambiguous here.
    if isinstance(value, float) and value in (1.0, 1.1, 1.2, 1.3):
        return f"{value:.1f}"
    if isinstance(value, str) and value.strip().lower().removeprefix("tlsv") in TLS_VERSIONS:
        return value.strip().lower().removeprefix("tlsv")
    raise _Invalid("one of '1.0', '1.1', '1.2', '1.3'")


def _port_range(value: object, source: _Source) -> tuple[int, int]:
    # "16384-32767" (TOML, environment, flag) or a two-element TOML array.
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
        raise _Invalid(expected)
    low, high = numbers
    if not 1024 <= low < high <= 65535 or high - (low + low % 2) < 1:
        raise _Invalid(expected)
    return low, high


def _text(value: object, source: _Source) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise _Invalid("a non-empty string")


def _path(value: object, source: _Source) -> Path:
    path = Path(_text(value, source)).expanduser()
    if source.base is not None and not path.is_absolute():
        path = source.base / path
    return path


def _trusted_certs(value: object, source: _Source) -> tuple[Path, ...]:
    items: list[object]
    if isinstance(value, list):
        items = value
    elif source.text and isinstance(value, str):
        items = [part for part in value.split(os.pathsep) if part]
    else:
        raise _Invalid("a list of certificate files")
    paths: list[Path] = []
    for item in items:
        try:
            path = _path(item, source)
        except _Invalid:
            raise _Invalid("a list of certificate file names") from None
        # Not an "expected ..., got <the whole list>" message: the one file that is wrong.
        if not path.exists():
            raise ConfigError(
                f"{source.where}: the certificate file {str(path)!r} does not exist; give the "
                "path of a CA certificate file (PEM or DER)"
            )
        if not path.is_file():
            raise ConfigError(
                f"{source.where}: {str(path)!r} is not a file; give the path of a CA "
                "certificate file (PEM or DER)"
            )
        paths.append(path)
    return tuple(paths)


def _address(*, allow_port_zero: bool, ip_only: bool) -> _Converter:
    def convert(value: object, source: _Source) -> tuple[str, int | None]:
        text = _text(value, source)
        try:
            host, port = split_host_port(text, allow_port_zero=allow_port_zero)
        except ValueError as exc:
            raise _Invalid(f"HOST[:PORT] ({exc})") from None
        if ip_only:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise _Invalid(
                    "an IP address to listen on, like 0.0.0.0:5061 or [::]:5061"
                ) from None
        return host, port

    return convert


def _proxy(value: object, source: _Source) -> str:
    text = _text(value, source)
    _address(allow_port_zero=False, ip_only=False)(text, source)
    return text


def _listen_host(value: object, source: _Source) -> str:
    host = _text(value, source).removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise _Invalid("an IP address to listen on, like 0.0.0.0 or ::") from None
    return host


def _aor(value: object, source: _Source) -> str:
    text = _text(value, source)
    try:
        aor_parts(text)
    except ValueError as exc:
        detail = str(exc)
        if detail.startswith("expected "):
            raise _Invalid(detail.removeprefix("expected ")) from None
        raise _Invalid(f"a SIP address of record with a valid host ({detail})") from None
    return text


def _tls_name(value: object, source: _Source) -> str:
    text = _text(value, source)
    try:
        host, port = split_host_port(text)
    except ValueError:
        host, port = "", None
    if not host or port is not None:
        raise _Invalid("a host name (the name in the registrar's certificate), without a port")
    return host


def _mac(value: object, source: _Source) -> str:
    text = _text(value, source)
    digits = re.sub(r"[:\-.]", "", text).lower()
    if not re.fullmatch(r"[0-9a-f]{12}", digits):
        raise _Invalid("a MAC address like 00:15:65:aa:bb:cc")
    return digits


def _instance_id(value: object, source: _Source) -> str:
    text = _text(value, source)
    try:
        # RFC 5626 §4.1: the instance id is a URN, and a UUID URN (RFC 4122) is the usual one.
        return "urn:uuid:" + str(uuid.UUID(text.removeprefix("urn:uuid:")))
    except ValueError:
        raise _Invalid("a UUID URN like urn:uuid:00000000-0000-4000-8000-000000000000") from None


def _ciphers(value: object, source: _Source) -> str:
    text = _text(value, source)
    if not text.isascii() or not text.isprintable():
        raise _Invalid("an OpenSSL cipher list like 'ECDHE+AESGCM:ECDHE+CHACHA20'")
    return text


def _groups(value: object, source: _Source) -> str:
    text = _text(value, source)
    if not text.isascii() or not text.isprintable() or " " in text:
        raise _Invalid("OpenSSL group names separated by ':' like 'X25519:P-256'")
    return text


def _pins(value: object, source: _Source) -> tuple[str, ...]:
    items: list[object]
    if isinstance(value, list):
        items = value
    elif source.text and isinstance(value, str):
        items = [part for part in value.split(",") if part.strip()]
    else:
        raise _Invalid("a list of SPKI pins like ['sha256/AAAA...=']")
    pins: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise _Invalid("a list of SPKI pins like ['sha256/AAAA...=']")
        try:
            parse_pin(item)
        except ValueError as exc:
            raise ConfigError(f"{source.where}: {str(item)[:_MAX_SHOWN_CHARS]!r}: {exc}") from None
        pins.append(item.strip())
    if not pins:
        raise _Invalid("at least one SPKI pin")
    return tuple(dict.fromkeys(pins))


def _url(value: object, source: _Source) -> str:
    text = _text(value, source)
    try:
        provisioning_url_scheme(text)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return text


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}\Z")


def _account_name(value: object, source: _Source) -> str:
    if isinstance(value, str) and _NAME.match(value):
        return value
    raise _Invalid("a name of letters, digits and . _ @ + - (at most 64 characters)")


# Dotted setting name -> converter. The file's sections use the part after the dot.
_TOP: Final[Mapping[str, _Converter]] = {
    "data_dir": _path,
    "log_format": _choice(LOG_FORMATS),
    "log_level": _choice(LOG_LEVELS),
    "trace": _to_bool,
}
_TLS: Final[Mapping[str, _Converter]] = {
    "trusted_certs": _trusted_certs,
    "only_trusted": _to_bool,
    "ca_type": _choice(CA_TYPES),
    "cn_validation": _to_bool,
    "allow_wildcards": _to_bool,
    "device_cert": _choice(DEVICE_CERTS),
    "mac": _mac,
    "min_version": _tls_version,
    "max_version": _tls_version,
    "ciphers": _ciphers,
    "tls13_ciphers": _ciphers,
    "groups": _groups,
    "keylog_file": _path,
    "handshake_timeout": _seconds(0, allow_low=False, high=600),
    "verify_client": _choice(VERIFY_CLIENT_MODES),
}
_LISTEN: Final[Mapping[str, _Converter]] = {
    "enabled": _to_bool,
    "host": _listen_host,
    "port": _int(0, 65535),
    "max_connections": _int(1, 1_000_000),
    "max_connections_per_address": _int(1, 1_000_000),
    "handshake_timeout": _seconds(0, allow_low=False, high=600),
    "idle_timeout": _seconds(0, allow_low=False, high=86_400),
    "servers_only": _to_bool,
}
_CERTIFICATES: Final[Mapping[str, _Converter]] = {
    "expiry_warning_days": _int(0, 3650),
    "check_interval": _seconds(0, allow_low=False, high=86_400),
    "trusted_certificates_url": _url,
    "trusted_certificates_delete": _to_bool,
    "server_certificates_url": _url,
    "server_certificates_delete": _to_bool,
    "provision_interval": _seconds(0, allow_low=False, high=30 * 86_400),
    "allow_http": _to_bool,
}
# RFC 3261 §20.19: Expires is a delta-seconds, at most 2**32 - 1.
_ACCOUNT: Final[Mapping[str, _Converter]] = {
    "name": _account_name,
    "aor": _aor,
    "username": _text,
    "proxy": _proxy,
    "tls_name": _tls_name,
    "expires": _int(0, 2**32 - 1),
    "register": _to_bool,
    "keepalive_interval": _seconds(0, allow_low=False, high=86_400),
    "instance_id": _instance_id,
    "auto_answer_delay": _seconds(0, allow_low=True, high=3600),
    "answer": _choice(ANSWER_POLICIES),
    "srtp": _choice(SRTP_POLICIES),
    "symmetric_rtp": _to_bool,
    "pins": _pins,
    "trust_on_first_use": _to_bool,
}
_MEDIA: Final[Mapping[str, _Converter]] = {"port_range": _port_range}
_PASSWORD_KEYS: Final = ("password", "password_file", "password_env")
_SECTIONS: Final[Mapping[str, Mapping[str, _Converter]]] = {
    "tls": _TLS,
    "listen": _LISTEN,
    "media": _MEDIA,
    "certificates": _CERTIFICATES,
}
_TOP_LEVEL_KEYS: Final = (*_TOP, *_SECTIONS, "accounts")


def _describe(value: object) -> str:
    """How a bad value is quoted back: short, and in TOML's words for non-text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= _MAX_SHOWN_CHARS else value[:_MAX_SHOWN_CHARS] + "..."
        return repr(shown)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _convert(converter: _Converter, value: object, source: _Source) -> object:
    try:
        return converter(value, source)
    except _Invalid as exc:
        raise ConfigError(
            f"{source.where}: expected {exc.expected}, got {_describe(value)}"
        ) from None


def _unknown_key(where: str, key: str, known: Iterable[str]) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else "; known keys: " + ", ".join(sorted(known))
    return ConfigError(f"{where}: unknown setting {key!r}{hint}")


# --- layers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PasswordSource:
    kind: Literal["literal", "file", "env"]
    value: str  # the literal password, a path, or a variable name
    where: str
    path: Path | None = None  # password_file, resolved


@dataclass(slots=True)
class _Values:
    """Validated values of one layer (or of one account), each with where it came from."""

    values: dict[str, object] = field(default_factory=dict)
    wheres: dict[str, str] = field(default_factory=dict)
    password: _PasswordSource | None = None

    def put(self, key: str, value: object, where: str) -> None:
        self.values[key] = value
        self.wheres[key] = where

    def update(self, other: _Values) -> None:
        self.values.update(other.values)
        self.wheres.update(other.wheres)
        if other.password is not None:
            self.password = other.password


@dataclass(slots=True)
class _Layer:
    general: _Values = field(default_factory=_Values)  # top-level, tls.*, listen.*
    account: _Values = field(default_factory=_Values)  # account.* from env/flags
    accounts: list[_Values] = field(default_factory=list)  # from the file
    warnings: list[str] = field(default_factory=list)


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file; check --config") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; is it the right file?")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message gives the line and column, never a value (no secret can leak).
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _is_world_readable(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


def _file_layer(path: Path) -> _Layer:
    document = _read_toml(path)
    base = path.parent.resolve()
    layer = _Layer()

    def source(where: str) -> _Source:
        return _Source(where=f"{path}: {where}", text=False, base=base)

    for key, value in document.items():
        if key in _TOP:
            layer.general.put(key, _convert(_TOP[key], value, source(key)), f"{path}: {key}")
        elif key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{path}: {key}: expected a table ([{key}]), got {_describe(value)}"
                )
            converters = _SECTIONS[key]
            for sub, sub_value in value.items():
                where = f"{key}.{sub}"
                if sub not in converters:
                    raise _unknown_key(f"{path}: {key}", sub, converters)
                converted = _convert(converters[sub], sub_value, source(where))
                layer.general.put(where, converted, f"{path}: {where}")
        elif key == "accounts":
            layer.accounts = _file_accounts(path, value, source, layer.warnings)
        else:
            raise _unknown_key(str(path), key, _TOP_LEVEL_KEYS)
    return layer


def _file_accounts(
    path: Path, value: object, source: Callable[[str], _Source], warnings: list[str]
) -> list[_Values]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(f"{path}: accounts: expected an array of tables ([[accounts]])")
    if len(value) > MAX_ACCOUNTS:
        raise ConfigError(f"{path}: accounts: more than {MAX_ACCOUNTS} accounts")
    accounts: list[_Values] = []
    for index, table in enumerate(cast(list[dict[str, object]], value)):
        prefix = f"accounts[{index}]"
        account = _Values()
        for key, item in table.items():
            where = f"{prefix}.{key}"
            if key in _PASSWORD_KEYS:
                account.password = _file_password(path, key, item, source(where), account, warnings)
            elif key in _ACCOUNT:
                account.put(key, _convert(_ACCOUNT[key], item, source(where)), f"{path}: {where}")
            else:
                raise _unknown_key(f"{path}: {prefix}", key, (*_ACCOUNT, *_PASSWORD_KEYS))
        accounts.append(account)
    return accounts


def _file_password(
    path: Path, key: str, value: object, source: _Source, account: _Values, warnings: list[str]
) -> _PasswordSource:
    if account.password is not None:
        raise ConfigError(
            f"{source.where}: set only one of password, password_file and password_env"
        )
    if not isinstance(value, str) or not value:
        # Never quote the value back: it may be the password itself.
        raise ConfigError(f"{source.where}: expected a non-empty string")
    if key == "password":
        if _is_world_readable(path):
            warnings.append(
                f"{path} holds a password and other users can read it; "
                f"run `chmod o-r {path}` or move the password to password_file"
            )
        return _PasswordSource("literal", value, source.where)
    if key == "password_env":
        return _PasswordSource("env", value, source.where)
    return _PasswordSource("file", value, source.where, path=_path(value, source))


def _override_layer(overrides: Iterable[Override], *, text_base: Path | None = None) -> _Layer:
    layer = _Layer()
    for override in overrides:
        section, _, name = override.key.partition(".")
        source = _Source(where=override.where, text=True, base=text_base)
        if override.key in ("account.password", "account.password_file"):
            if layer.account.password is not None:
                raise ConfigError(
                    f"{override.where}: the password is already given by "
                    f"{layer.account.password.where}; give only one"
                )
            if not isinstance(override.value, str) or not override.value:
                raise ConfigError(f"{override.where}: expected a non-empty string")
            if name == "password":
                layer.account.password = _PasswordSource("literal", override.value, override.where)
            else:
                path = _path(override.value, source)
                layer.account.password = _PasswordSource(
                    "file", override.value, override.where, path=path
                )
        elif section == "account" and name in _ACCOUNT:
            layer.account.put(name, _convert(_ACCOUNT[name], override.value, source), source.where)
        elif override.key == "listen.address":
            converter = _address(allow_port_zero=True, ip_only=True)
            address = cast(tuple[str, int | None], _convert(converter, override.value, source))
            layer.general.put("listen.host", address[0], source.where)
            if address[1] is not None:
                layer.general.put("listen.port", address[1], source.where)
            layer.general.put("listen.enabled", True, source.where)
        elif section in _SECTIONS and name in _SECTIONS[section]:
            converted = _convert(_SECTIONS[section][name], override.value, source)
            layer.general.put(override.key, converted, source.where)
        elif not name and section in _TOP:
            layer.general.put(
                section, _convert(_TOP[section], override.value, source), source.where
            )
        else:
            raise ValueError(f"unknown setting key {override.key!r} from {override.where}")
    return layer


def overrides_from_env(env: Mapping[str, str]) -> tuple[list[Override], list[str]]:
    """Reads the `SIPUA_*` variables (see the module docstring) as overrides.

    Empty variables count as unset, as shells make it easy to export an empty one by mistake.

    Args:
        env: The environment.

    Returns:
        The overrides, and warnings about unknown `SIPUA_*` variables that look like typos of
        known ones (other `SIPUA_` variables are left alone: test scripts use the prefix too).
    """
    overrides: list[Override] = []
    warnings: list[str] = []
    known = (*ENV_VARS, *_ENV_SELECTORS)
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or not value:
            continue
        if name in ENV_VARS:
            overrides.append(Override(ENV_VARS[name], value, name))
        elif name not in _ENV_SELECTORS:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
            if close:
                warnings.append(f"environment variable {name} is not a sipua setting; {close[0]}?")
    return overrides, warnings


# --- resolution --------------------------------------------------------------------------------


def _resolve_password(
    source: _PasswordSource, env: Mapping[str, str], warnings: list[str]
) -> Secret:
    if source.kind == "literal":
        return Secret(source.value)
    try:
        if source.kind == "env":
            return Secret.from_env(source.value, env)
        assert source.path is not None
        secret = Secret.from_file(source.path)
    except ConfigError as exc:
        raise ConfigError(f"{source.where}: {exc}") from None
    if _is_world_readable(source.path):
        warnings.append(
            f"password file {source.path} can be read by other users; run `chmod 600 {source.path}`"
        )
    return secret


def _build_account(
    draft: _Values, env: Mapping[str, str], warnings: list[str], hint: str
) -> AccountSettings:
    values = dict(draft.values)
    aor = values.get("aor")
    if not isinstance(aor, str):
        name = values.get("name")
        label = f"account {name!r}" if name else "the account"
        raise ConfigError(
            f"{label} has no address of record; {hint} (e.g. --aor sips:alice@example.test)"
        )
    _, user, _, _ = aor_parts(aor)
    values.setdefault("name", user)
    # RFC 3261 §22.4 leaves the digest user name to the deployment; most use the AOR's user.
    values.setdefault("username", user)
    if draft.password is not None:
        values["password"] = _resolve_password(draft.password, env, warnings)
    return AccountSettings(**values)  # type: ignore[arg-type]  # converters checked each type


def _section(
    cls: type[TlsSettings | ListenSettings | MediaSettings | CertificateSettings],
    prefix: str,
    merged: _Values,
) -> object:
    names = {f.name for f in fields(cls)}
    kwargs = {
        key.removeprefix(prefix): value
        for key, value in merged.values.items()
        if key.startswith(prefix) and key.removeprefix(prefix) in names
    }
    return cls(**kwargs)  # type: ignore[arg-type]  # converters checked each type


def _select_accounts(
    file_accounts: list[_Values],
    account_layer: _Values,
    selected: str | None,
    config: Path | None,
) -> tuple[list[_Values], str]:
    """Applies the account-level overrides and picks the accounts to return.

    Returns:
        The account drafts, and a hint on where an address of record could come from.
    """

    def name_of(draft: _Values) -> str | None:
        name = draft.values.get("name")
        if isinstance(name, str):
            return name
        aor = draft.values.get("aor")
        return aor_parts(aor)[1] if isinstance(aor, str) else None

    names = [name_of(draft) for draft in file_accounts]
    for index, name in enumerate(names):
        if name is None:
            raise ConfigError(f"{config}: accounts[{index}]: set name or aor")
        if names.index(name) != index:
            raise ConfigError(
                f"{config}: accounts[{index}]: another account is also called {name!r}; "
                "give each account a distinct name"
            )
    hint = "pass --aor" if config is None else f"set aor in {config} or pass --aor"
    has_overrides = bool(account_layer.values) or account_layer.password is not None

    if selected is not None:
        if selected in names:
            chosen = file_accounts[names.index(selected)]
        elif "aor" in account_layer.values:
            chosen = _Values()
            source = _Source(where="--account", text=True, base=None)
            chosen.put("name", _convert(_account_name, selected, source), "--account")
        else:
            where = f"in {config}" if config is not None else "(no configuration file given)"
            close = difflib.get_close_matches(selected, [n for n in names if n], n=1)
            suggestion = f"; did you mean {close[0]!r}?" if close else ""
            listed = f"; its accounts: {', '.join(n for n in names if n)}" if names else ""
            raise ConfigError(
                f"--account: no account named {selected!r} {where}{suggestion}{listed}; "
                "or pass --aor to define it on the command line"
            )
        chosen.update(account_layer)
        return [chosen], hint

    if has_overrides:
        if len(file_accounts) > 1:
            first = next(iter(account_layer.wheres.values()), None) or (
                account_layer.password.where if account_layer.password else "the account flags"
            )
            raise ConfigError(
                f"{first} applies to one account, but {config} has {len(file_accounts)} "
                f"({', '.join(n for n in names if n)}); choose one with --account NAME"
            )
        if file_accounts:
            file_accounts[0].update(account_layer)
        else:
            file_accounts = [account_layer]
    return file_accounts, hint


def _check_certificates(certificates: CertificateSettings, merged: _Values) -> None:
    """Refuses a plain http:// provisioning URL unless `allow_http` says so."""
    for name in ("trusted_certificates_url", "server_certificates_url"):
        url = getattr(certificates, name)
        if (
            url is not None
            and provisioning_url_scheme(url) == "http"
            and not (certificates.allow_http)
        ):
            where = merged.wheres.get(f"certificates.{name}", name)
            raise ConfigError(
                f"{where}: {url[:_MAX_SHOWN_CHARS]!r} is plain http://: anyone on the path could "
                "change what sipua trusts; use https://, or set certificates.allow_http = true "
                "(--allow-http-provisioning) if the network is yours"
            )


def load_settings(
    config: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[Override] = (),
    account: str | None = None,
) -> Settings:
    """Loads settings from a file, the environment and overrides, in precedence order.

    Args:
        config: The TOML file; None reads `SIPUA_CONFIG`, and without it no file is read.
        env: The environment; `os.environ` if omitted.
        overrides: Values from command-line flags (they win over everything else).
        account: The account to select; None reads `SIPUA_ACCOUNT`. With a selection only
            that account is returned.

    Returns:
        The settings, with secrets read and `config_warnings` filled in.

    Raises:
        ConfigError: A file, variable or flag is wrong; the message names it.
    """
    environ = os.environ if env is None else env
    if config is None and environ.get("SIPUA_CONFIG"):
        config = environ["SIPUA_CONFIG"]
    if account is None:
        account = environ.get("SIPUA_ACCOUNT") or None
    config_path = Path(config).expanduser() if config is not None else None

    file_layer = _file_layer(config_path) if config_path is not None else _Layer()
    env_overrides, env_warnings = overrides_from_env(environ)
    env_layer = _override_layer(env_overrides)
    flag_layer = _override_layer(overrides)

    warnings = [*file_layer.warnings, *env_warnings]
    merged = _Values()
    account_layer = _Values()
    for layer in (file_layer, env_layer, flag_layer):
        merged.update(layer.general)
        account_layer.update(layer.account)

    drafts, hint = _select_accounts(file_layer.accounts, account_layer, account, config_path)
    accounts = tuple(_build_account(draft, environ, warnings, hint) for draft in drafts)

    tls = cast(TlsSettings, _section(TlsSettings, "tls.", merged))
    listen = cast(ListenSettings, _section(ListenSettings, "listen.", merged))
    media = cast(MediaSettings, _section(MediaSettings, "media.", merged))
    certificates = cast(CertificateSettings, _section(CertificateSettings, "certificates.", merged))
    _check_certificates(certificates, merged)
    for built in accounts:
        if built.pins and built.trust_on_first_use:
            raise ConfigError(
                f"account {built.name!r}: set either pins or trust_on_first_use, not both "
                "(pins already say which key to expect)"
            )
    if tls.max_version is not None and tls.max_version < tls.min_version:
        floor_from = merged.wheres.get("tls.min_version", "the default")
        raise ConfigError(
            f"{merged.wheres['tls.max_version']}: TLS {tls.max_version} is below the minimum "
            f"version {tls.min_version} (from {floor_from})"
        )
    if tls.keylog_file is not None:
        warnings.append(
            f"TLS key logging is on: session keys go to {tls.keylog_file}; "
            "anyone holding that file can decrypt the captured traffic"
        )
    if not tls.only_trusted:
        warnings.append(
            "tls.only_trusted is off: peers whose certificates do not verify are accepted "
            "(and the lock shows locked-unverified)"
        )

    top = {key: merged.values[key] for key in _TOP if key in merged.values}
    top.setdefault("data_dir", default_data_dir(environ))
    settings = Settings(
        accounts=accounts,
        tls=tls,
        listen=listen,
        media=media,
        certificates=certificates,
        **top,  # type: ignore[arg-type]
    )
    return replace(settings, config_warnings=tuple(warnings))
