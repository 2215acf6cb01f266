"""sipua: a SIPS (SIP over TLS) user agent.

It registers over TLS to a registrar, verifying the registrar's certificate against a trusted
list; it listens for inbound TLS connections with its device certificate; and it reports a
per-account lock state once TLS negotiation succeeds.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
