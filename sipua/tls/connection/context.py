"""OpenSSL contexts for sipua's client and server sides, built from plain settings.

A `SSL.Context` is expensive (certificate and key loading, trust store) and thousands of
connections can share one, so contexts are built once per configuration and cached. pyOpenSSL
26 refuses changes to a context once it created a connection, so each context is built fully
here before anything uses it.

Trust is decided by sipua's verifier (`sipua.tls.trust.policy.verify_chain`), not by OpenSSL: the
context asks for the peer's certificate with `VERIFY_PEER` and a callback that only *records*
OpenSSL's per-depth verdicts (into the `HandshakeNotes` the engine hangs on the connection) and
always returns True. The stream runs the verifier after the handshake, before any SIP byte is sent.
That way a user who accepts untrusted peers still learns why the peer was not trusted.

Client contexts also note whether the server asked for our certificate (an info callback that
watches for the CertificateRequest): under TLS 1.3 the server judges that certificate only after
our side of the handshake is done, so a server that then just closes the connection has most
likely refused it, and the transport reports it so (`sipua.errors.ClientCertificateRefused`).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from OpenSSL import SSL, crypto

from sipua.errors import CertificateError, ConfigError
from sipua.tls.connection.events import OpenSslVerdict
from sipua.tls.connection.keylog import KeyLogWriter

if TYPE_CHECKING:
    from sipua.tls.trust.policy import TrustPolicy

TlsVersion = Literal["1.0", "1.1", "1.2", "1.3"]
ClientCertMode = Literal["none", "request", "require"]
#: The private key types OpenSSL contexts accept from cryptography.
PrivateKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)

_VERSIONS: Final[dict[str, int]] = {
    "1.0": SSL.TLS1_VERSION,
    "1.1": SSL.TLS1_1_VERSION,
    "1.2": SSL.TLS1_2_VERSION,
    "1.3": SSL.TLS1_3_VERSION,
}

#: OpenSSL's default TLS 1.2 cipher list. RFC 3261 §26.3.1 asks for
#: TLS_RSA_WITH_AES_128_CBC_SHA, which DEFAULT still includes for old registrars.
DEFAULT_CIPHERS: Final = "DEFAULT"

#: How many contexts the cache keeps (one per distinct configuration in use).
MAX_CACHED_CONTEXTS: Final = 64

#: A peer chain longer than this is not recorded further (OpenSSL's own depth limit is 100).
MAX_RECORDED_VERDICTS: Final = 16

_SESSION_ID_CONTEXT: Final = b"sipua"
#: OpenSSL's long state name once a client has read the server's CertificateRequest (TLS 1.2
#: and 1.3 alike; SSL_state_string_long(3) of TLS_ST_CR_CERT_REQ).
_READ_CERTIFICATE_REQUEST: Final = b"SSLv3/TLS read server certificate request"


@dataclass(slots=True)
class HandshakeNotes:
    """What OpenSSL's callbacks learn about one connection (the engine's app data).

    Attributes:
        verdicts: OpenSSL's per-certificate verdicts (see `record_verdict`).
        certificate_requested: client side: the server sent a CertificateRequest.
    """

    verdicts: list[OpenSslVerdict] = field(default_factory=list)
    certificate_requested: bool = False


class Identity(Protocol):
    """A certificate with its private key (`sipua.tls.stores.store.DeviceIdentity` has this shape).

    Attributes:
        certificate: The leaf certificate presented to the peer.
        chain: Certificates above the leaf to send with it (may be empty).
        private_key: The leaf's private key; it never leaves the context.
    """

    @property
    def certificate(self) -> x509.Certificate: ...
    @property
    def chain(self) -> tuple[x509.Certificate, ...]: ...
    @property
    def private_key(self) -> PrivateKey: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsProtocol:
    """What a context negotiates with, the same for the client and the server side.

    Attributes:
        min_version: Lowest protocol version; "1.0"/"1.1" only when the user asks (they lower
            OpenSSL's security level to 0, which they need).
        max_version: Highest protocol version, None = the newest OpenSSL offers.
        ciphers: OpenSSL cipher string for TLS ≤ 1.2 (None = OpenSSL's DEFAULT).
        tls13_ciphersuites: TLS 1.3 suites, colon-separated IANA names such as
            "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256" (None = OpenSSL's default).
        groups: Key-exchange groups offered and accepted, in preference order, colon-separated
            OpenSSL names such as "X25519:P-256" (None = OpenSSL's default, which with OpenSSL
            3.5+ includes the hybrid post-quantum X25519MLKEM768).
        keylog_path: Append NSS key-log lines here (debugging; file created 0600).
    """

    min_version: TlsVersion = "1.2"
    max_version: TlsVersion | None = None
    ciphers: str | None = None
    tls13_ciphersuites: str | None = None
    groups: str | None = None
    keylog_path: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Common:
    """Settings shared by both sides (see the subclasses for the meaning of each)."""

    policy: TrustPolicy | None = None
    trusted: tuple[x509.Certificate, ...] = ()
    protocol: TlsProtocol = TlsProtocol()


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsClientConfig(_Common):
    """How sipua connects as a TLS client.

    Attributes:
        server_name: The TLS name: sent as SNI unless it is an IP literal, and the name the
            verifier validates (RFC 5922 §7.2). None = no SNI and no identity check.
        policy: The trust policy (None = `TrustPolicy()` defaults: trusted peers only).
        trusted: Custom trusted certificates, passed to the verifier and added to OpenSSL's
            advisory store.
        identity: The device certificate to present for mutual TLS, or None.
        protocol: Versions, cipher lists, groups and key log (`TlsProtocol`).
    """

    server_name: str | None = None
    identity: Identity | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsServerConfig(_Common):
    """How sipua accepts TLS connections.

    Attributes:
        identity: The certificate and key the server presents (required).
        client_certs: "none" (do not ask), "request" (ask, allow none) or "require"
            (handshake fails without one). A presented client certificate is always checked
            by the verifier with purpose "client" and no name.
        policy, trusted, protocol: As for the client.
    """

    identity: Identity = field(repr=False)
    client_certs: ClientCertMode = "none"


# Pure and asked on every new client connection (ipaddress's two failing parses of a host
# name cost ~8 us); bounded.
@functools.lru_cache(maxsize=1024)
def sni_name(server_name: str | None) -> str | None:
    """The name to send as SNI: none for IP literals (RFC 6066 §3 forbids them).

    Args:
        server_name: The configured TLS name, possibly an IP literal (IPv6 with or without
            brackets).

    Returns:
        The name to send, or None.
    """
    if not server_name:
        return None
    try:
        ipaddress.ip_address(server_name.strip("[]"))
    except ValueError:
        return server_name
    return None


def client_context(
    config: TlsClientConfig,
    *,
    watch_certificate_request: bool = True,
    record_verdicts: bool = True,
) -> SSL.Context:
    """The (cached) client context for `config`.

    Args:
        config: Client settings. `server_name` and `policy` do not change the context.
        watch_certificate_request: Notice a CertificateRequest from the server (OpenSSL's
            certificate callback, one call into Python when the server asks; the user agent's
            lock state needs it). The load engine, which never reports it, passes False.
        record_verdicts: Have OpenSSL check the chain too and record its per-certificate
            verdicts (`HandshakeCompleted.openssl_verdicts`, advisory: sipua's verifier
            decides either way). The load engine, which reports no handshake, passes False and
            saves OpenSSL's chain check and the callbacks (~65 µs of client CPU per handshake).

    Returns:
        A fully built context; do not modify it.

    Raises:
        ConfigError: A version, cipher string or key-log path is unusable.
        CertificateError: The identity's certificate and key do not fit together.
    """
    global _last_client
    last = _last_client
    flags = (watch_certificate_request, record_verdicts)
    if last is not None and last[0] is config and last[1] == flags:
        # The same (frozen) configuration object again, e.g. every reconnect of one user
        # agent: the key costs a SHA-256 per trusted certificate, so skip computing it.
        return last[2]
    key = ("client", *_common_key(config), _identity_key(config.identity), *flags)
    context = _CACHE.get(
        key, lambda: _build_client(config, watch_certificate_request, record_verdicts)
    )
    _last_client = (config, flags, context)
    return context


def server_context(config: TlsServerConfig) -> SSL.Context:
    """The (cached) server context for `config`.

    Args:
        config: Server settings.

    Returns:
        A fully built context; do not modify it.

    Raises:
        ConfigError: A version, cipher string or key-log path is unusable.
        CertificateError: The identity's certificate and key do not fit together.
    """
    key = ("server", *_common_key(config), _identity_key(config.identity), config.client_certs)
    return _CACHE.get(key, lambda: _build_server(config))


def clear_context_cache() -> None:
    """Forget every cached context (after the trusted set or an identity changed on disk)."""
    global _last_client
    _last_client = None
    _CACHE.clear()


def record_verdict(
    connection: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int
) -> bool:
    """The `set_verify` callback: record OpenSSL's verdict and let the handshake go on.

    The verdicts go into the `HandshakeNotes` the engine set as the connection's app data. Returning
    True overrides OpenSSL's verdict on purpose: sipua's verifier decides after the handshake.
    This runs for every certificate of every handshake, so it keeps OpenSSL's numbers and the
    certificate object as they are; `OpenSslVerdict.subject` formats the subject on demand
    (converting and formatting here cost ~0.1 ms per certificate).
    """
    notes = connection.get_app_data()
    if isinstance(notes, HandshakeNotes) and len(notes.verdicts) < MAX_RECORDED_VERDICTS:
        notes.verdicts.append(
            OpenSslVerdict(depth=depth, ok=bool(ok), error=errno, certificate=cert)
        )
    return True


def note_certificate_request(connection: SSL.Connection, where: int, _ret: int) -> None:
    """The client contexts' info callback: note a CertificateRequest from the server."""
    if where & SSL.SSL_CB_CONNECT_LOOP and connection.get_state_string() == (
        _READ_CERTIFICATE_REQUEST
    ):
        notes = connection.get_app_data()
        if isinstance(notes, HandshakeNotes):
            notes.certificate_requested = True


def _watch_certificate_request(context: SSL.Context) -> None:
    # OpenSSL calls a context's certificate callback (SSL_CTX_set_cert_cb(3)) on the client
    # only when the server sent a CertificateRequest: one call into Python, and only then. The
    # info callback (pyOpenSSL's public way) runs ~16 times per handshake, ~40 µs of client
    # CPU. pyOpenSSL 26 has no call for the certificate callback, so its binding's function
    # is used, as `_set_groups` does; without it, the info callback stays.
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib

    setter = getattr(_lib, "SSL_CTX_set_cert_cb", None)
    if setter is None:
        context.set_info_callback(note_certificate_request)
        return

    def on_request(ssl: object, _arg: object) -> int:
        connection = SSL.Connection._reverse_mapping.get(ssl)
        notes = connection.get_app_data() if connection is not None else None
        if isinstance(notes, HandshakeNotes):
            notes.certificate_requested = True
        return 1  # go on: OpenSSL sends the context's certificate, if it has one

    callback = _ffi.callback("int (*)(SSL *, void *)", on_request, error=1)
    setter(context._context, callback, _ffi.NULL)
    # The context must keep the C callback alive as long as it lives.
    context._sipua_certificate_request_callback = callback  # type: ignore[attr-defined]


class _ContextCache:
    """A small LRU of built contexts, safe to use from worker threads too."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: OrderedDict[Hashable, SSL.Context] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: _Builder) -> SSL.Context:
        with self._lock:
            context = self._entries.get(key)
            if context is not None:
                self._entries.move_to_end(key)
                return context
        context = build()
        with self._lock:
            self._entries[key] = context
            while len(self._entries) > self._limit:
                self._entries.popitem(last=False)
        return context

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class _Builder(Protocol):
    def __call__(self) -> SSL.Context: ...


_CACHE: Final = _ContextCache(MAX_CACHED_CONTEXTS)
#: The last client configuration object asked for and its context (see `client_context`).
_last_client: tuple[TlsClientConfig, tuple[bool, bool], SSL.Context] | None = None


def _fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


def _common_key(config: _Common) -> tuple[Hashable, ...]:
    return (config.protocol, tuple(_fingerprint(c) for c in config.trusted))


def _identity_key(identity: Identity | None) -> Hashable:
    # The key is bound to the certificate (the context checks that they match), so the
    # certificate chain's fingerprints identify the identity without touching the key.
    if identity is None:
        return None
    return tuple(_fingerprint(c) for c in (identity.certificate, *identity.chain))


def _base_context(config: _Common) -> SSL.Context:
    context = SSL.Context(SSL.TLS_METHOD)
    protocol = config.protocol
    minimum = _VERSIONS[protocol.min_version]
    maximum = _VERSIONS[protocol.max_version] if protocol.max_version is not None else None
    if maximum is not None and maximum < minimum:
        raise ConfigError(
            f"TLS max version {protocol.max_version} is below min version "
            f"{protocol.min_version}; "
            "raise the max version or lower the min version"
        )
    context.set_min_proto_version(minimum)
    if maximum is not None:
        context.set_max_proto_version(maximum)
    ciphers = protocol.ciphers or DEFAULT_CIPHERS
    if minimum < SSL.TLS1_2_VERSION and "@SECLEVEL" not in ciphers:
        # OpenSSL's default security level 1+ refuses TLS < 1.2 outright (its SHA-1 based
        # PRF); the user asked for these versions, so lower the level for this context only.
        ciphers += ":@SECLEVEL=0"
    _set_list(
        context.set_cipher_list,
        ciphers,
        f"TLS cipher list {ciphers!r} selects no usable cipher; "
        "use an OpenSSL cipher string such as 'ECDHE+AESGCM'",
    )
    if protocol.tls13_ciphersuites is not None:
        _set_list(
            context.set_tls13_ciphersuites,
            protocol.tls13_ciphersuites,
            f"TLS 1.3 cipher suites {protocol.tls13_ciphersuites!r} select no usable suite; "
            "use IANA names such as 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384'",
        )
    if protocol.groups is not None:
        _set_groups(context, protocol.groups)
    # Renegotiation is gone in TLS 1.3 and a liability in 1.2 (RFC 5746 history); SIP never
    # needs it. Compression invites CRIME-style attacks.
    context.set_options(SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION)
    # Frees the read/write buffers of idle connections: ~27 KiB per connection (tls-facts).
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    store = context.get_cert_store()
    if store is not None:
        for cert in config.trusted:
            # A duplicate anchor is harmless for an advisory store.
            with contextlib.suppress(crypto.Error):
                store.add_cert(crypto.X509.from_cryptography(cert))
    context.set_default_verify_paths()
    if protocol.keylog_path is not None:
        context.set_keylog_callback(KeyLogWriter(protocol.keylog_path))
    return context


# -- key shares learned per server --------------------------------------------------------
#
# OpenSSL 3.5+ sends two TLS 1.3 key shares by default, the hybrid post-quantum X25519MLKEM768
# and X25519 (RFC 8446 §4.2.8): ~0.1 ms of client CPU per handshake for the hybrid one, wasted
# on a server that takes X25519 (any OpenSSL before 3.5, the usual registrar today). Once a
# server was verified with a classical group, sipua's next ClientHello to that TLS name carries
# only that group's share, while still listing every default group with the hybrid first: a
# server that prefers the hybrid answers with a HelloRetryRequest (one more round trip) and gets
# it, so the post-quantum protection is never given up, and sipua then remembers the hybrid
# again. Only for contexts on OpenSSL's default groups (`groups` unset): a user's choice stays.

#: The default groups' preference order (OpenSSL 3.5+'s, hybrid first), one marked "*" gets
#: the only key share. Names as `Connection.get_group_name()` reports them.
_CLASSICAL_SHARES: Final = ("x25519", "secp256r1", "x448", "secp384r1", "secp521r1")
_DEFAULT_ORDER: Final = ("X25519MLKEM768", *_CLASSICAL_SHARES, "ffdhe2048", "ffdhe3072")
_LISTS_BY_SHARE: Final = {
    share: ":".join(f"*{name}" if name == share else name for name in _DEFAULT_ORDER).encode()
    for share in _CLASSICAL_SHARES
}
#: How many TLS names' learned groups are kept (the oldest is forgotten first).
MAX_LEARNED_KEY_SHARES: Final = 1024
_learned_shares: OrderedDict[str, bytes] = OrderedDict()
_learned_lock: Final = threading.Lock()


def learned_key_share_groups(server_name: str) -> bytes | None:
    """The groups list (with its one key share marked) for a server verified before, or None."""
    return _learned_shares.get(server_name)


def learn_key_share(server_name: str, group: str | None) -> None:
    """Remembers the group a verified handshake with `server_name` used (see above)."""
    group = (group or "").lower()
    if group not in _CLASSICAL_SHARES:
        # The hybrid (or an unknown group): the default key shares are what it needs.
        with _learned_lock:
            _learned_shares.pop(server_name, None)
        return
    listed = _LISTS_BY_SHARE[group]
    if _learned_shares.get(server_name) is listed:
        return  # known already (the usual case: the same registrar again)
    with _learned_lock:
        _learned_shares[server_name] = listed
        _learned_shares.move_to_end(server_name)
        while len(_learned_shares) > MAX_LEARNED_KEY_SHARES:
            _learned_shares.popitem(last=False)


def _set_list(setter: Callable[[bytes], object], value: str, error: str) -> None:
    try:
        setter(value.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError) as exc:
        raise ConfigError(error) from exc


def _set_groups(context: SSL.Context, groups: str) -> None:
    # pyOpenSSL 26 has no public call for the key-exchange groups (SSL_CTX_set1_groups_list;
    # its older alias SSL_CTX_set1_curves_list is in pyOpenSSL's binding). Choosing them
    # saves the key share of a group the peer cannot use: OpenSSL 3.5+ sends X25519MLKEM768
    # and X25519 shares by default, ~0.1 ms of client CPU per handshake with a registrar that
    # only takes X25519 (RFC 8446 §4.2.8).
    from OpenSSL._util import lib as _lib

    setter = getattr(_lib, "SSL_CTX_set1_curves_list", None)
    if setter is None:
        raise ConfigError(
            "this pyOpenSSL build cannot choose TLS key-exchange groups; drop the groups setting"
        )
    try:
        accepted = setter(context._context, groups.encode("ascii"))
    except UnicodeEncodeError:
        accepted = 0
    if accepted != 1:
        # The failed call leaves its reason on OpenSSL's error queue; drop it so it does not
        # surface in an unrelated later call.
        _lib.ERR_clear_error()
        raise ConfigError(
            f"TLS groups {groups!r} are not all known to OpenSSL; use names such as "
            "'X25519:P-256' or 'X25519MLKEM768:X25519'"
        )


def _use_identity(context: SSL.Context, identity: Identity) -> None:
    try:
        context.use_certificate(identity.certificate)
        for extra in identity.chain:
            context.add_extra_chain_cert(extra)
        context.use_privatekey(identity.private_key)
        context.check_privatekey()
    except SSL.Error as exc:
        subject = identity.certificate.subject.rfc4514_string()
        raise CertificateError(
            f"the device certificate {subject!r} cannot be used with its private key "
            f"({openssl_reason(exc)}); re-import the certificate together with its own key"
        ) from exc


def _build_client(
    config: TlsClientConfig, watch_certificate_request: bool, record_verdicts: bool
) -> SSL.Context:
    context = _base_context(config)
    if record_verdicts:
        context.set_verify(SSL.VERIFY_PEER, record_verdict)
    else:
        # The server's chain still arrives and is judged by sipua's verifier; OpenSSL's own
        # (advisory) check is skipped. Never a weaker check: with VERIFY_PEER the callback
        # lets every chain through to the verifier as well.
        context.set_verify(SSL.VERIFY_NONE)
    if watch_certificate_request:
        _watch_certificate_request(context)
    if config.identity is not None:
        _use_identity(context, config.identity)
    return context


def _build_server(config: TlsServerConfig) -> SSL.Context:
    context = _base_context(config)
    _use_identity(context, config.identity)
    context.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
    # Needed for session resumption once a client certificate is requested.
    context.set_session_id(_SESSION_ID_CONTEXT)
    if config.client_certs != "none":
        # A resumed session carries no Certificate message (RFC 8446 §2.2, RFC 5246 §7.3)
        # and OpenSSL keeps only the client's leaf from the first handshake: without the
        # intermediates it sent then, the client could not be judged again and a client with
        # an intermediate-issued certificate was refused on every resumption. Every client
        # is asked for its whole chain instead (no session cache, no tickets).
        context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        context.set_options(SSL.OP_NO_TICKET)
    if config.client_certs == "request":
        context.set_verify(SSL.VERIFY_PEER, record_verdict)
    elif config.client_certs == "require":
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, record_verdict)
    else:
        context.set_verify(SSL.VERIFY_NONE, record_verdict)
    return context


def openssl_reason(exc: SSL.Error) -> str:
    """OpenSSL's reason text ("no shared cipher") out of pyOpenSSL's error list."""
    items = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    reasons = [
        str(item[2]) for item in items if isinstance(item, tuple) and len(item) == 3 and item[2]
    ]
    return "; ".join(reasons) or str(exc) or type(exc).__name__
