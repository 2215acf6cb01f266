from __future__ import annotations

import pytest

from sipua.sip import AbsoluteUri, ParseError, SipUri, TelUri, parse_uri


def test_full_sip_uri() -> None:
    uri = SipUri.parse("sips:alice:secret@example.com:5061;transport=tls;LR?subject=hi&x=1")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips", "alice", "secret", "example.com", 5061,
    )  # fmt: skip
    assert uri.params == {"transport": "tls", "lr": None}
    assert uri.headers == {"subject": "hi", "x": "1"}
    assert uri.secure


def test_ipv6_reference_keeps_brackets() -> None:
    uri = SipUri.parse("sip:[2001:db8::1]:5060")
    assert uri.host == "[2001:db8::1]"
    assert str(uri) == "sip:[2001:db8::1]:5060"
    with pytest.raises(ParseError, match="IPv6"):
        SipUri.parse("sip:[2001:db8:::1]")


def test_escaping_is_undone_and_redone() -> None:
    uri = SipUri.parse("sip:sips%3Auser%40example.com@example.net")
    assert uri.user == "sips:user@example.com"
    assert str(uri) == "sip:sips%3Auser%40example.com@example.net"
    assert SipUri.parse("sip:null-%00-null@h").user == "null-\x00-null"


def test_user_with_semicolon_is_not_params() -> None:
    uri = SipUri.parse("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u@example.net"
    assert uri.params == {}


@pytest.mark.parametrize(
    "text",
    ["sip:", "sip:user@", "<sip:a@b>", "sip:a@b:99999", "sip:a b@c", "sip:a@b;", "nocolon", ""],
)
def test_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(text)


def test_tel_and_other_schemes() -> None:
    tel = parse_uri("tel:+1-201-555-0123;ext=12")
    assert tel == TelUri("+1-201-555-0123", {"ext": "12"})
    assert str(tel) == "tel:+1-201-555-0123;ext=12"
    other = parse_uri("soap.beep://192.0.2.103:3002")
    assert other == AbsoluteUri("soap.beep", "//192.0.2.103:3002")
    assert str(other) == "soap.beep://192.0.2.103:3002"


def test_comparison_rfc3261_19_1_4() -> None:
    a = SipUri.parse("sip:%61lice@ATLANTA.com;transport=TCP")
    b = SipUri.parse("sip:alice@AtLanTa.CoM;Transport=tcp")
    assert a.matches(b)
    assert not a.matches(SipUri.parse("SIP:ALICE@AtLanTa.CoM;Transport=udp"))
    assert not SipUri.parse("sip:bob@biloxi.com").matches(SipUri.parse("sip:bob@biloxi.com:5060"))
    assert not SipUri.parse("sip:carol@chicago.com").matches(
        SipUri.parse("sip:carol@chicago.com;transport=tcp")
    )
    assert SipUri.parse("sip:carol@chicago.com;foo=1").matches(
        SipUri.parse("sip:carol@chicago.com;bar")
    )
    assert not SipUri.parse("sip:a@b").matches(SipUri.parse("sips:a@b"))
    assert not SipUri.parse("sip:a@b?x=1").matches(SipUri.parse("sip:a@b"))
