from __future__ import annotations

import pytest

from sipua.sip import Contact, CSeq, NameAddress, ParseError, SipUri, Via
from sipua.sip.fields import parse_contacts, parse_cseq, parse_name_address, parse_via


def test_via_with_lws_and_params() -> None:
    (via,) = parse_via("SIP  /   2.0 /UDP 192.0.2.2:5060 ; branch = z9hG4bK1;rport")
    assert via == Via("UDP", "192.0.2.2", 5060, {"branch": "z9hG4bK1", "rport": None})
    assert via.branch == "z9hG4bK1"
    assert str(via) == "SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bK1;rport"


def test_via_list_and_ipv6() -> None:
    vias = parse_via("SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKa, SIP/2.0/TCP h;branch=b")
    assert [v.host for v in vias] == ["[2001:db8::1]", "h"]


@pytest.mark.parametrize(
    "value", ["SIP/2.0/UDP 192.0.2.15;;,;,,", "SIP/3.0/UDP h", "SIP/2.0/UDP", "SIP/2.0/UDP h:70000"]
)
def test_bad_via(value: str) -> None:
    with pytest.raises(ParseError):
        parse_via(value)


def test_cseq() -> None:
    assert parse_cseq("0009  INVITE") == CSeq(9, "INVITE")
    assert str(CSeq(9, "INVITE")) == "9 INVITE"
    for bad in ("2147483648 INVITE", "1" * 5000 + " X", "INVITE", "-1 INVITE"):
        with pytest.raises(ParseError):
            parse_cseq(bad)


def test_name_addr_forms() -> None:
    a = parse_name_address('"J Rosenberg \\\\\\"" <sip:jdrosen@example.com> ; tag = 98asjd8')
    assert a.display_name == 'J Rosenberg \\"'
    assert a.tag == "98asjd8"
    b = parse_name_address("sip:watson@example.com;tag=x")
    assert b == NameAddress(None, SipUri.parse("sip:watson@example.com"), {"tag": "x"})
    c = parse_name_address("caller<sip:caller@example.com>;tag=1")
    assert c.display_name == "caller"
    assert parse_name_address(str(a)) == a


@pytest.mark.parametrize(
    "value",
    [
        '"Mr. J. User <sip:j.user@example.com>',
        "Bell, Alexander <sip:a.g.bell@example.com>",
        "< sip:t.watson@example.org >",
        "<sip:a@b",
        "<sip:a@b>;",
    ],
)
def test_bad_name_addr(value: str) -> None:
    with pytest.raises(ParseError):
        parse_name_address(value)


def test_contacts() -> None:
    c1, c2 = parse_contacts('<sip:a@b;unknownparam>;expires=60, "x" <sips:c@d>;q=0.5')
    assert c1.uri == SipUri.parse("sip:a@b;unknownparam")
    assert c1.expires == 60
    assert c2.expires is None
    (c3,) = parse_contacts("sip:+19725552222@gw1.example.net;unknownparam")
    assert c3.params == {"unknownparam": None}
    (star,) = parse_contacts("*")
    assert star.is_star
    assert str(star) == "*"
    assert star == Contact.star()
    with pytest.raises(ParseError):
        parse_contacts("sip:user@example.com?Route=%3Csip:sip.example.com%3E")
    with pytest.raises(ParseError):
        _ = parse_contacts("<sip:a@b>;expires=soon")[0].expires
