"""The production verifier: one per configuration, verdicts reused per chain for a while."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from sipua.tls.connection.context import TlsClientConfig, TlsProtocol
from sipua.tls.connection.events import Verification
from sipua.tls.trust.policy import TrustPolicy
from sipua.tls.trust.verify import (
    MAX_CACHED_CHAINS,
    CachingVerifier,
    clear_verdict_cache,
    client_verifier,
)
from tests.support.certs import make_ca, make_leaf


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class _Verdict:
    ok: bool
    verified: bool
    code: str
    reason: str


class _Counting:
    def __init__(self) -> None:
        self.calls = 0
        self.result = _Verdict(ok=True, verified=True, code="ok", reason="verified")

    def __call__(self, chain: Sequence[x509.Certificate]) -> Verification:
        self.calls += 1
        return self.result


def test_a_verdict_is_reused_for_the_same_chain_until_the_ttl_ends() -> None:
    root = make_ca()
    leaf = make_leaf(root, dns=["example.com"])
    inner, clock = _Counting(), _Clock()
    verifier = CachingVerifier(inner, clock=clock, ttl=60.0)
    chain = [leaf.cert, root.cert]
    assert verifier(chain) is inner.result
    clock.now += 59.0
    verifier(tuple(chain))
    assert inner.calls == 1
    clock.now += 2.0
    verifier(chain)
    assert inner.calls == 2


def test_a_different_chain_is_verified_on_its_own() -> None:
    root = make_ca()
    inner = _Counting()
    verifier = CachingVerifier(inner, clock=_Clock())
    verifier([make_leaf(root).cert])
    verifier([make_leaf(root).cert])
    assert inner.calls == 2


def test_a_verdict_never_outlives_the_first_expiring_certificate() -> None:
    root = make_ca()
    # Valid for about 30 more seconds: the cache must not serve it for the full TTL.
    soon = dt.datetime.now(dt.UTC) - dt.timedelta(days=1) + dt.timedelta(seconds=30)
    leaf = make_leaf(root, days=1, at=soon)
    inner, clock = _Counting(), _Clock()
    verifier = CachingVerifier(inner, clock=clock, ttl=3600.0)
    verifier([leaf.cert])
    clock.now += 120.0
    verifier([leaf.cert])
    assert inner.calls == 2


def test_a_verdict_never_outlives_the_anchor_it_rests_on() -> None:
    # The registrar sends only its leaf; its trusted CA, found in the store, ends in about 30
    # seconds: a cached "ok" must be judged again then (RFC 5280 §6.1.3), not for the TTL.
    soon = dt.datetime.now(dt.UTC) - dt.timedelta(days=1) + dt.timedelta(seconds=30)
    root = make_ca(days=1, at=soon)
    leaf = make_leaf(root, dns=["example.com"])
    verify = client_verifier(
        TlsClientConfig(
            server_name="example.com",
            trusted=(root.cert,),
            policy=TrustPolicy(accepted_ca="custom"),
        )
    )
    first = verify([leaf.cert])
    assert first.verified
    assert isinstance(verify, CachingVerifier)
    [(_, until)] = verify._entries.values()
    assert until - verify._clock() <= 31.0


def test_a_verdict_on_a_certificate_not_valid_yet_is_judged_again_once_it_is() -> None:
    root = make_ca()
    # The helper starts validity an hour before `at`: this one starts in about 20 seconds.
    leaf = make_leaf(root, at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1, seconds=20))
    inner, clock = _Counting(), _Clock()
    verifier = CachingVerifier(inner, clock=clock, ttl=3600.0)
    verifier([leaf.cert])
    [(_, until)] = verifier._entries.values()
    assert until - clock.now <= 21.0


def test_the_cache_of_chains_is_bounded() -> None:
    root = make_ca()
    leaves = [make_leaf(root).cert for _ in range(MAX_CACHED_CHAINS + 1)]
    inner = _Counting()
    verifier = CachingVerifier(inner, clock=_Clock())
    for leaf in leaves:
        verifier([leaf])
    assert len(verifier._entries) <= MAX_CACHED_CHAINS
    verifier([leaves[0]])  # forgotten when the cache was emptied
    assert inner.calls == MAX_CACHED_CHAINS + 2


def test_connections_with_one_configuration_share_a_verifier() -> None:
    clear_verdict_cache()
    root = make_ca()
    base = TlsClientConfig(server_name="example.com", trusted=(root.cert,))
    same = TlsClientConfig(
        server_name="example.com",
        trusted=(root.cert,),
        protocol=TlsProtocol(min_version="1.3"),
    )
    assert client_verifier(base) is client_verifier(same)
    other_name = TlsClientConfig(server_name="example.org", trusted=(root.cert,))
    other_policy = TlsClientConfig(
        server_name="example.com", trusted=(root.cert,), policy=TrustPolicy(only_trusted=False)
    )
    assert client_verifier(other_name) is not client_verifier(base)
    assert client_verifier(other_policy) is not client_verifier(base)
    first = client_verifier(base)
    clear_verdict_cache()
    assert client_verifier(base) is not first


def test_the_shared_verifier_gives_the_real_verdicts() -> None:
    clear_verdict_cache()
    root = make_ca()
    leaf = make_leaf(root, dns=["example.com"])
    good = client_verifier(TlsClientConfig(server_name="example.com", trusted=(root.cert,)))
    assert good([leaf.cert, root.cert]).verified
    wrong = client_verifier(TlsClientConfig(server_name="example.org", trusted=(root.cert,)))
    verdict = wrong([leaf.cert, root.cert])
    assert not verdict.ok
    assert verdict.code != "ok"
