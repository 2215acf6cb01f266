from __future__ import annotations

import dataclasses
import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipua.sip import AbsoluteUri, ParseError, SipUri, TelUri, parse_uri
from sipua.sip.uri import (
    _SIP_URI_FAST_RE,
    IPV6_REFERENCE,
    _parse_uri_general,
    host_port,
    mutable_twin,
    new_sip_uri,
)


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


# --- The fast path (one match of SIP_URI_FAST) against the general path ---------------------

_IPV6_RE = re.compile(IPV6_REFERENCE)

# Pieces that cover both paths: upper-case schemes, escapes, IPv6 text good and bad, ports
# beyond 65535, parameters with and without values, URI headers.
_uri_texts = st.builds(
    lambda scheme, user, host, port, params, headers: (
        f"{scheme}:{user}{host}{port}{params}{headers}"
    ),
    st.sampled_from(["sip", "sips", "SIP", "Sips", "tel", "sipx"]),
    st.sampled_from(["", "alice@", "a%41b@", "a:pw@", "a;x=1@", "a b@", "@", "a%4@", "+1-555@"]),
    st.sampled_from(
        [
            "example.com",
            "EXAMPLE.com.",
            "192.0.2.1",
            "h_1",
            "[2001:db8::1]",
            "[::]",
            "[::1]",
            "[1:2:3:4:5:6:7:8]",
            "[1:2:3:4:5:6:7::]",
            "[::ffff:192.0.2.1]",
            "[2001:db8:::1]",
            "[1:2:3:4:5:6:7:8:9]",
            "[12345::1]",
            "[1::2::3]",
            "[]",
            "",
        ]
    ),
    st.sampled_from(["", ":5060", ":0", ":65535", ":65536", ":99999", ":007", ":", ":123456"]),
    st.lists(
        st.sampled_from([";lr", ";transport=TLS", ";Maddr=h", ";x=%41", ";=v", ";a=", ";"]),
        max_size=3,
    ).map("".join),
    st.sampled_from(["", "?subject=hi", "?a=&b=2", "?x", "?"]),
)


@given(_uri_texts)
@settings(max_examples=600, deadline=None)
def test_fast_path_agrees_with_general_path(text: str) -> None:
    try:
        general = _parse_uri_general(text)
    except ParseError:
        general = None
    if _SIP_URI_FAST_RE.fullmatch(text) is not None:
        assert general is not None, "fast path accepted what the general path rejects"
        assert parse_uri(text) == general
    elif general is None:
        with pytest.raises(ParseError):
            parse_uri(text)
    else:
        assert parse_uri(text) == general


@given(st.text(alphabet="0123456789abcdefABCDEF:.", max_size=45))
@settings(max_examples=1000, deadline=None)
def test_fast_ipv6_check_accepts_only_valid_addresses(text: str) -> None:
    if _IPV6_RE.fullmatch(f"[{text}]") is not None:
        ipaddress.IPv6Address(text)  # raises if the fast pattern were too liberal


@pytest.mark.parametrize("text", ["::", "::1", "1::", "2001:db8::10", "1:2:3:4:5:6:7:8", "a::b:c"])
def test_fast_ipv6_check_takes_the_usual_forms(text: str) -> None:
    assert _IPV6_RE.fullmatch(f"[{text}]") is not None


@pytest.mark.parametrize(
    "text",
    ["1:2:3:4::5:6:7:8", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::1", "::1:2:3:4:5:6:7:8", ":1::"],
)
def test_fast_ipv6_check_refuses_invalid_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        ipaddress.IPv6Address(text)
    assert _IPV6_RE.fullmatch(f"[{text}]") is None


def test_fast_construction_builds_an_equal_frozen_value() -> None:
    fast = new_sip_uri("sips", "alice", "example.com", 5061, {"lr": None}, {}, None)
    assert type(fast) is SipUri
    assert fast == SipUri("sips", "alice", "example.com", 5061, {"lr": None})
    assert repr(fast) == repr(SipUri("sips", "alice", "example.com", 5061, {"lr": None}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.host = "other"  # type: ignore[misc]


def test_mutable_twin_refuses_classes_it_cannot_stand_in_for() -> None:
    from sipua.sip import Contact, Request

    for cls in (Contact, Request, dict):
        with pytest.raises(TypeError):
            mutable_twin(cls)


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("127.0.0.1", 5061, "127.0.0.1:5061"),
        ("example.test", None, "example.test"),
        ("2001:db8::1", 5061, "[2001:db8::1]:5061"),
        ("[2001:db8::1]", 5061, "[2001:db8::1]:5061"),  # never doubled
        ("::1", None, "[::1]"),
    ],
)
def test_host_port_brackets_ipv6_once(host: str, port: int | None, expected: str) -> None:
    assert host_port(host, port) == expected
