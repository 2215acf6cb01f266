"""The dnspython adapter and `locate()`, against the loopback DNS server in tests/support."""

from __future__ import annotations

import random
from collections.abc import Sequence

import dns.rcode
import pytest
import trio
import trio.testing

from sipua.errors import ConfigError, LocateError
from sipua.locate import DnsResolver, NaptrRecord, Query, SrvRecord, Target, locate
from sipua.locate.rfc3263 import Record
from tests.support.dns_server import DnsServer, serve_dns

AOR = "sips:alice@example.com"

FULL_ZONE: dict[tuple[str, str], list[str]] = {
    ("example.com", "NAPTR"): [
        '10 50 "s" "SIP+D2U" "" _sip._udp.example.com.',
        '20 50 "s" "SIPS+D2T" "" _sips._tcp.example.com.',
        '30 50 "s" "SIPS+D2S" "" _sips._sctp.example.com.',
    ],
    ("_sips._tcp.example.com", "SRV"): [
        "20 0 5063 backup.example.com.",
        "10 0 5062 sip1.example.com.",
    ],
    ("sip1.example.com", "A"): ["192.0.2.1"],
    ("sip1.example.com", "AAAA"): ["2001:db8::1"],
    ("backup.example.com", "A"): ["192.0.2.9"],
}


def resolver_for(server: DnsServer, lifetime: float = 1.0) -> DnsResolver:
    return DnsResolver(nameservers=[server.host], port=server.port, lifetime=lifetime)


def tls(host: str, port: int = 5061, name: str = "example.com") -> Target:
    return Target(host, port, "tls", name)


async def test_full_naptr_srv_address_chain() -> None:
    async with serve_dns(FULL_ZONE) as server:
        targets = await locate(AOR, resolver=resolver_for(server), rng=random.Random(0))
    assert targets == [tls("192.0.2.1", 5062), tls("2001:db8::1", 5062), tls("192.0.2.9", 5063)]
    assert server.queries == [
        ("example.com", "NAPTR"),
        ("_sips._tcp.example.com", "SRV"),
        ("sip1.example.com", "A"),
        ("sip1.example.com", "AAAA"),
        ("backup.example.com", "A"),
        ("backup.example.com", "AAAA"),
    ]


async def test_lookup_decodes_records() -> None:
    async with serve_dns(FULL_ZONE) as server:
        resolver = resolver_for(server)
        naptrs = await resolver.lookup(Query("example.com", "NAPTR"))
        srvs = await resolver.lookup(Query("_sips._tcp.example.com", "SRV"))
        v6 = await resolver.lookup(Query("sip1.example.com", "AAAA"))
    assert NaptrRecord(20, 50, "s", "SIPS+D2T", "", "_sips._tcp.example.com") in naptrs
    assert sorted(srvs, key=repr) == [
        SrvRecord(10, 0, 5062, "sip1.example.com"),
        SrvRecord(20, 0, 5063, "backup.example.com"),
    ]
    assert v6 == ["2001:db8::1"]


async def test_srv_only_after_nxdomain_for_naptr() -> None:
    zone = {
        ("_sips._tcp.example.com", "SRV"): ["0 0 5061 sip.example.net."],
        ("sip.example.net", "A"): ["192.0.2.3"],
    }
    async with serve_dns(zone) as server:
        targets = await locate(AOR, resolver=resolver_for(server))
    assert targets == [tls("192.0.2.3")]
    assert server.queries[:2] == [("example.com", "NAPTR"), ("_sips._tcp.example.com", "SRV")]


async def test_addresses_only_when_no_naptr_or_srv() -> None:
    zone = {("example.com", "A"): ["192.0.2.5"], ("example.com", "AAAA"): ["2001:db8::5"]}
    async with serve_dns(zone) as server:
        targets = await locate(AOR, resolver=resolver_for(server))
    assert targets == [tls("192.0.2.5"), tls("2001:db8::5")]
    assert [rdtype for _, rdtype in server.queries] == ["NAPTR", "SRV", "A", "AAAA"]


