"""Helpers for TLS stream tests: identities from trustme, verifiers, connected stream pairs.

`tls_memory_pair()` and `tls_lockstep_pair()` give a client and a server `TlsStream` over
trio's in-memory streams (buffered, and "clogged" with no buffering), the pairs that
`trio.testing.check_two_way_stream` wants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import trio
import trio.testing
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sipua.tls.connection.context import (
    PrivateKey,
    TlsClientConfig,
    TlsProtocol,
    TlsServerConfig,
)
from sipua.tls.connection.events import Verification, Verifier
from sipua.tls.connection.stream import TlsStream

_Config = TypeVar("_Config", TlsClientConfig, TlsServerConfig)
_PROTOCOL_FIELDS = frozenset(f.name for f in fields(TlsProtocol))


def with_changes(config: _Config, changes: dict[str, object]) -> _Config:
    """`config` with `changes`, given as a test's flat keywords: the `TlsProtocol` ones
    (versions, ciphers, groups, key log) go into its `protocol`."""
    protocol = {k: v for k, v in changes.items() if k in _PROTOCOL_FIELDS}
    own = {k: v for k, v in changes.items() if k not in _PROTOCOL_FIELDS}
    return replace(  # type: ignore[arg-type]  # test convenience
        config, protocol=replace(config.protocol, **protocol), **own
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TestIdentity:
    """A certificate with its key, shaped like `sipua.tls.stores.store.DeviceIdentity`."""

    __test__ = False  # not a pytest test class

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    private_key: PrivateKey = field(repr=False)
    kind: str = "custom"

    def write_pem(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """Write `<stem>.crt` (leaf + chain) and `<stem>.key` for openssl subprocesses."""
        cert_path = directory / f"{stem}.crt"
        key_path = directory / f"{stem}.key"
        cert_path.write_bytes(
            b"".join(
                c.public_bytes(serialization.Encoding.PEM) for c in (self.certificate, *self.chain)
            )
        )
        key_path.write_bytes(
            self.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path


def ca_certificate(ca: trustme.CA) -> x509.Certificate:
    """The trustme CA's certificate as a cryptography object."""
    return x509.load_pem_x509_certificate(ca.cert_pem.bytes())


def identity(ca: trustme.CA, *names: str, common_name: str | None = None) -> TestIdentity:
    """A leaf for `names` (DNS or IP SANs) issued by `ca`."""
    leaf = ca.issue_cert(*names, common_name=common_name)
    certs = [x509.load_pem_x509_certificate(p.bytes()) for p in leaf.cert_chain_pems]
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    assert isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey))
    return TestIdentity(certificate=certs[0], chain=tuple(certs[1:]), private_key=key)


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """A stand-in verification result with the `VerifyResult` shape."""

    ok: bool
    verified: bool
    code: str
    reason: str


class RecordingVerifier:
    """A stand-in verifier: trusts chains whose last certificate is issued by `anchor`.

    It records every chain it saw, so tests can check what the stream passed.
    """

    def __init__(
        self, anchor: x509.Certificate | None, *, name: str | None = None, only_trusted: bool = True
    ) -> None:
        self.anchor = anchor
        self.name = name
        self.only_trusted = only_trusted
        self.seen: list[tuple[x509.Certificate, ...]] = []

    def __call__(self, chain: Sequence[x509.Certificate]) -> Verification:
        self.seen.append(tuple(chain))
        top = chain[-1]
        trusted = self.anchor is not None and top.issuer == self.anchor.subject
        if not trusted:
            return self._verdict("untrusted-issuer", "the chain does not end at a trusted CA")
        if self.name is not None:
            san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
            if self.name not in san.value.get_values_for_type(x509.DNSName):
                return self._verdict("name-mismatch", f"the certificate does not name {self.name}")
        return Verdict(ok=True, verified=True, code="ok", reason="verified")

    def _verdict(self, code: str, reason: str) -> Verdict:
        return Verdict(ok=not self.only_trusted, verified=False, code=code, reason=reason)


@dataclass
class TlsWorld:
    """One CA, a server identity for `example.com`, and matching configs and verifiers."""

    ca: trustme.CA = field(default_factory=trustme.CA)
    server_name: str = "example.com"

    @cached_property
    def server_identity(self) -> TestIdentity:
        return identity(self.ca, self.server_name, "127.0.0.1")

    def client_config(self, **changes: object) -> TlsClientConfig:
        base = TlsClientConfig(server_name=self.server_name, trusted=(ca_certificate(self.ca),))
        return with_changes(base, changes)

    def server_config(self, **changes: object) -> TlsServerConfig:
        base = TlsServerConfig(identity=self.server_identity, trusted=(ca_certificate(self.ca),))
        return with_changes(base, changes)

    def verifier(self, *, name: str | None = None, only_trusted: bool = True) -> RecordingVerifier:
        return RecordingVerifier(ca_certificate(self.ca), name=name, only_trusted=only_trusted)


def _pair(
    transports: tuple[trio.abc.Stream, trio.abc.Stream],
    world: TlsWorld,
    client_config: TlsClientConfig | None,
    server_config: TlsServerConfig | None,
    client_verifier: Verifier | None,
    server_verifier: Verifier | None,
) -> tuple[TlsStream, TlsStream]:
    client_transport, server_transport = transports
    client = TlsStream.client(
        client_transport,
        client_config or world.client_config(),
        verifier=client_verifier or world.verifier(name=world.server_name),
    )
    server = TlsStream.server(
        server_transport,
        server_config or world.server_config(),
        verifier=server_verifier or world.verifier(),
    )
    return client, server


def tls_memory_pair(
    world: TlsWorld,
    *,
    client_config: TlsClientConfig | None = None,
    server_config: TlsServerConfig | None = None,
    client_verifier: Verifier | None = None,
    server_verifier: Verifier | None = None,
) -> tuple[TlsStream, TlsStream]:
    """(client, server) TLS streams over trio's buffered in-memory stream pair."""
    return _pair(
        trio.testing.memory_stream_pair(),
        world,
        client_config,
        server_config,
        client_verifier,
        server_verifier,
    )


def tls_lockstep_pair(
    world: TlsWorld,
    *,
    client_config: TlsClientConfig | None = None,
    server_config: TlsServerConfig | None = None,
    client_verifier: Verifier | None = None,
    server_verifier: Verifier | None = None,
) -> tuple[TlsStream, TlsStream]:
    """(client, server) TLS streams over trio's unbuffered ("clogged") stream pair."""
    return _pair(
        trio.testing.lockstep_stream_pair(),
        world,
        client_config,
        server_config,
        client_verifier,
        server_verifier,
    )


async def handshake_both(client: TlsStream, server: TlsStream) -> None:
    """Run both handshakes concurrently (each side needs the other)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
