"""The production verifier: `sipua.tls.policy.verify_chain` bound to a configuration.

`verify_chain` is the one truth about whom sipua trusts; OpenSSL's own verdicts are only
recorded for diagnostics. A client validates the server's chain and its RFC 5922 identity
against the configured TLS name; a server validates a client certificate's chain with purpose
"client" and no name (a client certificate names a device, not a domain).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509

from sipua.tls.context import TlsClientConfig, TlsServerConfig
from sipua.tls.events import Verification, Verifier


def client_verifier(config: TlsClientConfig) -> Verifier:
    """The verifier for the server's chain, as `config` says (name, policy, trusted).

    Args:
        config: The client settings; `server_name` is the name validated (RFC 5922 §7.2).

    Returns:
        A callable taking the peer chain (leaf first) and returning the verdict.
    """
    from sipua.tls.policy import TrustPolicy, verify_chain

    policy = config.policy if config.policy is not None else TrustPolicy()
    name = config.server_name.strip("[]") if config.server_name else None
    trusted = config.trusted

    def verify(chain: Sequence[x509.Certificate]) -> Verification:
        return verify_chain(list(chain), name=name, trusted=trusted, policy=policy)

    return verify


def server_verifier(config: TlsServerConfig) -> Verifier:
    """The verifier for a client certificate chain (purpose "client", no name check).

    Args:
        config: The server settings (policy and trusted certificates).

    Returns:
        A callable taking the client's chain (leaf first) and returning the verdict.
    """
    from sipua.tls.policy import TrustPolicy, verify_chain

    policy = config.policy if config.policy is not None else TrustPolicy()
    trusted = config.trusted

    def verify(chain: Sequence[x509.Certificate]) -> Verification:
        return verify_chain(
            list(chain), name=None, trusted=trusted, policy=policy, purpose="client"
        )

    return verify