async def test_explicit_port_asks_addresses_only() -> None:
    async with serve_dns({**FULL_ZONE, ("example.com", "A"): ["192.0.2.7"]}) as server:
        targets = await locate("sips:alice@example.com:5080", resolver=resolver_for(server))
    assert targets == [tls("192.0.2.7", 5080)]
    assert server.queries == [("example.com", "A"), ("example.com", "AAAA")]


async def test_proxy_by_name_is_located_and_named() -> None:
    zone = {("proxy.example.net", "AAAA"): ["2001:db8::70"]}
    async with serve_dns(zone) as server:
        targets = await locate(AOR, "proxy.example.net:5070", resolver=resolver_for(server))
    assert targets == [tls("2001:db8::70", 5070, "proxy.example.net")]


async def test_ip_literal_proxy_asks_nothing() -> None:
    async with serve_dns(FULL_ZONE) as server:
        targets = await locate(AOR, "[::1]:5061", resolver=resolver_for(server))
        assert await locate(AOR, "127.0.0.1") == [tls("127.0.0.1")]  # default resolver unused
    assert targets == [tls("::1")]
    assert server.queries == []


async def test_nxdomain_everywhere_is_a_locate_error() -> None:
    async with serve_dns(FULL_ZONE) as server:
        with pytest.raises(LocateError, match=r"no address found for nowhere\.example"):
            await locate("sips:bob@nowhere.example", resolver=resolver_for(server))
    assert len(server.queries) == 4


async def test_servfail_names_the_query() -> None:
    rcodes = {("example.com", "NAPTR"): dns.rcode.SERVFAIL}
    async with serve_dns(FULL_ZONE, rcodes=rcodes) as server:
        with pytest.raises(LocateError) as info:
            await locate(AOR, resolver=resolver_for(server))
    message = str(info.value)
    assert "NAPTR lookup for example.com" in message
    assert "SERVFAIL" in message
    assert server.queries == [("example.com", "NAPTR")]  # no guessing past a broken zone


async def test_servfail_on_one_address_family_keeps_the_other() -> None:
    zone = {("example.com", "A"): ["192.0.2.5"]}
    rcodes = {("example.com", "AAAA"): dns.rcode.SERVFAIL}
    async with serve_dns(zone, rcodes=rcodes) as server:
        targets = await locate(AOR, resolver=resolver_for(server))
    assert targets == [tls("192.0.2.5")]


async def test_a_server_that_never_answers_times_out_quickly() -> None:
    async with serve_dns(FULL_ZONE, silent=True) as server:
        started = trio.current_time()
        with pytest.raises(LocateError) as info:
            await locate(AOR, resolver=resolver_for(server, lifetime=0.3))
        elapsed = trio.current_time() - started
    assert "DNS NAPTR lookup for example.com timed out after 0.3 s" in str(info.value)
    assert server.host in str(info.value)  # the message says which server was asked
    assert elapsed < 2.0
    assert server.queries  # it was asked, and kept quiet


async def test_no_server_listening_is_a_locate_error() -> None:
    # Bind a port and close it again, so nothing listens there: the query gets refused or lost.
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    resolver = DnsResolver(nameservers=["127.0.0.1"], port=port, lifetime=0.3)
    with pytest.raises(LocateError, match=r"NAPTR lookup for example\.com"):
        await locate(AOR, resolver=resolver)


async def test_bad_configuration_is_a_config_error_before_any_query() -> None:
    async with serve_dns(FULL_ZONE) as server:
        with pytest.raises(ConfigError, match="sips:"):
            await locate("sip:alice@example.com", resolver=resolver_for(server))
    assert server.queries == []


def test_lifetime_must_be_positive() -> None:
    with pytest.raises(ValueError, match="lifetime"):
        DnsResolver(lifetime=0)


class NeverAnswers:
    async def lookup(self, query: Query) -> Sequence[Record]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def test_whole_location_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    with pytest.raises(LocateError, match="took longer than 30 s"):
        await locate(AOR, resolver=NeverAnswers())
    assert trio.current_time() == pytest.approx(30.0)
