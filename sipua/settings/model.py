"""The settings model: what sipua can be told, and every default, in one place.

These are frozen, slotted dataclasses: once loaded (`sipua.settings.load`), settings do not
change under a running user agent. Defaults live here and only here; the example configuration
(`config/sipua.example.toml`) and the command-line help describe them, and a test checks the
example against this module.

Values here are already validated by the loader; code that builds settings by hand (tests, the
load generator) is trusted to pass sensible values.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from sipua.settings.secret import Secret

LogFormat = Literal["console", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
AnswerPolicy = Literal["accept", "busy", "decline"]
CaType = Literal["default", "custom", "all"]
DeviceCert = Literal["default", "generic", "custom"]
TlsVersion = Literal["1.0", "1.1", "1.2", "1.3"]
VerifyClient = Literal["none", "request", "require"]
SrtpPolicy = Literal["disabled", "optional", "compulsory"]

LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("console", "json")
LOG_LEVELS: Final[tuple[LogLevel, ...]] = ("debug", "info", "warning", "error")
ANSWER_POLICIES: Final[tuple[AnswerPolicy, ...]] = ("accept", "busy", "decline")
CA_TYPES: Final[tuple[CaType, ...]] = ("default", "custom", "all")
DEVICE_CERTS: Final[tuple[DeviceCert, ...]] = ("default", "generic", "custom")
TLS_VERSIONS: Final[tuple[TlsVersion, ...]] = ("1.0", "1.1", "1.2", "1.3")
VERIFY_CLIENT_MODES: Final[tuple[VerifyClient, ...]] = ("none", "request", "require")
SRTP_POLICIES: Final[tuple[SrtpPolicy, ...]] = ("disabled", "optional", "compulsory")


#: The response code each answer policy sends to an inbound INVITE (accept answers with 200).
ANSWER_STATUS: Final[Mapping[AnswerPolicy, int]] = {"accept": 200, "busy": 486, "decline": 603}


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSettings:
    """One SIP account: who we are, where we register, and how we answer.

    Attributes:
        name: A short label used in logs (`account=`) and on the command line (`--account`).
        aor: The address of record, e.g. `sips:alice@example.test`.
        username: The digest authentication user name (RFC 3261 §22.4).
        password: The digest password, or None when the registrar does not challenge.
        proxy: Where to send requests, `host[:port]` (an IP literal or a name; IPv6 in
            brackets). None means RFC 3263 location of the AOR's domain.
        tls_name: The name the registrar's certificate must carry (RFC 5922 §7.1). None means
            the AOR's domain, which is what RFC 5922 asks for.
        expires: The registration lifetime asked for, in seconds (RFC 3261 §10.2.1.1).
        register: Whether to register at all (False: listen and place calls only).
        keepalive_interval: Seconds between RFC 5626 §4.4.1 CRLF keep-alive pings. None means
            the RFC's choice: a random interval between 95 and 120 seconds (§4.4.1 asks for
            80-100% of a 120 s recommendation, so pings from many phones do not synchronise).
        instance_id: The `+sip.instance` URN (RFC 5626 §4.1), `urn:uuid:...`. None lets the
            user agent create one and keep it in the data directory.
        auto_answer_delay: Seconds an inbound call rings before `answer` is applied.
        answer: What to do with an inbound call: `accept` (200), `busy` (486) or `decline`
            (603).
        srtp: The phone's "RTP encryption" (SRTP with SDES keys): `disabled` never offers it,
            `optional` offers it and accepts plain RTP too, `compulsory` offers only SRTP and
            refuses a plain answer. The default is `optional`: desk phones ship `disabled`
            because they also signal over UDP, where SDES keys would travel in the clear;
            sipua signals only over TLS, and an optional offer (RTP/AVP with a=crypto) is
            taken as plain RTP by a peer without SRTP, so it costs nothing.
        symmetric_rtp: Send RTP to where the peer's RTP comes from, once it has arrived (RFC
            4961, and the way through a NAT); off, only the SDP's address and port are used
            and packets from elsewhere are counted and dropped.
        pins: SPKI pins of the registrar, `sha256/BASE64` (RFC 7469 §2.4), checked after the
            chain and the name: one of the verified path's keys must match one pin.
        trust_on_first_use: Record the registrar's key on first contact (in the data
            directory) and refuse a different key later, as SSH's known_hosts does; a chain
            that fails only for want of a trusted issuer is then accepted on that basis.
    """

    name: str
    aor: str
    username: str
    password: Secret | None = None
    proxy: str | None = None
    tls_name: str | None = None
    expires: int = 600
    register: bool = True
    keepalive_interval: float | None = None
    instance_id: str | None = None
    auto_answer_delay: float = 1.0
    answer: AnswerPolicy = "accept"
    srtp: SrtpPolicy = "optional"
    symmetric_rtp: bool = True
    # Key continuity: pinning and trust on first use.
    pins: tuple[str, ...] = ()
    trust_on_first_use: bool = False

    @property
    def domain(self) -> str:
        """The AOR's host, e.g. `example.test` for `sips:alice@example.test`."""
        return aor_parts(self.aor)[2]

    def proxy_address(self) -> tuple[str, int | None] | None:
        """The proxy as `(host, port)`, port None when not given; None without a proxy."""
        return None if self.proxy is None else split_host_port(self.proxy)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSettings:
    """The TLS trust policy and versions, shared by every account (as on desk phones).

    Attributes:
        trusted_certs: Extra trusted CA files (PEM or DER), added to the store's own list.
        only_trusted: Refuse a peer whose chain does not verify ("Only Accept Trusted
            Certificates"). False still verifies, and reports why a peer is untrusted.
        ca_type: Which trusted CAs count: the built-in `default` bundle, the `custom` ones
            (store and `trusted_certs`), or `all`.
        cn_validation: Check the peer's identity against the name we dialled (RFC 5922 §7.1).
        allow_wildcards: Accept `*.example.test` certificates (RFC 2818 style). RFC 5922 §7.2
            forbids them for SIP, so this is off by default.
        device_cert: Our certificate for the listener and mutual TLS: the `default` generated
            device certificate (the unique one for the MAC address, else the generic one), the
            `generic` one even when a MAC address is known, or the `custom` one uploaded to the
            store.
        mac: The device MAC address (12 lowercase hex digits) whose unique certificate is
            preferred over the generic one; None uses this machine's MAC address when it has
            one, else the generic certificate.
        min_version: The lowest TLS version offered or accepted.
        max_version: The highest TLS version; None means the newest the library supports.
        ciphers: An OpenSSL cipher list for TLS 1.2 and below; None keeps OpenSSL's default.
        tls13_ciphers: TLS 1.3 cipher suites, colon-separated (e.g. `TLS_AES_128_GCM_SHA256`);
            None keeps OpenSSL's default.
        groups: Key-exchange groups to offer, colon-separated OpenSSL names (e.g. `X25519`);
            None keeps OpenSSL's default, which puts the post-quantum hybrid X25519MLKEM768
            first.
        keylog_file: Where to append NSS key-log lines for Wireshark; None disables it.
        handshake_timeout: Seconds a TLS handshake sipua starts (to the registrar) may take
            before it is abandoned; inbound handshakes have `listen.handshake_timeout`.
        verify_client: Whether the listener asks inbound peers for a certificate: `none`,
            `request` (verify one if sent) or `require`.
    """

    trusted_certs: tuple[Path, ...] = ()
    only_trusted: bool = True
    ca_type: CaType = "all"
    cn_validation: bool = True
    allow_wildcards: bool = False
    device_cert: DeviceCert = "default"
    mac: str | None = None
    min_version: TlsVersion = "1.2"
    max_version: TlsVersion | None = None
    ciphers: str | None = None
    tls13_ciphers: str | None = None
    groups: str | None = None
    keylog_file: Path | None = None
    handshake_timeout: float = 10.0
    verify_client: VerifyClient = "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenSettings:
    """The inbound TLS listener (for calls that arrive on a new connection).

    The default address is 127.0.0.1: a user agent started on a laptop or in CI does not open a
    port to the network unless told to. A desk-phone deployment sets `host = "0.0.0.0"` (or
    `"::"`), as `config/sipua.example.toml` shows.

    The default port is 0: the system picks a free one, as softphones do, and the Contact sipua
    registers carries it, so the registrar reaches the listener there. A fixed port (5061, the
    SIPS port) would collide with a registrar on the same machine, the first setup most people
    try; a deployment behind a firewall sets one.

    Attributes:
        enabled: Whether to listen at all.
        host: The local address to bind (an IP literal).
        port: The local port; 0 for a free one the system picks.
        max_connections: Inbound connections held at once; more are refused. The last 16
            (at most a quarter) are kept for the servers sipua registers with.
        max_connections_per_address: Inbound connections one source address (an IPv6 /64)
            may hold at once; more are refused. The servers sipua registers with are exempt.
        handshake_timeout: Seconds an inbound client has for its TLS handshake; shorter than
            `tls.handshake_timeout` for our own connections, because a client that connects and
            stays silent holds a place until then.
        idle_timeout: Seconds an inbound connection may stay silent before it is closed.
        servers_only: Accept inbound connections only from the servers sipua registers with
            (the addresses its registrar or outbound proxy resolved to), as desk phones' "Accept
            SIP Trust Server Only"; every other source is refused and logged.
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 0
    max_connections: int = 256
    max_connections_per_address: int = 8
    handshake_timeout: float = 3.0
    idle_timeout: float = 300.0
    servers_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaSettings:
    """RTP media, shared by every account.

    Attributes:
        port_range: The UDP ports calls' RTP and RTCP use, both ends included: each call takes
            an even port and the odd one above it (RFC 3550 §11). 16384-32767 is the range
            desk phones and PBXs use by default; a range with no free pair left answers an
            inbound call 503.
    """

    port_range: tuple[int, int] = (16384, 32767)


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateSettings:
    """Certificates through their life: expiry warnings, renewal checks, provisioning URLs.

    The URL settings are named after a desk phone's auto-provisioning keys
    (`static.trusted_certificates.url`, `static.server_certificates.url` and their `.delete`
    counterparts). A URL is `https://` (verified with sipua's own trust policy and trusted
    list), `file://`, or `http://` only with `allow_http`.

    Attributes:
        expiry_warning_days: Warn (and emit `certificate-expiring`) when a custom trusted
            certificate or a device certificate in use expires within this many days.
        check_interval: Seconds between checks of a running `sipua register` for expiring
            certificates and device certificates due for renewal.
        trusted_certificates_url: Where to fetch custom trusted certificates (PEM or DER).
        trusted_certificates_delete: Delete the custom trusted certificates at each
            provisioning run (with a URL: the list becomes exactly what the URL serves).
        server_certificates_url: Where to fetch the custom device certificate with its key.
        server_certificates_delete: Remove the custom device certificate at each run (ignored
            when `server_certificates_url` is set: the fetched one replaces it anyway).
        provision_interval: Seconds between provisioning runs of a running `sipua register`;
            None fetches at start only.
        allow_http: Allow plain `http://` provisioning URLs (no integrity: anyone on the
            path can change what sipua trusts).
    """

    expiry_warning_days: int = 30
    check_interval: float = 3600.0
    trusted_certificates_url: str | None = None
    trusted_certificates_delete: bool = False
    server_certificates_url: str | None = None
    server_certificates_delete: bool = False
    provision_interval: float | None = None
    allow_http: bool = False

    @property
    def provisioning(self) -> bool:
        """Whether any provisioning URL or delete is configured."""
        return bool(
            self.trusted_certificates_url
            or self.server_certificates_url
            or self.trusted_certificates_delete
            or self.server_certificates_delete
        )


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The state directory when none is configured: `$XDG_DATA_HOME/sipua` or
    `~/.local/share/sipua` (the XDG base directory specification's default).

    Args:
        env: The environment to read; `os.environ` if omitted.
    """
    environ = os.environ if env is None else env
    xdg = environ.get("XDG_DATA_HOME")
    # The XDG spec says a relative $XDG_DATA_HOME is invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "sipua"
    home = environ.get("HOME")
    base = Path(home) if home else Path.home()
    return base / ".local" / "share" / "sipua"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything a sipua process is configured with.

    Attributes:
        accounts: The accounts to run (after `--account`, only the selected one).
        tls: The TLS trust policy and versions.
        listen: The inbound listener.
        media: RTP media (the port range).
        certificates: Expiry warnings, renewal checks and provisioning URLs.
        data_dir: Where the certificate store and other state live.
        log_format: `console` (a readable line per event) or `json` (one object per line).
        log_level: The lowest level logged.
        trace: Log every SIP message sent and received (credentials redacted).
        config_warnings: Things the loader found risky but allowed (a world-readable file
            with a password); the user agent logs them once logging is set up.
    """

    accounts: tuple[AccountSettings, ...] = ()
    tls: TlsSettings = field(default_factory=TlsSettings)
    listen: ListenSettings = field(default_factory=ListenSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    certificates: CertificateSettings = field(default_factory=CertificateSettings)
    data_dir: Path = field(default_factory=default_data_dir)
    log_format: LogFormat = "console"
    log_level: LogLevel = "info"
    trace: bool = False
    config_warnings: tuple[str, ...] = ()

    def account(self, name: str) -> AccountSettings:
        """Returns the account called `name`.

        Raises:
            KeyError: No account has that name.
        """
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)


# --- small parsers shared by the loader and by code that consumes settings ---------------------

#: The one hash RFC 7469 pins sipua takes (`sha256/BASE64` of the SubjectPublicKeyInfo).
PIN_PREFIX: Final = "sha256/"
_PIN_BASE64 = re.compile(r"[A-Za-z0-9+/]{43}=\Z")
#: URL schemes a provisioning URL may use (`http` only with `certificates.allow_http`).
PROVISIONING_SCHEMES: Final = ("https", "http", "file")


def parse_pin(text: str) -> bytes:
    """The SHA-256 digest an RFC 7469 pin (`sha256/BASE64`) names.

    Raises:
        ValueError: `text` is not `sha256/` followed by the base64 of 32 bytes.
    """
    import base64
    import binascii

    body = text.strip()
    if not body.startswith(PIN_PREFIX) or not _PIN_BASE64.match(body[len(PIN_PREFIX) :]):
        raise ValueError(
            "expected an SPKI pin like sha256/AAAA...= (RFC 7469: 'sha256/' and 44 base64 "
            "characters); `sipua cert show ID` prints a certificate's pin"
        )
    try:
        return base64.b64decode(body[len(PIN_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("the pin's base64 does not decode") from None


def provisioning_url_scheme(url: str) -> str:
    """The scheme of a provisioning URL, lower-cased.

    Raises:
        ValueError: not an `https://`, `http://` or `file://` URL with a host (or a file path).
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
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


