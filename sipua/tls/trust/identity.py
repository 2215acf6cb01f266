"""RFC 5922 §7: which SIP domain a certificate speaks for, and whether that is the one we want.

Theory of operation: identities are collected from the certificate in RFC 5922's order of
precedence (§7.1), then compared with the expected domain (§7.2):

1. Each subjectAltName URI with scheme `sip` and no user part is an identity: its host.
   (`sip:alice@example.com` names a user, not a domain; `sips:` and other schemes are not SIP
   domain identities under a strict reading of §7.1, so they are ignored.)
2. Only when step 1 found nothing, each subjectAltName dNSName is an identity.
3. Only when the certificate has no subjectAltName extension at all, the subject's CN is an
   identity, if it is a valid DNS name.

Comparison is on the host part only (no scheme, port or parameters), case-insensitive
(RFC 4343), whole-name: there is no suffix matching. Only the expected name is mapped to its
ASCII form, by IDNA 2008 with UTS 46 (`faß.de` is `xn--fa-hia.de`, not IDNA 2003's `fass.de`,
another domain). Certificate values are never mapped: a CA issues A-labels, so a non-ASCII
value is no identity at all (a CN "\u212aamailio.org", with a Kelvin sign, must not become
kamailio.org). A wildcard identity such as
`*.example.com` matches nothing unless the caller opts in (`allow_wildcards`), and then it
matches exactly one whole left-most label (`sip.example.com`, never `example.com` nor
`a.b.example.com`). RFC 5922 §7.2 forbids wildcards; the opt-in exists because deployments use
RFC 2818-style certificates (desk phones validate them that way).

An IP address as the expected name never matches a DNS identity (RFC 5922 has none for IPs);
it matches only a subjectAltName iPAddress with the same address, the RFC 5280 way, which lets
sipua verify registrars addressed by IP.

The expected name is the domain of the URI that was fed into RFC 3263 (RFC 5922 §7.3), never
the SRV target: that choice is the caller's, this module only compares.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final, Literal

import idna
from cryptography import x509
from cryptography.x509.oid import NameOID

#: The longest DNS name (RFC 1035 §2.3.4), in characters.
MAX_DNS_NAME_CHARS: Final = 253

IdentitySource = Literal["uri", "dns", "cn", "ip"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """One identity a certificate presents, and where in the certificate it came from."""

    source: IdentitySource
    value: str

    def __str__(self) -> str:
        return {"uri": "URI:sip:", "dns": "DNS:", "cn": "CN=", "ip": "IP:"}[self.source] + (
            self.value
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityCheck:
    """The outcome of comparing a certificate's identities with the expected name."""

    expected: str
    presented: tuple[Identity, ...]
    matched: Identity | None

    @property
    def ok(self) -> bool:
        """True when one presented identity matches the expected name."""
        return self.matched is not None

    @property
    def reason(self) -> str:
        """A sentence saying what matched, or what was expected versus presented."""
        if self.matched is not None:
            return f"certificate identity {self.matched} matches {self.expected!r}"
        if not self.presented:
            return (
                f"certificate presents no SIP domain identity (no sip: URI, DNS name or CN); "
                f"expected {self.expected!r}"
            )
        shown = ", ".join(str(i) for i in self.presented)
        return f"certificate is for {shown}, not {self.expected!r}"


