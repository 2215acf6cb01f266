"""Contexts built from TlsClientConfig / TlsServerConfig: versions, ciphers, cache, key log."""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trustme
from OpenSSL import SSL

from sipua.errors import CertificateError, ConfigError, ConnectionLost, HandshakeFailed
from sipua.tls.connection import events
from sipua.tls.connection.context import (
    MAX_CACHED_CONTEXTS,
    clear_context_cache,
    client_context,
    server_context,
    sni_name,
)
from sipua.tls.connection.engine import TlsEngine
from sipua.tls.connection.keylog import KeyLogWriter
from tests.support.tls_pair import TestIdentity, TlsWorld, handshake_both, identity, tls_memory_pair


@pytest.fixture(scope="module")
def world() -> TlsWorld:
    return TlsWorld()


@pytest.mark.parametrize(
    ("name", "sent"),
    [
        ("example.com", "example.com"),
        ("127.0.0.1", None),
        ("::1", None),
        ("[2001:db8::1]", None),
        (None, None),
        ("", None),
    ],
)
def test_sni_is_never_an_ip_literal(name: str | None, sent: str | None) -> None:
    assert sni_name(name) == sent


def test_equal_configs_share_one_context(world: TlsWorld) -> None:
    first = client_context(world.client_config())
    # The TLS name and policy are per connection; they do not make a new context.
    assert client_context(world.client_config(server_name="other.example")) is first
    assert client_context(world.client_config(max_version="1.2")) is not first
    server = server_context(world.server_config())
    assert server_context(world.server_config()) is server
    assert server_context(world.server_config(client_certs="require")) is not server


def test_the_same_config_object_again_gets_its_context_until_the_cache_is_cleared(
    world: TlsWorld,
) -> None:
    config = world.client_config()
    first = client_context(config)
    assert client_context(config) is first
    client_context(world.client_config(max_version="1.2"))  # another configuration between
    assert client_context(config) is first
    clear_context_cache()
    assert client_context(config) is not first


def test_cache_is_bounded(world: TlsWorld) -> None:
    clear_context_cache()
    for i in range(MAX_CACHED_CONTEXTS + 5):
        client_context(world.client_config(ciphers=f"DEFAULT:!aNULL:{'!eNULL:' * i}"))
    from sipua.tls.connection import context as module

    assert len(module._CACHE) == MAX_CACHED_CONTEXTS


def test_max_below_min_is_a_config_error(world: TlsWorld) -> None:
    with pytest.raises(ConfigError, match=r"max version 1\.2 is below min version 1\.3"):
        client_context(world.client_config(min_version="1.3", max_version="1.2"))


def test_cipher_string_selecting_nothing_is_a_config_error(world: TlsWorld) -> None:
    with pytest.raises(ConfigError, match="selects no usable cipher"):
        client_context(world.client_config(ciphers="NOT-A-CIPHER"))


def test_certificate_with_the_wrong_key_is_refused(world: TlsWorld) -> None:
    good = identity(world.ca, "example.com")
    other = identity(world.ca, "example.com")
    mixed = TestIdentity(certificate=good.certificate, chain=(), private_key=other.private_key)
    with pytest.raises(CertificateError, match="cannot be used with its private key"):
        server_context(world.server_config(identity=mixed))


def test_context_options(world: TlsWorld) -> None:
    # A fresh configuration, so the context has made no connection yet and still takes
    # set_options (which returns the options in force).
    context = client_context(world.client_config(ciphers="DEFAULT:!aNULL:!eNULL"))
    assert context.set_options(0) & SSL.OP_NO_RENEGOTIATION
    assert context.get_verify_mode() == SSL.VERIFY_PEER
    required = server_context(world.server_config(client_certs="require"))
    assert required.get_verify_mode() == SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    assert server_context(world.server_config(client_certs="none")).get_verify_mode() == (
        SSL.VERIFY_NONE
    )


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_key_log_file(world: TlsWorld, tmp_path: Path, version: str) -> None:
    path = tmp_path / "keys.log"
    config = world.client_config(keylog_path=path, max_version=version)
    client, server = tls_memory_pair(world, client_config=config)
    await handshake_both(client, server)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    labels = {line.split()[0] for line in path.read_text().splitlines()}
    if version == "1.3":
        assert {
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
            "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0",
            "SERVER_TRAFFIC_SECRET_0",
        } <= labels
    else:
        assert labels == {"CLIENT_RANDOM"}
    for line in path.read_text().splitlines():
        _, client_random, secret = line.split()
        assert len(client_random) == 64
        int(secret, 16)


