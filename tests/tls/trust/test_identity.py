"""RFC 5922 §7 identity matrix (sip-tls-anchors.md §3, D2-D4) as table tests."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sipua.tls.trust.identity import check_identity, normalize_name, presented_identities
from tests.support.certs import Issued, make_ca, make_leaf

ROOT = make_ca("Identity Test Root")


@dataclass(frozen=True)
class Case:
    id: str
    expected: str
    match: bool
    cn: str | None = None
    dns: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    san: bool = True
    wildcards: bool = False
    presented: tuple[str, ...] | None = field(default=None)


CASES = [
    # The matrix of sip-tls-anchors.md §3.
    Case("san-uri-sip-domain", "example.com", True, uris=("sip:example.com",)),
    Case("san-uri-with-user", "example.com", False, uris=("sip:alice@example.com",), presented=()),
    Case("san-uri-sips-strict", "example.com", False, uris=("sips:example.com",), presented=()),
    Case(
        "dns-ignored-when-sip-uri",
        "example.com",
        False,
        dns=("example.com",),
        uris=("sip:other.com",),
        presented=("URI:sip:other.com",),
    ),
    Case("san-dns-only", "example.com", True, dns=("example.com",)),
    Case("cn-only-no-san", "example.com", True, cn="example.com", san=False),
    Case("cn-ignored-with-san", "example.com", False, cn="example.com", dns=("foo",)),
    Case("wildcard-default-off", "sip.example.com", False, dns=("*.example.com",)),
    Case("wildcard-opt-in", "sip.example.com", True, dns=("*.example.com",), wildcards=True),
    Case("srv-target-not-aus", "example.com", False, dns=("sip1.example.com",)),
    # Comparison rules (D3).
    Case("case-insensitive", "EXAMPLE.com", True, uris=("SIP:Example.COM",)),
    Case("trailing-dot", "example.com.", True, dns=("example.com",)),
    Case(
        "uri-port-and-params-ignored",
        "example.com",
        True,
        uris=("sip:example.com:5061;transport=tls",),
    ),
    Case("no-suffix-match", "example.com", False, dns=("sip.example.com",)),
    Case("no-prefix-match", "sip.example.com", False, dns=("example.com",)),
    Case("wildcard-not-bare-domain", "example.com", False, dns=("*.example.com",), wildcards=True),
    Case(
        "wildcard-one-label-only", "a.b.example.com", False, dns=("*.example.com",), wildcards=True
    ),
    Case(
        "partial-wildcard-never", "sip.example.com", False, dns=("s*.example.com",), wildcards=True
    ),
    Case("wildcard-tld-never", "example.com", False, dns=("*.com",), wildcards=True),
    Case("literal-wildcard-name", "*.example.com", True, dns=("*.example.com",)),
    Case("wildcard-in-cn", "sip.example.com", True, cn="*.example.com", san=False, wildcards=True),
    Case("second-dns-entry", "example.net", True, dns=("example.com", "example.net")),
    Case("uri-wins-over-dns", "example.com", True, dns=("other.com",), uris=("sip:example.com",)),
    Case(
        "user-uri-does-not-hide-dns",
        "example.com",
        True,
        dns=("example.com",),
        uris=("sip:bob@example.com",),
    ),
    # IP names (D3 applied to literals): never a DNS identity, only an iPAddress SAN.
    Case("ip-vs-dns-identity", "192.0.2.1", False, dns=("192.0.2.1",)),
    Case("ip-vs-cn", "192.0.2.1", False, cn="192.0.2.1", san=False),
    Case("ip-san", "192.0.2.1", True, ips=("192.0.2.1",)),
    Case("ipv6-san-bracketed", "[2001:db8::1]", True, ips=("2001:db8::1",)),
    Case("ip-san-other-address", "192.0.2.2", False, ips=("192.0.2.1",)),
    Case("dns-name-vs-ip-san", "example.com", False, ips=("192.0.2.1",)),
    # IDN: compared in A-label form.
    Case("idn-a-label", "bücher.example", True, dns=("xn--bcher-kva.example",)),
    # Nothing at all.
    Case("no-identity", "example.com", False, cn=None, san=False, presented=()),
    Case(
        "cn-not-a-dns-name", "example.com", False, cn="Example Corp Server", san=False, presented=()
    ),
]


def _cert(case: Case) -> Issued:
    return make_leaf(ROOT, cn=case.cn, dns=case.dns, uris=case.uris, ips=case.ips, san=case.san)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_identity_matrix(case: Case) -> None:
    leaf = _cert(case)
    check = check_identity(leaf.cert, case.expected, allow_wildcards=case.wildcards)
    assert check.ok is case.match, check.reason
    if case.presented is not None:
        assert tuple(str(i) for i in check.presented) == case.presented


def test_rejection_says_expected_and_presented() -> None:
    leaf = make_leaf(ROOT, dns=("sip1.example.com", "sip2.example.com"))
    check = check_identity(leaf.cert, "example.com")
    assert not check.ok
    assert "'example.com'" in check.reason
    assert "DNS:sip1.example.com" in check.reason
    assert "DNS:sip2.example.com" in check.reason


def test_rejection_without_identities_says_so() -> None:
    leaf = make_leaf(ROOT, cn=None, uris=("sip:alice@example.com",))
    check = check_identity(leaf.cert, "example.com")
    assert "no SIP domain identity" in check.reason


def test_presented_identities_keep_precedence_order() -> None:
    leaf = make_leaf(ROOT, cn="cn.example", dns=("dns.example",), uris=("sip:uri.example",))
    assert [str(i) for i in presented_identities(leaf.cert)] == ["URI:sip:uri.example"]


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Example.COM.", "example.com"),
        ("[::1]", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_normalize_name(raw: str, normal: str) -> None:
    assert normalize_name(raw) == normal


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        # IDNA 2008 + UTS 46, not IDNA 2003: ß and ς are letters of their own, not "ss"/"σ".
        ("faß.de", "xn--fa-hia.de"),
        ("FASS.de", "fass.de"),
        ("βόλος.com", "xn--nxasmm1c.com"),
        ("_sips._tcp.example.com", "_sips._tcp.example.com"),
    ],
)
def test_normalize_name_uses_idna_2008(raw: str, normal: str) -> None:
    assert normalize_name(raw) == normal


def test_idn_name_matches_its_idna_2008_a_label_only() -> None:
    a_label = make_leaf(ROOT, dns=("xn--fa-hia.de",))
    assert check_identity(a_label.cert, "faß.de").ok
    assert check_identity(a_label.cert, "xn--fa-hia.de").ok
    # The IDNA 2003 mapping of faß.de is fass.de, a different domain with another owner.
    other_domain = make_leaf(ROOT, dns=("fass.de",))
    assert not check_identity(other_domain.cert, "faß.de").ok


@pytest.mark.parametrize(
    "value",
    ["\u212aamailio.org", "kamaılio.org", "ｋamailio.org"],
    ids=["kelvin-sign", "dotless-i", "fullwidth-k"],
)
def test_certificate_values_are_never_mapped(value: str) -> None:
    # A non-ASCII certificate value is not an identity: validated as it stands, not after a
    # mapping that would turn it into kamailio.org.
    cn_only = make_leaf(ROOT, cn=value, san=False)
    assert presented_identities(cn_only.cert) == ()
    assert not check_identity(cn_only.cert, "kamailio.org").ok
