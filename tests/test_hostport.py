"""`host[:port]` as users write it: one reader for the settings and for RFC 3263 location."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipua.hostport import is_host_name, is_ip, is_valid_host, split_host_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5061", ("127.0.0.1", 5061)),
        ("registrar.example.test", ("registrar.example.test", None)),
        ("registrar.example.test.:5061", ("registrar.example.test.", 5061)),
        ("[::1]:5061", ("::1", 5061)),
        ("[2001:db8::1]", ("2001:db8::1", None)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_split_host_port(text: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("::1", r"put the IPv6 address in brackets: \[::1\] or \[::1\]:5061"),
        ("1:2:3", "neither a host nor an IPv6 address; write IPv6 addresses with a port as"),
        ("[::1", r"missing '\]'"),
        ("[example.test]:1", "'example.test' in brackets is not an IPv6 address"),
        ("[::1]5061", "unexpected '5061' after the IPv6 address; expected ':PORT'"),
        ("host:port", "port 'port' is not a number"),
        ("host:5²", "port '5²' is not a number"),
        ("host:", "port '' is not a number"),
        ("host:0", "port '0' is out of range 1-65535"),
        ("host:70000", "out of range"),
        ("host:0000080", "out of range"),
        ("bad_host:1", "'bad_host' is not an IP address or a valid host name"),
        ("", "not an IP address or a valid host name"),
        ("1.2.3:5", "not an IP address or a valid host name"),
        ("a" * 64 + ".test", "not an IP address or a valid host name"),
    ],
)
def test_split_host_port_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_host_port(text)


def test_port_zero_only_when_allowed() -> None:
    assert split_host_port("0.0.0.0:0", allow_port_zero=True) == ("0.0.0.0", 0)
    assert split_host_port("[::]:0", allow_port_zero=True) == ("::", 0)


def test_a_bare_ipv6_address_only_when_allowed() -> None:
    # RFC 3263 location reads an outbound proxy written as a bare address: it has no port.
    assert split_host_port("2001:db8::1", bare_ipv6=True) == ("2001:db8::1", None)
    with pytest.raises(ValueError, match="neither a host nor an IPv6 address"):
        split_host_port("2001:db8::zz", bare_ipv6=True)


def test_host_kinds() -> None:
    assert is_ip("192.0.2.1")
    assert is_ip("::1")
    assert not is_ip("[::1]")
    assert is_host_name("sip.example.test.")
    assert not is_host_name("192.0.2.1")
    assert not is_host_name("-bad-.test")
    assert not is_host_name("a" * 254)
    assert is_valid_host("::1")
    assert is_valid_host("example.test")
    assert not is_valid_host("exa mple.test")


@given(st.text(max_size=40), st.booleans(), st.booleans())
def test_split_host_port_raises_only_value_error(text: str, zero: bool, bare: bool) -> None:
    try:
        host, port = split_host_port(text, allow_port_zero=zero, bare_ipv6=bare)
    except ValueError:
        return
    assert is_valid_host(host)
    assert port is None or (0 if zero else 1) <= port <= 65535
