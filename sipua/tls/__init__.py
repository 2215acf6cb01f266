"""TLS for sipua, in three parts: whom to trust (`trust/`), the certificates on disk
(`stores/`), and the connection machinery (`connection/`); `certs.py` reads certificates and
keys for all three.

The trust decision is `verify_chain` under a `TrustPolicy`; the TLS engine calls it after every
handshake, and `sipua cert verify` calls it offline, so there is one truth about trust.
"""

from __future__ import annotations

from sipua.tls.trust.policy import TrustPolicy, VerifyResult, verify_chain

__all__ = ["TrustPolicy", "VerifyResult", "verify_chain"]