def ascii_host(name: str) -> str | None:
    """The ASCII form of a host name: IDNA 2008 A-labels (UTS 46 mapping), lower case.

    An ASCII name is only lower-cased (so `_sip._tcp` style names pass); a non-ASCII one is
    encoded with `idna` (IDNA 2008), never with Python's "idna" codec (IDNA 2003, which maps
    `faß.de` onto the different domain `fass.de`). One trailing dot is dropped.

    Returns:
        The name, or None when it is not a valid internationalized domain name.
    """
    text = name.strip().removesuffix(".")
    if text.isascii():
        return text.lower()
    try:
        return idna.encode(text, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None


def normalize_name(name: str) -> str:
    """The expected name in comparison form: see `ascii_host`; IPs in canonical text form.

    IPv6 brackets are removed. A non-ASCII name that is not a valid IDN comes back lower-cased
    but unmapped, so it matches no certificate identity (those are ASCII only).
    """
    text = name.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    ip = _as_ip(text)
    if ip is not None:
        return str(ip)
    host = ascii_host(text)
    return host if host is not None else text.removesuffix(".").lower()


def _certificate_host(value: str) -> str | None:
    # RFC 5280 §4.2.1.6 / RFC 5922 §7.1: certificate names are ASCII (IDNs as A-labels) and are
    # compared, never mapped; a non-ASCII value is not an identity.
    text = value.strip()
    if not text.isascii():
        return None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    ip = _as_ip(text)
    if ip is not None:
        return str(ip)
    return text.removesuffix(".").lower() or None


def _as_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_dns_name(text: str) -> bool:
    # A host name (RFC 1123 letters, digits, hyphens), optionally with a "*" left-most label.
    if not text or len(text) > MAX_DNS_NAME_CHARS or _as_ip(text) is not None:
        return False
    labels = text.split(".")
    for index, label in enumerate(labels):
        if label == "*" and index == 0:
            continue
        if not label or len(label) > 63 or label.startswith("-") or label.endswith("-"):
            return False
        if not all(c.isalnum() or c == "-" for c in label) or not label.isascii():
            return False
    return True


def _sip_uri_domain(uri: str) -> str | None:
    # RFC 5922 §7.1: "sip:" scheme (case-insensitive) and no userinfo; the host without port or
    # parameters. Anything else (sips:, tel:, user@host) is not a domain identity.
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() != "sip" or not rest:
        return None
    host = rest
    for stop in (";", "?"):
        host = host.split(stop, 1)[0]
    if "@" in host:
        return None
    if host.startswith("["):
        end = host.find("]")
        return None if end < 0 else _certificate_host(host[: end + 1])
    host = host.split(":", 1)[0]
    return _certificate_host(host) if host else None


def presented_identities(cert: x509.Certificate) -> tuple[Identity, ...]:
    """The certificate's SIP domain identities, in RFC 5922 §7.1 precedence.

    subjectAltName iPAddress entries are included (source "ip") for comparison with IP names.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is None:
        cns = []
        for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            value = attribute.value
            # Validated as it stands, before any change: a CN is an identity only if it
            # already is an ASCII host name.
            host = _certificate_host(value) if isinstance(value, str) else None
            if host is not None and _is_dns_name(host):
                cns.append(Identity(source="cn", value=host))
        return tuple(cns)
    ips = tuple(
        Identity(source="ip", value=str(entry)) for entry in san.get_values_for_type(x509.IPAddress)
    )
    uris = []
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        domain = _sip_uri_domain(uri)
        if domain is not None:
            uris.append(Identity(source="uri", value=domain))
    if uris:
        return (*uris, *ips)
    hosts = (_certificate_host(value) for value in san.get_values_for_type(x509.DNSName))
    dns = tuple(Identity(source="dns", value=host) for host in hosts if host is not None)
    return (*dns, *ips)


def _wildcard_matches(pattern: str, name: str) -> bool:
    # "*.example.com" covers exactly one whole label; "*.com" (fewer than two labels under the
    # wildcard) and partial wildcards ("s*.example.com") never match.
    if not pattern.startswith("*."):
        return False
    suffix = pattern[2:]
    if "*" in suffix or suffix.count(".") < 1:
        return False
    label, dot, rest = name.partition(".")
    return bool(dot) and bool(label) and rest == suffix


def identity_matches(identity: Identity, expected: str, *, allow_wildcards: bool = False) -> bool:
    """Compares one identity with an already normalized expected name (RFC 5922 §7.2)."""
    expected_ip = _as_ip(expected)
    if identity.source == "ip" or expected_ip is not None:
        # IPs only ever match IPs: a DNS identity "127.0.0.1" would be a misissued certificate.
        return (
            identity.source == "ip"
            and expected_ip is not None
            and (_as_ip(identity.value) == expected_ip)
        )
    if identity.value == expected:
        return True
    return allow_wildcards and _wildcard_matches(identity.value, expected)


def check_identity(
    cert: x509.Certificate, expected: str, *, allow_wildcards: bool = False
) -> IdentityCheck:
    """Checks that `cert` speaks for the SIP domain `expected` (RFC 5922 §7.1-7.2).

    Args:
        cert: the peer's leaf certificate.
        expected: the SIP domain (or IP address) the connection was made for.
        allow_wildcards: accept `*.domain` identities for exactly one left-most label.

    Returns:
        An `IdentityCheck` listing what was presented and what, if anything, matched.
    """
    wanted = normalize_name(expected)
    presented = presented_identities(cert)
    for identity in presented:
        if identity_matches(identity, wanted, allow_wildcards=allow_wildcards):
            return IdentityCheck(expected=wanted, presented=presented, matched=identity)
    return IdentityCheck(expected=wanted, presented=presented, matched=None)
