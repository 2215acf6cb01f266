"""Reading a desk phone's auto-provisioning file (`.cfg`) into sipua's settings.

The file is `#!version:1.0.0.1` on its first line, then `key = value` lines (blank lines and
`#` comments allowed; a value may be in double quotes; an empty value means "not set"). It is
peer input: `parse_phone_config` raises only `PhoneConfigError`, naming the file and line, and
bounds the file (1 MiB), a line (4 KiB) and the number of lines.

`translate` maps the keys sipua has a meaning for; every other key is listed back, never
silently dropped. A value sipua cannot take is refused naming its key and what is expected:
an account's expiry is listed (the account keeps sipua's default, read by the setting's own
parser), any other value fails the import.

The phone keys of the settings are declared with the settings themselves (`PhoneKey` in
`sipua.settings.model`: `static.security.trust_certificates` on `tls.only_trusted`, with its
value map), so a setting and its phone key cannot drift apart. The value maps used are the
ones confirmed in the public admin guides and templates (the README's "Phone config import"
says what was checked):

- `account.N.sip_server.M.transport_type`: 0 UDP, 1 TCP, 2 TLS, 3 DNS-NAPTR. sipua speaks only
  TLS: 2 (with the server's port as the proxy) and 3 (RFC 3263 location of the domain) are
  imported, 0 and 1 refused for that account.
- `account.N.sip_server.1.address`: the AOR's domain (and the proxy's host), a host name or an
  IP address; an IPv6 address is read with or without brackets and written in brackets once.
- `static.security.trust_certificates`, `static.security.cn_validation`: 0 off, 1 on.
- `static.trusted_certificates.url`, `static.server_certificates.url`: the provisioning URLs;
  their `.delete` counterparts take `http://localhost/all` (delete everything).

Keys whose value map could not be confirmed (declared `confirmed=False`) are refused with a
message saying what to set in sipua instead: `static.security.ca_cert` (which CA certificates
count), `static.security.dev_cert` (which device certificate) and
`static.security.default_ssl_method` (the TLS version).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, cast

from sipua.errors import ConfigError
from sipua.hostport import parse_port, split_host_port
from sipua.settings.model import SETTINGS
from sipua.settings.schema import PhoneKey, Setting
from sipua.settings.values import Invalid, Source, aor_parts, choices_of
from sipua.sip.uri import host_port

MAX_CFG_BYTES: Final = 1024 * 1024
MAX_LINE_CHARS: Final = 4096
MAX_LINES: Final = 100_000
VERSION_LINE: Final = "#!version:1.0.0.1"

_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,200}\Z")
_ACCOUNT_KEY = re.compile(r"account\.(\d{1,3})\.(.+)\Z")
#: The phone keys the settings declare, with the setting each carries.
PHONE_KEYS: Final[Mapping[str, tuple[Setting, PhoneKey]]] = {
    phone.key: (declared, phone) for declared in SETTINGS for phone in declared.phone
}

#: The setting `account.N.sip_server.1.expires` carries.
_EXPIRES: Final = next(declared for declared in SETTINGS if declared.key == "account.expires")


class PhoneConfigError(ConfigError):
    """A phone configuration file cannot be read; the message names the file and line."""


def parse_phone_config(data: bytes, *, source: str) -> dict[str, str]:
    """The `key = value` entries of a `.cfg` file (empty values left out).

    Raises:
        PhoneConfigError: not a phone configuration file, or a malformed line.
    """
    if len(data) > MAX_CFG_BYTES:
        raise PhoneConfigError(f"{source} is larger than {MAX_CFG_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PhoneConfigError(f"{source} is not UTF-8 text") from None
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        raise PhoneConfigError(f"{source} has more than {MAX_LINES} lines")
    if not lines or lines[0].strip() != VERSION_LINE:
        raise PhoneConfigError(
            f"{source} line 1: expected {VERSION_LINE!r}, the first line of a phone "
            "auto-provisioning file"
        )
    entries: dict[str, str] = {}
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        where = f"{source} line {number}"
        if len(line) > MAX_LINE_CHARS:
            raise PhoneConfigError(f"{where} is longer than {MAX_LINE_CHARS} characters")
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise PhoneConfigError(f"{where}: expected 'key = value', found {line[:60]!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key in entries:
            raise PhoneConfigError(f"{where}: {key} is set twice; keep one line")
        if value:
            entries[key] = value
    return entries


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportedAccount:
    """One account of the phone file, in sipua's terms (`password` never goes into TOML)."""

    index: int
    name: str
    aor: str
    username: str
    proxy: str | None
    expires: int | None
    register: bool
    password: str | None = field(default=None, repr=False)