def test_key_log_path_that_cannot_be_created(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key log file"):
        KeyLogWriter(tmp_path / "missing-dir" / "keys.log")


def test_key_log_writer_repr_names_only_the_path(tmp_path: Path) -> None:
    assert repr(KeyLogWriter(tmp_path / "k.log")) == f"KeyLogWriter({str(tmp_path / 'k.log')!r})"


async def test_tls_1_0_only_when_asked(world: TlsWorld) -> None:
    # Both sides allow TLS 1.0 on request (security level 0 is added for that), and it works.
    client_config = world.client_config(min_version="1.0", max_version="1.0")
    server_config = world.server_config(min_version="1.0")
    client, server = tls_memory_pair(
        world, client_config=client_config, server_config=server_config
    )
    await handshake_both(client, server)
    completed = client.handshake_event
    assert isinstance(completed, events.HandshakeCompleted)
    assert completed.version == "TLSv1"
    # A default server (min 1.2) refuses that client.
    client, server = tls_memory_pair(world, client_config=client_config)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_quietly, server.do_handshake)
        with pytest.raises(HandshakeFailed, match=r"(?i)version|protocol"):
            await client.do_handshake()


async def _quietly(afn: Callable[[], Awaitable[object]]) -> None:
    with contextlib.suppress(HandshakeFailed, ConnectionLost):
        await afn()


async def test_rsa_identity_is_usable(world: TlsWorld) -> None:
    rsa_world = TlsWorld(ca=trustme.CA(key_type=trustme.KeyType.RSA))
    client, server = tls_memory_pair(rsa_world)
    await handshake_both(client, server)
    completed = client.handshake_event
    assert isinstance(completed, events.HandshakeCompleted)
    assert completed.verified


async def test_tls13_suites_are_configurable(world: TlsWorld) -> None:
    suite = "TLS_CHACHA20_POLY1305_SHA256"
    client, server = tls_memory_pair(
        world, client_config=world.client_config(min_version="1.3", tls13_ciphersuites=suite)
    )
    await handshake_both(client, server)
    completed = client.handshake_event
    assert isinstance(completed, events.HandshakeCompleted)
    assert completed.cipher == suite


def test_unknown_tls13_suites_are_a_config_error(world: TlsWorld) -> None:
    with pytest.raises(ConfigError, match=r"TLS 1\.3 cipher suites 'TLS_NOPE'"):
        client_context(world.client_config(tls13_ciphersuites="TLS_NOPE"))


async def test_key_exchange_groups_are_configurable(world: TlsWorld) -> None:
    # The client offers P-256 only: a default server agrees on it.
    client_config = world.client_config(groups="P-256")
    assert client_context(client_config) is not client_context(world.client_config())
    client, server = tls_memory_pair(world, client_config=client_config)
    await handshake_both(client, server)
    assert isinstance(client.handshake_event, events.HandshakeCompleted)
    # Without a common group there is no handshake: the setting really reaches OpenSSL.
    client, server = tls_memory_pair(
        world,
        client_config=world.client_config(groups="X25519"),
        server_config=world.server_config(groups="P-256"),
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_quietly, server.do_handshake)
        with pytest.raises(HandshakeFailed):
            await client.do_handshake()


def test_unknown_groups_are_a_config_error(world: TlsWorld) -> None:
    with pytest.raises(ConfigError, match="TLS groups 'X25519:NOPE'"):
        client_context(world.client_config(groups="X25519:NOPE"))
    # The refused call left nothing on OpenSSL's error queue for the next one.
    client_context(world.client_config(groups="X25519"))


def test_a_context_without_the_certificate_request_watch_is_its_own(world: TlsWorld) -> None:
    # The load engine's contexts skip the CertificateRequest watch; they must not be handed to
    # the user agent, whose lock state needs it (and the other way round).
    config = world.client_config()
    watched = client_context(config)
    unwatched = client_context(config, watch_certificate_request=False)
    assert unwatched is not watched
    assert client_context(config, watch_certificate_request=False) is unwatched
    assert client_context(config) is watched
    assert client_context(world.client_config(), watch_certificate_request=False) is unwatched


def test_a_context_without_openssl_verdicts_still_gets_the_chain(world: TlsWorld) -> None:
    config = world.client_config()
    quiet = client_context(config, watch_certificate_request=False, record_verdicts=False)
    assert quiet is not client_context(config, watch_certificate_request=False)
    assert quiet is client_context(config, watch_certificate_request=False, record_verdicts=False)
    client = TlsEngine(quiet, server_side=False, server_name="example.com")
    server = TlsEngine(server_context(world.server_config()), server_side=True)
    client.handshake()
    for _ in range(10):
        for src, dst in ((client, server), (server, client)):
            data = src.data_to_send()
            if data:
                dst.receive_data(data)
        done = [engine.handshake() for engine in (server, client)]
        if all(done) and not client.data_to_send() and not server.data_to_send():
            break
    assert client.handshake_done
    # OpenSSL recorded nothing, and the chain is there for sipua's verifier to judge.
    assert client.openssl_verdicts == ()
    assert client.peer_chain()[0] == world.server_identity.certificate
