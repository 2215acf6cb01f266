from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipua.sip import Contact, CSeq, NameAddress, ParseError, SipUri, Via
from sipua.sip.fields import (
    CONTACT_LIST_FAST_RE,
    _fast_name_address,
    _fast_via,
    _parse_via_general,
    _split_name_address,
    parse_contacts,
    parse_cseq,
    parse_name_address,
    parse_via,
)


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


# --- Fast paths (one match, slot-filled objects) against the general parsers ----------------

_via_values = st.builds(
    lambda proto, transport, sep, host, port, params, more: (
        f"{proto}/{transport}{sep}{host}{port}{params}{more}"
    ),
    st.sampled_from(["SIP/2.0", "sip/2.0", "SIP / 2.0", "SIP/3.0"]),
    st.sampled_from(["TLS", "tls", "UDP", "WSS", "x-y"]),
    st.sampled_from([" ", "  ", "\t"]),
    st.sampled_from(["192.0.2.1", "h.example.com", "[2001:db8::1]", "[zz]", "h_1"]),
    st.sampled_from(["", ":5061", ":65536", ":0", ":", ": 5060"]),
    st.lists(
        st.sampled_from(
            [
                ";branch=z9hG4bK1",
                ";rport",
                ";rport=5061",
                ";received=192.0.2.2",
                ";received=[2001:db8::2]",
                ";Branch=Q",
                ';x="a;b=c, d"',
                ";x=",
                " ;y=1",
                ";z = 2",
            ]
        ),
        max_size=5,
    ).map("".join),
    st.sampled_from(["", ", SIP/2.0/TCP h2;branch=z9hG4bK2", ",", " "]),
)


@given(_via_values)
@settings(max_examples=600, deadline=None)
def test_fast_via_agrees_with_the_general_parser(value: str) -> None:
    try:
        general: list[Via] | None = _parse_via_general(value)
    except ParseError:
        general = None
    fast = _fast_via(value)
    if fast is not None:
        assert general == [fast]
        assert type(fast) is Via
    assert (parse_via(value) if general is not None else None) == general


_name_addr_values = st.builds(
    lambda display, uri, params: f"{display}{uri}{params}",
    st.sampled_from(["", '"Alice" ', '"A, \\"B\\"" ', '"" ', "Bob Smith ", "Bell, A ", '"x"']),
    st.sampled_from(
        [
            "<sips:alice@example.com>",
            "<sip:a%41@h:5060;transport=tls;lr>",
            "<sip:[2001:db8::1]:5061>",
            "<sip:[1:2:3:4:5:6:7::]>",
            "<sip:h?subject=x>",
            "<SIP:alice@h>",
            "<tel:+1-555>",
            "<sip:a@h:99999>",
            "sip:alice@example.com",
            "sips:a:pw@h:5061",
            "sip:a;b@h",
            "sip:a@h?x=1",
            "<sip:a@h",
        ]
    ),
    st.lists(
        st.sampled_from(
            [";tag=1928301774", ";TAG=X", ";expires=3600", ";lr", ';q="0.5"', " ;tag=2", ";"]
        ),
        max_size=3,
    ).map("".join),
)


def _general_name_address(value: str, cls: type[NameAddress]) -> NameAddress | None:
    try:
        return cls(*_split_name_address(value, "address"))
    except ParseError:
        return None


@given(_name_addr_values)
@settings(max_examples=600, deadline=None)
def test_fast_name_address_agrees_with_the_general_parser(value: str) -> None:
    for cls in (NameAddress, Contact):
        general = _general_name_address(value, cls)
        fast = _fast_name_address(value, cls)
        if fast is not None:
            assert type(fast) is cls
            assert fast == general
    general = _general_name_address(value, NameAddress)
    if general is None:
        with pytest.raises(ParseError):
            parse_name_address(value)
    else:
        assert parse_name_address(value) == general


@given(st.lists(_name_addr_values, min_size=1, max_size=3), st.sampled_from([",", " , ", ",,"]))
@settings(max_examples=400, deadline=None)
def test_contact_list_check_accepts_only_what_parse_contacts_accepts(
    elements: list[str], comma: str
) -> None:
    value = comma.join(elements)
    if CONTACT_LIST_FAST_RE.fullmatch(value) is not None:
        contacts = parse_contacts(value)  # must not raise
        assert all(type(c) is Contact for c in contacts)
        assert len(contacts) == len(elements)


def test_fast_values_are_frozen_and_equal_to_constructed_ones() -> None:
    via = _fast_via("SIP/2.0/TLS h:5061;branch=z9hG4bK1;rport")
    assert via == Via("TLS", "h", 5061, {"branch": "z9hG4bK1", "rport": None})
    assert repr(via) == repr(Via("TLS", "h", 5061, {"branch": "z9hG4bK1", "rport": None}))
    address = _fast_name_address('"A" <sip:a@h>;tag=1', NameAddress)
    assert address == NameAddress("A", SipUri("sip", "a", "h"), {"tag": "1"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        via.host = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        address.params = {}  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        parse_cseq("1 INVITE").seq = 2  # type: ignore[misc]