@dataclass(slots=True)
class Imported:
    """What a phone file says, in sipua's terms, and what it says that sipua does not use."""

    #: Section (`tls`, `certificates`) -> key -> value, for the file's tables.
    sections: dict[str, dict[str, object]] = field(default_factory=dict)
    accounts: list[ImportedAccount] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _value(phone: PhoneKey, value: str, source: str) -> object:
    """The setting's value for the phone's `value`, through the declared value map."""
    if phone.values is None:
        return value
    if value in phone.values:
        return phone.values[value]
    if len(phone.values) == 1:
        raise PhoneConfigError(
            f"{source}: {phone.key} = {value[:60]!r}: sipua knows only {next(iter(phone.values))!r}"
        )
    raise PhoneConfigError(
        f"{source}: {phone.key} = {value[:40]!r}: expected {' or '.join(phone.values)}"
    )


def _instead(declared: Setting) -> str:
    """What to set in sipua instead of a refused phone key."""
    choices = choices_of(declared.parse)
    where = f"set [{declared.section}] {declared.name}"
    if choices is None:
        return where
    words = [repr(choice) for choice in choices]
    return f"{where} to {', '.join(words[:-1])} or {words[-1]}"


def translate(entries: Mapping[str, str], *, source: str) -> Imported:
    """Maps the phone's keys onto sipua's settings.

    Raises:
        PhoneConfigError: a key sipua uses has a value it cannot take.
    """
    result = Imported()
    accounts: dict[int, dict[str, str]] = {}
    for key, value in entries.items():
        if key in PHONE_KEYS:
            declared, phone = PHONE_KEYS[key]
            if not phone.confirmed:
                result.refused.append(
                    f"{key} = {value[:40]}: its value map is not confirmed by the public admin "
                    f"guides, so it is not imported; {_instead(declared)}"
                )
                continue
            section = result.sections.setdefault(declared.section, {})
            section[declared.name] = _value(phone, value, source)
        elif (match := _ACCOUNT_KEY.match(key)) is not None:
            accounts.setdefault(int(match[1]), {})[match[2]] = value
        else:
            result.unused.append(key)
    for index in sorted(accounts):
        _account(index, accounts[index], result, source)
    return result


_ACCOUNT_USED: Final = frozenset(
    {
        "enable",
        "label",
        "user_name",
        "auth_name",
        "password",
        "sip_server.1.address",
        "sip_server.1.port",
        "sip_server.1.transport_type",
        "sip_server.1.expires",
    }
)


def _server_host(index: int, address: str, source: str) -> str:
    """The host of `account.N.sip_server.1.address` (an IPv6 address without brackets).

    Phones write an IPv6 server with or without brackets (`::1`, `[::1]`); either is read.

    Raises:
        PhoneConfigError: not an IP address or host name, or a port in it.
    """
    key = f"account.{index}.sip_server.1.address = {address[:60]!r}"
    try:
        host, port = split_host_port(address, bare_ipv6=True)
    except ValueError as exc:
        raise PhoneConfigError(f"{source}: {key}: {exc}") from None
    if port is not None:
        raise PhoneConfigError(
            f"{source}: {key}: give the port in account.{index}.sip_server.1.port, "
            "the address is the host alone"
        )
    return host


