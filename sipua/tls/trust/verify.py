"""The production verifier: `sipua.tls.trust.policy.verify_chain` bound to a configuration.

`verify_chain` is the one truth about whom sipua trusts; OpenSSL's own verdicts are only
recorded for diagnostics. A client validates the server's chain and its RFC 5922 identity
against the configured TLS name; a server validates a client certificate's chain with purpose
"client" and no name (a client certificate names a device, not a domain).

Client verdicts are remembered. A verdict is a function of the peer chain, the name, the
policy, the trusted certificates and the time; for one configuration only the chain and the
time vary, and a registrar presents the same chain on every connection. So the client verifier
of one (name, policy, trusted) configuration is shared by every connection that uses it, and
it reuses its verdict on an identical chain (the same DER certificates, in the same order) for
`VERDICT_TTL_SECONDS`, never past the moment the first certificate of the chain expires. That
saves the whole verification (~0.2 ms: cryptography's path validation plus sipua's checks,
about a sixth of a handshake's client CPU) on every connection after the first, which is what
`sipua load` and a registrar's reconnects pay. Both caches are bounded.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Final

from cryptography import x509

from sipua.tls.connection.context import TlsClientConfig, TlsServerConfig
from sipua.tls.connection.events import Verification, Verifier

#: How long a client verdict on one peer chain is reused (seconds).
VERDICT_TTL_SECONDS: Final = 60.0
#: Distinct peer chains one client verifier remembers (a full cache is emptied, not grown).
MAX_CACHED_CHAINS: Final = 64
#: Distinct client configurations whose verifiers are kept (least recently used goes first).
MAX_CACHED_VERIFIERS: Final = 32


class CachingVerifier:
    """A verifier that reuses its verdict on an identical chain for a bounded time.

    Args:
        verify: The underlying verifier (`verify_chain` bound to one configuration).
        clock: Monotonic seconds; injected by tests.
        ttl: How long a verdict is reused, capped by the chain's earliest expiry.
    """

    __slots__ = ("_clock", "_entries", "_ttl", "_verify")

    def __init__(
        self,
        verify: Verifier,
        *,
        clock: Callable[[], float] = time.monotonic,
        ttl: float = VERDICT_TTL_SECONDS,
    ) -> None:
        self._verify = verify
        self._clock = clock
        self._ttl = ttl
        self._entries: dict[tuple[x509.Certificate, ...], tuple[Verification, float]] = {}

    def __call__(self, chain: Sequence[x509.Certificate]) -> Verification:
        """The verdict on `chain` (leaf first), computed at most once per TTL."""
        key = tuple(chain)
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and entry[1] > now:
            return entry[0]
        verdict = self._verify(key)
        if len(self._entries) >= MAX_CACHED_CHAINS:
            self._entries.clear()
        self._entries[key] = (verdict, now + min(self._ttl, _seconds_unchanged(key, verdict)))
        return verdict


def _seconds_unchanged(chain: Sequence[x509.Certificate], verdict: Verification) -> float:
    """How long `verdict` on `chain` stays what a new verification would say.

    RFC 5280 §6.1.3 checks validity at verification time, for every certificate of the path:
    a cached "ok" must not outlive any of them, the anchor and the intermediates found in the
    store included (a registrar usually sends only its leaf, so they are not in `chain`), and a
    verdict on a certificate not valid yet is judged again once it is.
    """
    from sipua.tls.trust.policy import VerifyResult

    certs = list(chain)
    if isinstance(verdict, VerifyResult):
        certs += verdict.path_certificates
    if not certs:
        return 0.0
    now = dt.datetime.now(dt.UTC)
    moments = [cert.not_valid_after_utc for cert in certs]
    moments += [cert.not_valid_before_utc for cert in certs if cert.not_valid_before_utc > now]
    return min((moment - now).total_seconds() for moment in moments)


class _VerifierCache:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: OrderedDict[Hashable, CachingVerifier] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], CachingVerifier]) -> CachingVerifier:
        with self._lock:
            verifier = self._entries.get(key)
            if verifier is None:
                verifier = build()
                self._entries[key] = verifier
                while len(self._entries) > self._limit:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
            return verifier

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_CLIENT_VERIFIERS: Final = _VerifierCache(MAX_CACHED_VERIFIERS)
#: The last client configuration object asked for and its verifier (see `client_verifier`).
_last_client: tuple[TlsClientConfig, CachingVerifier] | None = None


def clear_verdict_cache() -> None:
    """Forget every remembered verdict (after the trust store or the policy changed)."""
    global _last_client
    _last_client = None
    _CLIENT_VERIFIERS.clear()


def client_verifier(config: TlsClientConfig) -> Verifier:
    """The verifier for the server's chain, as `config` says (name, policy, trusted).

    Connections with the same name, policy and trusted certificates share one verifier and
    its remembered verdicts (see the module docstring).

    Args:
        config: The client settings; `server_name` is the name validated (RFC 5922 §7.2).

    Returns:
        A callable taking the peer chain (leaf first) and returning the verdict.
    """
    global _last_client
    last = _last_client
    if last is not None and last[0] is config:
        # The same (frozen) configuration object again: skip hashing the policy and the
        # trusted certificates for the shared cache's key.
        return last[1]
    from sipua.tls.trust.policy import TrustPolicy, verify_chain

    policy = config.policy if config.policy is not None else TrustPolicy()
    name = config.server_name.strip("[]") if config.server_name else None
    trusted = config.trusted

    def verify(chain: Sequence[x509.Certificate]) -> Verification:
        return verify_chain(list(chain), name=name, trusted=trusted, policy=policy)

    verifier = _CLIENT_VERIFIERS.get((name, policy, trusted), lambda: CachingVerifier(verify))
    _last_client = (config, verifier)
    return verifier


def server_verifier(config: TlsServerConfig) -> Verifier:
    """The verifier for a client certificate chain (purpose "client", no name check).

    Args:
        config: The server settings (policy and trusted certificates).

    Returns:
        A callable taking the client's chain (leaf first) and returning the verdict.
    """
    from sipua.tls.trust.policy import TrustPolicy, verify_chain

    policy = config.policy if config.policy is not None else TrustPolicy()
    trusted = config.trusted

    def verify(chain: Sequence[x509.Certificate]) -> Verification:
        return verify_chain(
            list(chain), name=None, trusted=trusted, policy=policy, purpose="client"
        )

    return verify