_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?\Z"
)
# RFC 3261 §19.1.1 SIP-URI = "sip:"/"sips:" [userinfo "@"] hostport ... ; an AOR needs the user.
_AOR = re.compile(r"(?P<scheme>sips?):(?P<user>[^@\s:;?]+)@(?P<hostport>[^;?>\s]+)\Z", re.I)


def is_valid_host(host: str) -> bool:
    """Tells whether `host` is an IP literal (IPv6 without brackets) or a DNS name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME.match(host)) and not host.replace(".", "").isdigit()
    return True


def split_host_port(text: str, *, allow_port_zero: bool = False) -> tuple[str, int | None]:
    """Splits `host[:port]` (IPv6 in brackets: `[::1]:5061`) into host and port.

    Args:
        text: The address as written by the user.
        allow_port_zero: Accept port 0 (a listener asking the OS for a free port).

    Returns:
        The host (IPv6 without brackets) and the port, or None when no port was given.

    Raises:
        ValueError: The text is not a valid `host[:port]`; the message says what is wrong.
    """
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError("missing ']' after the IPv6 address")
        host, rest = text[1:close], text[close + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise ValueError("expected ':PORT' after ']'")
        port_text = rest[1:] if rest else None
    else:
        if text.count(":") > 1:
            raise ValueError("put an IPv6 address in brackets, e.g. [2001:db8::1]:5061")
        host, sep, tail = text.partition(":")
        port_text = tail if sep else None
        if not is_valid_host(host):
            raise ValueError(f"{host!r} is not an IP address or a host name")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or len(port_text) > 5:
        raise ValueError(f"port {port_text!r} is not a number")
    port = int(port_text)
    lowest = 0 if allow_port_zero else 1
    if not lowest <= port <= 65535:
        raise ValueError(f"port {port} is out of range {lowest}-65535")
    return host, port


def aor_parts(aor: str) -> tuple[str, str, str, int | None]:
    """Splits an address of record into scheme, user, host and port.

    Args:
        aor: e.g. `sips:alice@example.test` or `sip:alice@[2001:db8::1]:5061`.

    Returns:
        `(scheme, user, host, port)`, the scheme lower-cased, port None when not given.

    Raises:
        ValueError: `aor` is not a `sip:`/`sips:` URI with a user and a host.
    """
    match = _AOR.match(aor)
    if match is None:
        raise ValueError("expected a SIP address of record like sips:alice@example.test")
    host, port = split_host_port(match["hostport"])
    return match["scheme"].lower(), match["user"], host, port