def _server_port(index: int, port: str | None, source: str) -> int | None:
    """The port of `account.N.sip_server.1.port`; None when not set or 0 (none).

    Raises:
        PhoneConfigError: not a port from 0 to 65535.
    """
    if port is None or port == "0":
        return None
    try:
        return parse_port(port)
    except ValueError:
        raise PhoneConfigError(
            f"{source}: account.{index}.sip_server.1.port = {port[:20]!r}: "
            "expected a port from 1 to 65535, or 0 for none"
        ) from None


def _expires(index: int, written: str | None, result: Imported, source: str) -> int | None:
    """The account's `expires` from `account.N.sip_server.1.expires`, read by the setting's parser.

    A value the setting does not take is listed in `result.refused` with what it expects, and
    the account keeps sipua's default.
    """
    if written is None:
        return None
    key = f"account.{index}.sip_server.1.expires"
    try:
        value = _EXPIRES.parse(written, Source(where=f"{source}: {key}", text=True, base=None))
    except Invalid as exc:
        reason = f"expected {exc.expected}" if exc.expected is not None else str(exc)
        result.refused.append(
            f"{key} = {written[:40]!r}: {reason}, so it is not imported; the account registers "
            f"for sipua's default, {_EXPIRES.default_text()} s"
        )
        return None
    return cast("int", value)


def _aor(index: int, user: str, server: str, source: str) -> str:
    """`sips:USER@SERVER`, once the settings' own AOR reader (`aor_parts`, the SIP URI
    grammar) takes it: the loaded-back configuration is read the same way.

    Raises:
        PhoneConfigError: `account.N.user_name` is not a SIP user part (RFC 3261 §25.1 `user`;
            "100:pw" or "100@pbx" would not leave the server as it is).
    """
    aor = f"sips:{user}@{server}"
    try:
        aor_parts(aor)
    except ValueError:
        raise PhoneConfigError(
            f"{source}: account.{index}.user_name = {user[:60]!r}: not a SIP user name; use "
            "ASCII letters, digits and -_.!~*'()&=+$,/ (other characters as %XX escapes)"
        ) from None
    return aor


def _account(index: int, keys: dict[str, str], result: Imported, source: str) -> None:
    for sub in sorted(keys):
        if sub not in _ACCOUNT_USED:
            result.unused.append(f"account.{index}.{sub}")
    user = keys.get("user_name")
    host = keys.get("sip_server.1.address")
    if user is None or host is None:
        if user or host:
            result.refused.append(
                f"account.{index}: needs both user_name and sip_server.1.address; not imported"
            )
        return
    transport = keys.get("sip_server.1.transport_type", "0")
    if transport not in ("2", "3"):
        words = {"0": "UDP", "1": "TCP"}.get(transport, f"transport {transport!r}")
        result.refused.append(
            f"account.{index} ({user}@{host}) uses {words}; sipua speaks only SIP over TLS "
            "(transport_type 2, or 3 for DNS-NAPTR): not imported"
        )
        return
    # The AOR's domain and the proxy's host: one address, bracketed once when it is IPv6.
    server = host_port(_server_host(index, host, source))
    port = _server_port(index, keys.get("sip_server.1.port"), source)
    proxy = f"{server}:{port}" if transport == "2" and port is not None else None
    aor = _aor(index, user, server, source)
    expires = _expires(index, keys.get("sip_server.1.expires"), result, source)
    enable = keys.get("enable", "1")
    label = keys.get("label") or user
    name = re.sub(r"[^A-Za-z0-9._@+-]", "-", label)[:64].lstrip("._@+-") or f"account{index}"
    result.accounts.append(
        ImportedAccount(
            index=index,
            name=name,
            aor=aor,
            username=keys.get("auth_name") or user,
            proxy=proxy,
            expires=expires,
            register=enable == "1",
            password=keys.get("password"),
        )
    )
