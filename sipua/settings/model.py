"""The settings model: what sipua can be told, and every default, in one place.

These are frozen, slotted dataclasses: once loaded (`sipua.settings.load`), settings do not
change under a running user agent. Each field is declared here once, with its type, default,
parser, help, environment variable, flag and phone key (`declare`, `sipua.settings.schema`);
`SETTINGS` lists them all, and the loader, the flags and the phone import are derived from it.
Defaults live here and only here; the example configuration (`config/sipua.example.toml`) and
the command-line help describe them, and a test checks the example against this module.

Values here are already validated by the loader; code that builds settings by hand (tests, the
load generator) is trusted to pass sensible values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from sipua.hostport import is_valid_host, split_host_port
from sipua.settings import values as v
from sipua.settings.schema import PHONE_SWITCH, PhoneKey, Setting, declare, declared
from sipua.settings.secret import Secret
from sipua.settings.values import (
    PIN_PREFIX,
    PROVISIONING_SCHEMES,
    aor_parts,
    parse_pin,
    provisioning_url_scheme,
)

__all__ = [
    "ANSWER_POLICIES",
    "ANSWER_STATUS",
    "CA_TYPES",
    "DEVICE_CERTS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "PIN_PREFIX",
    "PROVISIONING_SCHEMES",
    "SETTINGS",
    "SRTP_POLICIES",
    "TLS_VERSIONS",
    "VERIFY_CLIENT_MODES",
    "AccountSettings",
    "CertificateSettings",
    "ListenSettings",
    "MediaSettings",
    "Settings",
    "TlsSettings",
    "aor_parts",
    "default_data_dir",
    "is_valid_host",
    "parse_pin",
    "provisioning_url_scheme",
    "split_host_port",
]

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


#: The `--help` group of the certificate-life flags (key continuity, expiry, provisioning).
CERTIFICATES_GROUP: Final = "certificates through their life"
#: The value a phone's `.delete` provisioning keys take to delete every custom certificate.
PHONE_DELETE_ALL: Final[Mapping[str, object]] = {"http://localhost/all": True}

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
        symmetric_rtp: Send RTP to where the peer's RTP comes from (RFC 4961, and the way
            through a NAT), learnt once per call: at once from the SDP's address, else after a
            few in-sequence packets of an agreed format from one source; off, only the SDP's
            address and port are used. Packets from elsewhere are counted and dropped.
        pins: SPKI pins of the registrar, `sha256/BASE64` (RFC 7469 §2.4), checked after the
            chain and the name: one of the verified path's keys must match one pin.
        trust_on_first_use: Record the registrar's key on first contact (in the data
            directory) and refuse a different key later, as SSH's known_hosts does; a chain
            that fails only for want of a trusted issuer is then accepted on that basis.
    """

    # `--account NAME` selects an account by this name (or names the account the flags define).
    name: str = field(
        metadata=declare(
            v.account_name, help="a short label for logs and --account", unset="the AOR's user"
        )
    )
    aor: str = field(
        metadata=declare(
            v.aor,
            help="address of record, e.g. sips:alice@example.test",
            env="SIPUA_AOR",
            flag="--aor",
            metavar="URI",
        )
    )
    username: str = field(
        metadata=declare(
            v.text,
            help="digest user name",
            unset="the AOR's user",
            env="SIPUA_USERNAME",
            flag="--username",
        )
    )
    # The file takes a literal password here (warned about when others can read the file);
    # `ALTERNATIVES` below has the file and variable it may come from instead.
    password: Secret | None = field(
        default=None,
        metadata=declare(
            v.secret_text, help="the digest password itself", unset="none", env="SIPUA_PASSWORD"
        ),
    )
    proxy: str | None = field(
        default=None,
        metadata=declare(
            v.proxy,
            help="registrar/outbound proxy, IPv6 as [addr]:port",
            unset="RFC 3263 lookup of the AOR's domain",
            env="SIPUA_PROXY",
            flag="--proxy",
            metavar="HOST:PORT",
        ),
    )
    tls_name: str | None = field(
        default=None,
        metadata=declare(
            v.tls_name,
            help="name the registrar's certificate must carry",
            unset="the AOR's domain",
            env="SIPUA_TLS_NAME",
            flag="--tls-name",
            metavar="NAME",
        ),
    )
    expires: int = field(
        default=600,
        metadata=declare(
            # RFC 3261 §20.19 delta-seconds; Expires: 0 asks for removal (§10.2.2).
            v.integer(
                1,
                2**32 - 1,
                note="0 would remove the registration at once; sipua unregisters by itself "
                "when it stops",
            ),
            help="registration lifetime in seconds",
            env="SIPUA_EXPIRES",
            flag="--expires",
            metavar="SECONDS",
        ),
    )
    register: bool = field(
        default=True,
        metadata=declare(
            v.boolean,
            help="register at all (off: listen and place calls only)",
            env="SIPUA_REGISTER",
        ),
    )
    keepalive_interval: float | None = field(
        default=None,
        metadata=declare(
            v.seconds(86_400),
            help="RFC 5626 keep-alive interval in seconds",
            unset="random 95-120 s",
            env="SIPUA_KEEPALIVE",
            flag="--keepalive",
            metavar="SECONDS",
        ),
    )
    instance_id: str | None = field(
        default=None,
        metadata=declare(
            v.instance_id,
            help="RFC 5626 +sip.instance URN, urn:uuid:...",
            unset="one made and kept in the data directory",
            env="SIPUA_INSTANCE_ID",
        ),
    )
    auto_answer_delay: float = field(
        default=1.0,
        metadata=declare(
            v.seconds(3600, zero=True),
            help="seconds an inbound call rings before it is answered",
            env="SIPUA_AUTO_ANSWER_DELAY",
        ),
    )
    answer: AnswerPolicy = field(
        default="accept",
        metadata=declare(
            v.Choice(ANSWER_POLICIES),
            help="what inbound calls get: accept (200), busy (486) or decline (603)",
            env="SIPUA_ANSWER",
        ),
    )
    srtp: SrtpPolicy = field(
        default="optional",
        metadata=declare(
            v.Choice(SRTP_POLICIES),
            help="RTP encryption (SRTP, SDES keys over TLS): optional offers it and accepts "
            "plain RTP, compulsory refuses plain RTP, disabled never offers it",
            env="SIPUA_SRTP",
            flag="--srtp",
            group="media",
        ),
    )
    symmetric_rtp: bool = field(
        default=True,
        metadata=declare(
            v.boolean,
            help="send RTP to where the peer's RTP comes from (learnt once per call)",
            env="SIPUA_SYMMETRIC_RTP",
            flag="--symmetric-rtp",
            kind="switch",
            group="media",
        ),
    )
    # Key continuity: pinning and trust on first use.
    pins: tuple[str, ...] = field(
        default=(),
        metadata=declare(
            v.pins,
            help="accept the registrar only if its chain holds this SPKI key (RFC 7469 form; "
            "repeatable; checked after the chain and the name)",
            env="SIPUA_PINS",
            flag="--pin",
            kind="append",
            metavar="sha256/BASE64",
            group=CERTIFICATES_GROUP,
        ),
    )
    trust_on_first_use: bool = field(
        default=False,
        metadata=declare(
            v.boolean,
            help="record the registrar's key on first contact and refuse a changed key (like SSH)",
            env="SIPUA_TRUST_ON_FIRST_USE",
            flag="--trust-on-first-use",
            kind="switch",
            group=CERTIFICATES_GROUP,
        ),
    )

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

    trusted_certs: tuple[Path, ...] = field(
        default=(),
        metadata=declare(
            v.certificate_files,
            help="trusted certificate, PEM or DER: a CA, or a server's own (e.g. self-signed) "
            "certificate, trusted as itself (repeatable; replaces the file's list)",
            env="SIPUA_TRUSTED_CERTS",
            flag="--trusted-cert",
            kind="append",
            metavar="FILE",
        ),
    )
    only_trusted: bool = field(
        default=True,
        metadata=declare(
            v.boolean,
            help="refuse peers whose certificate does not verify",
            env="SIPUA_ONLY_TRUSTED",
            flag="--only-trusted",
            kind="switch",
            phone=(PhoneKey(key="static.security.trust_certificates", values=PHONE_SWITCH),),
        ),
    )
    ca_type: CaType = field(
        default="all",
        metadata=declare(
            v.Choice(CA_TYPES),
            help="which trusted CAs count",
            env="SIPUA_CA_TYPE",
            flag="--ca-type",
            phone=(PhoneKey(key="static.security.ca_cert", confirmed=False),),
        ),
    )
    cn_validation: bool = field(
        default=True,
        metadata=declare(
            v.boolean,
            help="check the peer's name, RFC 5922",
            env="SIPUA_CN_VALIDATION",
            flag="--cn-validation",
            kind="switch",
            phone=(PhoneKey(key="static.security.cn_validation", values=PHONE_SWITCH),),
        ),
    )
    allow_wildcards: bool = field(
        default=False,
        metadata=declare(
            v.boolean,
            help="accept *.domain certificates, which RFC 5922 §7.2 forbids for SIP",
            env="SIPUA_ALLOW_WILDCARDS",
            flag="--allow-wildcards",
            kind="switch",
        ),
    )
    device_cert: DeviceCert = field(
        default="default",
        metadata=declare(
            v.Choice(DEVICE_CERTS),
            help="our certificate for the listener and mutual TLS: default (unique for the MAC, "
            "else generic), generic, or custom, the imported one",
            env="SIPUA_DEVICE_CERT",
            flag="--device-cert",
            phone=(PhoneKey(key="static.security.dev_cert", confirmed=False),),
        ),
    )
    mac: str | None = field(
        default=None,
        metadata=declare(
            v.mac,
            help="device MAC address selecting the unique device certificate",
            unset="this machine's",
            env="SIPUA_MAC",
            flag="--mac",
        ),
    )
    min_version: TlsVersion = field(
        default="1.2",
        metadata=declare(
            v.TlsVersion(TLS_VERSIONS),
            help="lowest TLS version",
            env="SIPUA_TLS_MIN_VERSION",
            flag="--tls-min-version",
            phone=(PhoneKey(key="static.security.default_ssl_method", confirmed=False),),
        ),
    )
    max_version: TlsVersion | None = field(
        default=None,
        metadata=declare(
            v.TlsVersion(TLS_VERSIONS),
            help="highest TLS version",
            unset="the newest",
            env="SIPUA_TLS_MAX_VERSION",
            flag="--tls-max-version",
        ),
    )
    ciphers: str | None = field(
        default=None,
        metadata=declare(
            v.ciphers,
            help="OpenSSL cipher list for TLS <= 1.2",
            unset="OpenSSL's",
            env="SIPUA_CIPHERS",
            flag="--ciphers",
            metavar="LIST",
        ),
    )
    tls13_ciphers: str | None = field(
        default=None,
        metadata=declare(
            v.ciphers,
            help="TLS 1.3 cipher suites, e.g. TLS_AES_128_GCM_SHA256",
            unset="OpenSSL's",
            env="SIPUA_TLS13_CIPHERS",
            flag="--tls13-ciphers",
            metavar="SUITES",
        ),
    )
    groups: str | None = field(
        default=None,
        metadata=declare(
            v.groups,
            help="key-exchange groups, e.g. X25519",
            unset="OpenSSL's, post-quantum hybrid first",
            env="SIPUA_TLS_GROUPS",
            flag="--tls-groups",
            metavar="GROUPS",
        ),
    )
    keylog_file: Path | None = field(
        default=None,
        metadata=declare(
            v.path,
            help="append TLS keys for Wireshark (secret material!)",
            env="SIPUA_KEYLOG_FILE",
            flag="--keylog-file",
            metavar="FILE",
        ),
    )
    handshake_timeout: float = field(
        default=10.0,
        metadata=declare(
            v.seconds(600),
            help="seconds a TLS handshake sipua starts may take",
            env="SIPUA_HANDSHAKE_TIMEOUT",
        ),
    )
    verify_client: VerifyClient = field(
        default="none",
        metadata=declare(
            v.Choice(VERIFY_CLIENT_MODES),
            help="ask inbound peers for a certificate: none, request or require",
            env="SIPUA_VERIFY_CLIENT",
        ),
    )


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
        idle_timeout: Seconds an inbound connection may stay silent before it is closed; a
            connection that carries a call or an open transaction is never idle.
        servers_only: Accept inbound connections only from the servers sipua registers with
            (the addresses its registrar or outbound proxy resolved to), as desk phones' "Accept
            SIP Trust Server Only"; every other source is refused and logged.
    """

    enabled: bool = field(
        default=True,
        metadata=declare(
            v.boolean,
            help="open the inbound TLS listener",
            env="SIPUA_LISTEN_ENABLED",
            flag="--no-listen",
            kind="off",
        ),
    )
    # The environment and the command line give host and port together: `ALTERNATIVES`.
    host: str = field(
        default="127.0.0.1", metadata=declare(v.listen_host, help="local address to bind")
    )
    port: int = field(
        default=0,
        metadata=declare(v.integer(0, 65535), help="local port; 0 for a free one the system picks"),
    )
    max_connections: int = field(
        default=256,
        metadata=declare(
            v.integer(1, 1_000_000),
            help="inbound connections held at once",
            env="SIPUA_MAX_CONNECTIONS",
        ),
    )
    max_connections_per_address: int = field(
        default=8,
        metadata=declare(
            v.integer(1, 1_000_000),
            help="inbound connections one source address (an IPv6 /64) may hold at once",
            env="SIPUA_MAX_CONNECTIONS_PER_ADDRESS",
        ),
    )
    handshake_timeout: float = field(
        default=3.0,
        metadata=declare(
            v.seconds(600),
            help="seconds an inbound client has for its TLS handshake",
            env="SIPUA_LISTEN_HANDSHAKE_TIMEOUT",
        ),
    )
    idle_timeout: float = field(
        default=300.0,
        metadata=declare(
            v.seconds(86_400),
            help="seconds an inbound connection may stay silent while it carries no call",
            env="SIPUA_IDLE_TIMEOUT",
        ),
    )
    servers_only: bool = field(
        default=False,
        metadata=declare(
            v.boolean,
            help="accept inbound connections only from the registrar/proxy's addresses",
            env="SIPUA_SERVERS_ONLY",
            flag="--servers-only",
            kind="switch",
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaSettings:
    """RTP media, shared by every account.

    Attributes:
        port_range: The UDP ports calls' RTP and RTCP use, both ends included: each call takes
            an even port and the odd one above it (RFC 3550 §11). 16384-32767 is the range
            desk phones and PBXs use by default; a range with no free pair left answers an
            inbound call 503.
    """

    port_range: tuple[int, int] = field(
        default=(16384, 32767),
        metadata=declare(
            v.port_range,
            help="UDP ports for RTP/RTCP, an even/odd pair per call",
            env="SIPUA_MEDIA_PORTS",
            flag="--media-ports",
            metavar="LOW-HIGH",
        ),
    )


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

    expiry_warning_days: int = field(
        default=30,
        metadata=declare(
            v.integer(0, 3650),
            help="warn when a trusted or device certificate expires within DAYS",
            env="SIPUA_EXPIRY_WARNING_DAYS",
            flag="--expiry-warning-days",
            metavar="DAYS",
        ),
    )
    check_interval: float = field(
        default=3600.0,
        metadata=declare(
            v.seconds(86_400),
            help="seconds between expiry and renewal checks",
            env="SIPUA_CERT_CHECK_INTERVAL",
        ),
    )
    trusted_certificates_url: str | None = field(
        default=None,
        metadata=declare(
            v.url,
            help="fetch custom trusted certificates from URL (https://, file://)",
            env="SIPUA_TRUSTED_CERTIFICATES_URL",
            flag="--trusted-certificates-url",
            metavar="URL",
            phone=(PhoneKey(key="static.trusted_certificates.url"),),
        ),
    )
    trusted_certificates_delete: bool = field(
        default=False,
        metadata=declare(
            v.boolean,
            help="delete the custom trusted certificates at each provisioning run",
            env="SIPUA_TRUSTED_CERTIFICATES_DELETE",
            phone=(PhoneKey(key="static.trusted_certificates.delete", values=PHONE_DELETE_ALL),),
        ),
    )
    server_certificates_url: str | None = field(
        default=None,
        metadata=declare(
            v.url,
            help="fetch the custom device certificate and its key from URL (https://, file://)",
            env="SIPUA_SERVER_CERTIFICATES_URL",
            flag="--server-certificates-url",
            metavar="URL",
            phone=(PhoneKey(key="static.server_certificates.url"),),
        ),
    )
    server_certificates_delete: bool = field(
        default=False,
        metadata=declare(
            v.boolean,
            help="remove the custom device certificate at each provisioning run",
            env="SIPUA_SERVER_CERTIFICATES_DELETE",
            phone=(PhoneKey(key="static.server_certificates.delete", values=PHONE_DELETE_ALL),),
        ),
    )
    provision_interval: float | None = field(
        default=None,
        metadata=declare(
            v.seconds(30 * 86_400),
            help="fetch the provisioning URLs again this often",
            unset="at start only",
            env="SIPUA_PROVISION_INTERVAL",
            flag="--provision-interval",
            metavar="SECONDS",
        ),
    )
    allow_http: bool = field(
        default=False,
        metadata=declare(
            v.boolean,
            help="allow plain http:// provisioning URLs (no integrity; only on a network you own)",
            env="SIPUA_PROVISION_ALLOW_HTTP",
            flag="--allow-http-provisioning",
            kind="on",
        ),
    )

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
    data_dir: Path = field(
        default_factory=default_data_dir,
        metadata=declare(
            v.path,
            help="state directory",
            unset="$XDG_DATA_HOME/sipua, else ~/.local/share/sipua",
            env="SIPUA_DATA_DIR",
            flag="--data-dir",
            metavar="DIR",
            group="configuration",
        ),
    )
    log_format: LogFormat = field(
        default="console",
        metadata=declare(
            v.Choice(LOG_FORMATS),
            help="console (a readable line per event) or json lines",
            env="SIPUA_LOG_FORMAT",
            flag="--log-format",
        ),
    )
    log_level: LogLevel = field(
        default="info",
        metadata=declare(
            v.Choice(LOG_LEVELS),
            help="lowest level logged",
            env="SIPUA_LOG_LEVEL",
            flag="--log-level",
        ),
    )
    trace: bool = field(
        default=False,
        metadata=declare(
            v.boolean,
            help="log every SIP message (credentials redacted)",
            env="SIPUA_TRACE",
            flag="--trace",
            kind="on",
        ),
    )
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


#: Ways of giving a setting that are not one field: the password from a file or from a variable
#: the file names, and the listener's address as one `HOST:PORT` (host, port, and on).
ALTERNATIVES: Final[tuple[Setting, ...]] = (
    Setting(
        key="account.password_file",
        parse=v.path,
        help="file holding the password (no --password flag: arguments are visible to others; "
        "or set SIPUA_PASSWORD)",
        env="SIPUA_PASSWORD_FILE",
        flag="--password-file",
        metavar="FILE",
    ),
    Setting(
        key="account.password_env",
        parse=v.secret_text,
        help="environment variable holding the password",
    ),
    Setting(
        key="listen.address",
        parse=v.address,
        help="accept inbound TLS here (default 127.0.0.1 on a free port, which the Contact "
        "tells the registrar; e.g. 0.0.0.0:5061, [::]:5061)",
        env="SIPUA_LISTEN",
        flag="--listen",
        metavar="HOST:PORT",
        file=False,
    ),
)

#: The sections of the model: the section name in setting keys, and its class.
SECTIONS: Final[Mapping[str, type]] = {
    "": Settings,
    "account": AccountSettings,
    "tls": TlsSettings,
    "listen": ListenSettings,
    "media": MediaSettings,
    "certificates": CertificateSettings,
}

#: Every setting, declared once: the model's fields, section by section, then `ALTERNATIVES`.
SETTINGS: Final[tuple[Setting, ...]] = (
    *(declaration for section, cls in SECTIONS.items() for declaration in declared(cls, section)),
    *ALTERNATIVES,
)
