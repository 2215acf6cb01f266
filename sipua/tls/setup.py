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

import dataclasses
import datetime as dt
from dataclasses import dataclass
from functools import cached_property

from sipua.errors import SipuaError
from sipua.settings.model import Settings
from sipua.tls.certs import load_certificate_file
from sipua.tls.connection.context import TlsClientConfig, TlsProtocol, TlsServerConfig
from sipua.tls.expiry import Expiring, expiring
from sipua.tls.stores.device import DeviceIdentity
from sipua.tls.stores.files import StoredCertificate
from sipua.tls.stores.store import CertStore
from sipua.tls.trust.policy import TrustPolicy


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsChanges:
    """What differs between two `TlsSetup`s of a running user agent (a reload, a renewal).

    Attributes:
        trusted_added: Names of trusted certificates the new setup trusts and the old did not.
        trusted_removed: Names of those it no longer trusts.
        device_before: The device certificate presented before (name and fingerprint prefix).
        device_after: The one presented now; equal to `device_before` when unchanged.
    """

    trusted_added: tuple[str, ...]
    trusted_removed: tuple[str, ...]
    device_before: str
    device_after: str

    @property
    def changed(self) -> bool:
        """Whether anything differs."""
        return bool(
            self.trusted_added or self.trusted_removed or self.device_before != self.device_after
        )

    def fields(self) -> dict[str, object]:
        """The event fields of a `certificates-reloaded` event."""
        return {
            "trusted_added": list(self.trusted_added),
            "trusted_removed": list(self.trusted_removed),
            "device_certificate": self.device_after,
            "device_certificate_before": (
                self.device_before if self.device_before != self.device_after else None
            ),
        }


class TlsSetup:
    """The TLS side of one set of settings.

    Args:
        settings: the loaded settings.
        strict: the custom trusted store must load whole (`TrustedStore.custom`): a running
            user agent's reload, which keeps the trust it has rather than lose part of it to
            a damaged `trusted.pem`. Otherwise what cannot be read is skipped and reported in
            `store.problems`.

    Raises:
        CertificateError: a `--trusted-cert` file cannot be read.
        StoreError: `strict`, and the custom trusted store does not load whole.
    """

    def __init__(self, settings: Settings, *, strict: bool = False) -> None:
        self.tls = settings.tls
        self.store = CertStore(settings.data_dir)
        self.policy = TrustPolicy.from_settings(self.tls)
        tls = self.tls
        self.protocol = TlsProtocol(
            min_version=tls.min_version,
            max_version=tls.max_version,
            ciphers=tls.ciphers,
            tls13_ciphersuites=tls.tls13_ciphers,
            groups=tls.groups,
            keylog_path=tls.keylog_file,
        )
        custom = self.store.trusted.custom(strict=strict)
        for path in self.tls.trusted_certs:
            custom.extend(
                StoredCertificate.of(cert, role="trusted", kind="custom", path=path)
                for cert in load_certificate_file(path)
            )
        self._custom = custom
        self.trusted = tuple(stored.certificate for stored in custom)

    @cached_property
    def identity(self) -> DeviceIdentity:
        """The device certificate (created on first use: unique per MAC, else generic; a
        unique or generic one due for renewal is re-issued from the device CA).

        Raises:
            CertificateError, ConfigError: the configured device certificate is unusable.
        """
        return self.store.devices.identity(self.tls.device_cert, self.tls.mac)

    def in_use(self) -> list[StoredCertificate]:
        """The certificates this setup relies on: the custom trusted ones (store and
        `--trusted-cert`), the device certificate presented and the chain sent with it."""
        identity = self.identity
        device: list[StoredCertificate] = [
            StoredCertificate.of(identity.certificate, role="device", kind=identity.kind)
        ]
        for cert in identity.chain:
            if identity.kind == "custom":
                device.append(StoredCertificate.of(cert, role="device", kind="custom"))
            else:
                device.append(
                    StoredCertificate.of(
                        cert, role="device", kind="device-ca", path=self.store.devices.ca_path
                    )
                )
        return [*self._custom, *device]

    def expiring(self, within_days: int, now: dt.datetime | None = None) -> list[Expiring]:
        """The certificates in use that expire within `within_days` days."""
        moment = dt.datetime.now(dt.UTC) if now is None else now
        return expiring(self.in_use(), within_days=within_days, now=moment)

    def changes_since(self, old: TlsSetup) -> TlsChanges:
        """What differs from an older setup (trusted set, device certificate)."""
        before = {s.fingerprint: s.name for s in old._custom}
        after = {s.fingerprint: s.name for s in self._custom}
        return TlsChanges(
            trusted_added=tuple(name for fp, name in after.items() if fp not in before),
            trusted_removed=tuple(name for fp, name in before.items() if fp not in after),
            device_before=_device_label(old.identity),
            device_after=_device_label(self.identity),
        )

    def provisioning_client(self, host: str) -> TlsClientConfig:
        """The configuration of an HTTPS provisioning fetch from `host`: the same trust and
        identity rules as a flow, and the device certificate as client certificate as a desk
        phone presents it, or none while there is no usable one yet (fetching it is what the
        provisioning run is for).

        Unlike a phone with "Only Accept Trusted Certificates" off, the server must verify
        whatever `only_trusted` says: what it serves decides whom sipua trusts next.
        """
        try:
            config = self.client(host)
        except SipuaError:
            config = self.client(host, identity=False)
        if config.policy is not None and not config.policy.only_trusted:
            config = dataclasses.replace(
                config, policy=dataclasses.replace(config.policy, only_trusted=True)
            )
        return config

    def client(
        self, server_name: str | None, *, first_use: bool = False, identity: bool = True
    ) -> TlsClientConfig:
        """The configuration of a flow to a server that must prove `server_name` (RFC 5922).

        Args:
            server_name: The TLS name.
            first_use: The account trusts on first use: a chain without a trusted issuer
                completes the handshake (unverified) so that `sipua.tls.trust.pins.judge` can
                accept it on the recorded key; every other check of the policy still applies.
            identity: Present the device certificate when the server asks (mutual TLS).
        """
        policy = self.policy
        if first_use and policy.only_trusted:
            policy = dataclasses.replace(policy, only_trusted=False)
        return TlsClientConfig(
            server_name=server_name,
            policy=policy,
            trusted=self.trusted,
            # The device certificate doubles as the client certificate for mutual TLS.
            identity=self.identity if identity else None,
            protocol=self.protocol,
        )

    def server(self) -> TlsServerConfig:
        """The listener's configuration: the device certificate, and how callers are checked."""
        return TlsServerConfig(
            identity=self.identity,
            client_certs=self.tls.verify_client,
            policy=self.policy,
            trusted=self.trusted,
            protocol=self.protocol,
        )


def _device_label(identity: DeviceIdentity) -> str:
    stored = StoredCertificate.of(identity.certificate, role="device", kind=identity.kind)
    return f"{stored.name} ({identity.kind}, sha256 {stored.fingerprint[:16]})"
