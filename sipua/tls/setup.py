"""Settings in, TLS configurations out: the one builder of sipua's TLS configuration.

`TlsSetup` reads once what the `[tls]` settings and the certificate store decide (the trust
policy, the custom trusted certificates of the store plus `--trusted-cert`, the device identity
that is both the listener's certificate and the client certificate for mutual TLS) and builds
the client configuration for a flow to a registrar, the server configuration for the listener,
and the policy `sipua cert verify` judges a chain with. `sipua register` (its flows and its
listener), `sipua load` and `sipua cert verify` all use it, so no setting can mean one thing in
one command and another elsewhere.
"""

from __future__ import annotations

from functools import cached_property

from sipua.settings.model import Settings
from sipua.tls.certs import load_certificate_file
from sipua.tls.connection.context import Identity, TlsClientConfig, TlsServerConfig
from sipua.tls.stores.store import CertStore
from sipua.tls.trust.policy import TrustPolicy


class TlsSetup:
    """The TLS side of one set of settings.

    Args:
        settings: the loaded settings.

    Raises:
        CertificateError: a `--trusted-cert` file cannot be read.
    """

    def __init__(self, settings: Settings) -> None:
        self.tls = settings.tls
        self.store = CertStore(settings.data_dir)
        self.policy = TrustPolicy.from_settings(self.tls)
        trusted = [summary.certificate for summary in self.store.trusted.custom()]
        for path in self.tls.trusted_certs:
            trusted.extend(load_certificate_file(path))
        self.trusted = tuple(trusted)

    @cached_property
    def identity(self) -> Identity:
        """The device certificate (created on first use: unique per MAC, else generic).

        Raises:
            CertificateError, ConfigError: the configured device certificate is unusable.
        """
        return self.store.devices.identity(self.tls.device_cert, self.tls.mac)

    def client(self, server_name: str | None) -> TlsClientConfig:
        """The configuration of a flow to a server that must prove `server_name` (RFC 5922)."""
        tls = self.tls
        return TlsClientConfig(
            server_name=server_name,
            policy=self.policy,
            trusted=self.trusted,
            # The device certificate doubles as the client certificate for mutual TLS.
            identity=self.identity,
            min_version=tls.min_version,
            max_version=tls.max_version,
            ciphers=tls.ciphers,
            tls13_ciphersuites=tls.tls13_ciphers,
            groups=tls.groups,
            keylog_path=tls.keylog_file,
        )

    def server(self) -> TlsServerConfig:
        """The listener's configuration: the device certificate, and how callers are checked."""
        tls = self.tls
        return TlsServerConfig(
            identity=self.identity,
            client_certs=tls.verify_client,
            policy=self.policy,
            trusted=self.trusted,
            min_version=tls.min_version,
            max_version=tls.max_version,
            ciphers=tls.ciphers,
            tls13_ciphersuites=tls.tls13_ciphers,
            groups=tls.groups,
            keylog_path=tls.keylog_file,
        )
