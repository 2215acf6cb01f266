"""Table tests for the pure RFC 3263 logic: plans, NAPTR filtering, SRV ordering, the chain."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipua.errors import ConfigError, LocateError
from sipua.hostport import is_ip
from sipua.locate.rfc3263 import (
    MAX_QUERIES,
    MAX_TARGETS,
    LocatePlan,
    Locator,
    NaptrRecord,
    Query,
    Record,
    SrvRecord,
    Target,
    order_srv,
    plan_targets,
    select_naptr,
    srv_service_unavailable,
)

# --- plans and TLS names -----------------------------------------------------------------------

AOR = "sips:alice@example.com"
DOMAIN = "example.com"
PROXY = "proxy.example.net"


def by_name(host: str, port: int | None, tls_name: str) -> LocatePlan:
    return LocatePlan(host=host, port=port, tls_name=tls_name, numeric=False)


def by_ip(host: str, port: int | None, tls_name: str) -> LocatePlan:
    return LocatePlan(host=host, port=port, tls_name=tls_name, numeric=True)


PLAN_CASES: list[tuple[str, str | None, str | None, LocatePlan]] = [
    # The AOR's domain is located and is the TLS name.
    (AOR, None, None, by_name(DOMAIN, None, DOMAIN)),
    ("sips:alice@EXAMPLE.com.", None, None, by_name(DOMAIN, None, DOMAIN)),
    ("Alice <sips:alice@example.com>", None, None, by_name(DOMAIN, None, DOMAIN)),
    ("sips:alice;ext=1@example.com", None, None, by_name(DOMAIN, None, DOMAIN)),
    ("sips:example.com", None, None, by_name(DOMAIN, None, DOMAIN)),
    ("sips:alice@example.com:5062", None, None, by_name(DOMAIN, 5062, DOMAIN)),
    ("sips:alice@example.com;transport=tcp", None, None, by_name(DOMAIN, None, DOMAIN)),
    ("sips:alice:pw@example.com?subject=x", None, None, by_name(DOMAIN, None, DOMAIN)),
    # A proxy by name is located and is the TLS name.
    (AOR, PROXY, None, by_name(PROXY, None, PROXY)),
    (AOR, "proxy.example.net:5070", None, by_name(PROXY, 5070, PROXY)),
    (AOR, "sips:proxy.example.net;lr", None, by_name(PROXY, None, PROXY)),
    (AOR, "", None, by_name(DOMAIN, None, DOMAIN)),
    # A proxy by IP address is used as is; the TLS name stays the AOR's domain (no IP identity).
    (AOR, "127.0.0.1:5061", None, by_ip("127.0.0.1", 5061, DOMAIN)),
    (AOR, "127.0.0.1", None, by_ip("127.0.0.1", None, DOMAIN)),
    (AOR, "[::1]:5071", None, by_ip("::1", 5071, DOMAIN)),
    (AOR, "[0:0::1]", None, by_ip("::1", None, DOMAIN)),
    (AOR, "2001:db8::7", None, by_ip("2001:db8::7", None, DOMAIN)),
    (AOR, "<sips:10.0.0.1:5061;lr>", None, by_ip("10.0.0.1", 5061, DOMAIN)),
    # --tls-name overrides every rule.
    (AOR, "127.0.0.1", "Sip.Example.ORG", by_ip("127.0.0.1", None, "sip.example.org")),
    (AOR, PROXY, DOMAIN, by_name(PROXY, None, DOMAIN)),
    ("sips:alice@192.0.2.5", None, DOMAIN, by_ip("192.0.2.5", None, DOMAIN)),
    ("sips:alice@[2001:db8::1]:5061", None, DOMAIN, by_ip("2001:db8::1", 5061, DOMAIN)),
    # An IP AOR with a named proxy takes the proxy's name.
    ("sips:alice@192.0.2.5", PROXY, None, by_name(PROXY, None, PROXY)),
]


@pytest.mark.parametrize(("aor", "proxy", "tls_name", "expected"), PLAN_CASES)
def test_plan(aor: str, proxy: str | None, tls_name: str | None, expected: LocatePlan) -> None:
    assert plan_targets(aor, proxy, tls_name) == expected


PLAN_ERRORS: list[tuple[str, str | None, str | None, str]] = [
    ("sip:alice@example.com", None, None, "registers over TLS only"),
    ("SIP:alice@example.com", None, None, "write it as sips:"),
    ("tel:+15551234", None, None, "must be a sips: URI"),
    ("alice@example.com", None, None, "is not a URI"),
    ("sips:alice@", None, None, "not a valid SIP URI"),
    ("sips:alice@exa mple.com", None, None, "not a valid SIP URI"),
    (AOR, "exa mple.com", None, "not an IP address or a valid host name"),
    ("sips:alice@-bad-.example.com", None, None, "not an IP address or a valid host name"),
    ("sips:alice@example.com:0", None, None, "port '0'"),
    ("sips:alice@example.com:65536", None, None, "port 65536 out of range"),
    ("sips:alice@example.com:50x", None, None, "not a valid SIP URI"),
    ("sips:alice@[::1", None, None, "not a valid SIP URI"),
    (AOR, "proxy.example.net:65536", None, "port '65536'"),
    (AOR, "proxy.example.net:50x", None, "port '50x'"),
    (AOR, "proxy.example.net:5²", None, "port '5²'"),
    (AOR, "[::1", None, "never closes"),
    (AOR, "[example.com]", None, "not an IPv6 address"),
    (AOR, "[::1]x", None, "unexpected 'x'"),
    (AOR, "sips:proxy.example.net;transport=udp", None, "over TLS only"),
    ("sips:alice@example.com;transport=udp", None, None, "over TLS only"),
    ("sips:alice@192.0.2.5", None, None, "--tls-name"),
    ("sips:alice@192.0.2.5", "127.0.0.1", None, "--tls-name"),
    ("sips:alice@example.com", "1:2:3", None, "write IPv6 addresses with a port"),
    ("sips:alice@example.com", "proxy.example.net:", None, "port ''"),
    ("sips:alice@example.com", None, "192.0.2.1", "is an IP address"),
    ("sips:alice@example.com", None, "[::1]", "is an IP address"),
    ("sips:alice@example.com", None, "bad name!", "TLS name"),
    ("sips:alice@" + "a" * 64 + ".com", None, None, "not an IP address or a valid host name"),
]


@pytest.mark.parametrize(("aor", "proxy", "tls_name", "message"), PLAN_ERRORS)
def test_plan_refuses(aor: str, proxy: str | None, tls_name: str | None, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan_targets(aor, proxy, tls_name)
    assert message in str(info.value)


# --- NAPTR -------------------------------------------------------------------------------------


def naptr(order: int, pref: int, service: str, replacement: str, flags: str = "s") -> NaptrRecord:
    return NaptrRecord(order, pref, flags, service, "", replacement)


NAPTR_CASES: list[tuple[list[NaptrRecord], list[str]]] = [
    ([], []),
    # RFC 3263 §4.1: a SIPS client discards everything but SIPS+D2x, and sipua wants TCP only.
    (
        [naptr(10, 10, "SIP+D2T", "_sip._tcp.x."), naptr(20, 10, "SIPS+D2T", "_sips._tcp.x.")],
        ["_sips._tcp.x"],
    ),
    ([naptr(10, 10, "SIPS+D2S", "_sips._sctp.x."), naptr(10, 10, "SIP+D2U", "_sip._udp.x.")], []),
    # Services and flags are case-insensitive.
    ([naptr(10, 10, "sips+d2t", "_sips._tcp.x.", flags="S")], ["_sips._tcp.x"]),
    # Order first, then preference, whatever the answer order.
    (
        [
            naptr(20, 5, "SIPS+D2T", "c.x."),
            naptr(10, 50, "SIPS+D2T", "b.x."),
            naptr(10, 10, "SIPS+D2T", "a.x."),
        ],
        ["a.x", "b.x", "c.x"],
    ),
    # Only the "s" flag with an empty regexp and a real replacement is followed.
    ([naptr(10, 10, "SIPS+D2T", "a.x.", flags="a")], []),
    ([naptr(10, 10, "SIPS+D2T", "b.x.", flags="")], []),
    ([NaptrRecord(10, 10, "s", "SIPS+D2T", "!^.*$!sips:x!", ".")], []),
    ([naptr(10, 10, "SIPS+D2T", ".")], []),
    # Duplicates are followed once; names are lower-cased.
    ([naptr(10, 10, "SIPS+D2T", "A.X."), naptr(20, 10, "SIPS+D2T", "a.x")], ["a.x"]),
]


@pytest.mark.parametrize(("records", "names"), NAPTR_CASES)
def test_select_naptr(records: list[NaptrRecord], names: list[str]) -> None:
    assert select_naptr(records) == names


def test_select_naptr_is_bounded() -> None:
    records = [naptr(i, 0, "SIPS+D2T", f"n{i}.x.") for i in range(100)]
    assert select_naptr(records) == ["n0.x", "n1.x", "n2.x", "n3.x"]


# --- SRV ---------------------------------------------------------------------------------------


class FixedDraw:
    """A random source that always draws the lowest or the highest value."""

    def __init__(self, *, high: bool) -> None:
        self.high = high

    def randint(self, a: int, b: int) -> int:
        return b if self.high else a


def srv(priority: int, weight: int, target: str, port: int = 5061) -> SrvRecord:
    return SrvRecord(priority, weight, port, target)


def test_srv_priority_comes_first() -> None:
    records = [srv(20, 100, "c"), srv(10, 0, "a"), srv(30, 1, "d"), srv(10, 0, "b")]
    ordered = order_srv(records, random.Random(1))
    assert [r.priority for r in ordered] == [10, 10, 20, 30]
    assert {r.target for r in ordered[:2]} == {"a", "b"}


def test_srv_weight_zero_goes_first_only_on_a_zero_draw() -> None:
    records = [srv(10, 5, "heavy"), srv(10, 0, "zero")]
    # RFC 2782: weight-0 records head the list, so a draw of 0 selects them...
    assert [r.target for r in order_srv(records, FixedDraw(high=False))] == ["zero", "heavy"]
    # ...and any other draw passes them by.
    assert [r.target for r in order_srv(records, FixedDraw(high=True))] == ["heavy", "zero"]


def test_srv_dot_target_means_unavailable() -> None:
    assert srv_service_unavailable([srv(0, 0, ".")])
    assert not srv_service_unavailable([srv(0, 0, "a"), srv(0, 0, ".")])
    assert not srv_service_unavailable([])
    assert order_srv([srv(0, 0, "."), srv(1, 0, "a")], random.Random(0)) == [srv(1, 0, "a")]


def first_choices(records: Sequence[SrvRecord], rounds: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    return Counter(order_srv(records, rng)[0].target for _ in range(rounds))


def test_srv_weights_are_proportional() -> None:
    # Draws are uniform over 0..total; a record wins the draws up to its running sum, so with
    # weights 60/30/10 the first pick is ~61/101, ~30/101 and ~10/101.
    rounds = 20_000
    counts = first_choices([srv(1, 60, "a"), srv(1, 30, "b"), srv(1, 10, "c")], rounds, seed=7)
    for target, expected in (("a", 61 / 101), ("b", 30 / 101), ("c", 10 / 101)):
        # 4 standard deviations of a binomial proportion: fails by chance ~1 in 15 000 runs,
        # and the seed is fixed, so it is deterministic anyway.
        sigma = (expected * (1 - expected) / rounds) ** 0.5
        assert abs(counts[target] / rounds - expected) < 4 * sigma, (target, counts)


def test_srv_all_zero_weights_are_uniform() -> None:
    rounds = 9_000
    counts = first_choices([srv(1, 0, "a"), srv(1, 0, "b"), srv(1, 0, "c")], rounds, seed=3)
    assert set(counts) == {"a", "b", "c"}
    for target in "abc":
        assert abs(counts[target] / rounds - 1 / 3) < 0.03, counts


def test_srv_weight_zero_has_a_small_chance() -> None:
    rounds = 11_000
    counts = first_choices([srv(1, 10, "heavy"), srv(1, 0, "zero")], rounds, seed=11)
    assert abs(counts["zero"] / rounds - 1 / 11) < 0.015, counts


def test_srv_order_is_reproducible_with_a_seed() -> None:
    records = [srv(1, w, f"t{w}") for w in range(1, 9)]
    assert order_srv(records, random.Random(42)) == order_srv(records, random.Random(42))
    assert sorted(order_srv(records, random.Random(42)), key=lambda r: r.weight) == records


# --- the chain ---------------------------------------------------------------------------------

Answers = Mapping[Query, Sequence[Record] | LocateError]


def drive(
    plan: LocatePlan, answers: Answers, rng: random.Random | None = None
) -> tuple[list[Target] | LocateError, list[Query]]:
    """Run a Locator against canned answers (missing = no records); return result and queries."""
    locator = Locator(plan, rng or random.Random(0))
    asked: list[Query] = []
    try:
        while (query := locator.next_query()) is not None:
            asked.append(query)
            answer = answers.get(query, [])
            if isinstance(answer, LocateError):
                locator.receive_failure(query, answer)
            else:
                locator.receive(query, answer)
        return locator.targets(), asked
    except LocateError as exc:
        return exc, asked


EXAMPLE = plan_targets("sips:alice@example.com")


def tls(host: str, port: int = 5061, name: str = "example.com") -> Target:
    return Target(host, port, "tls", name)


def test_full_chain_keeps_the_domain_as_tls_name() -> None:
    answers: Answers = {
        Query("example.com", "NAPTR"): [
            naptr(10, 10, "SIP+D2U", "_sip._udp.example.com"),
            naptr(20, 10, "SIPS+D2T", "_sips._tcp.example.com"),
        ],
        Query("_sips._tcp.example.com", "SRV"): [
            srv(20, 0, "backup.example.com", 5063),
            srv(10, 0, "sip1.example.com", 5062),
        ],
        Query("sip1.example.com", "A"): ["192.0.2.1"],
        Query("sip1.example.com", "AAAA"): ["2001:db8::1"],
        Query("backup.example.com", "A"): ["192.0.2.9"],
    }
    targets, asked = drive(EXAMPLE, answers)
    assert targets == [
        tls("192.0.2.1", 5062),
        tls("2001:db8::1", 5062),
        tls("192.0.2.9", 5063),
    ]
    assert asked == [
        Query("example.com", "NAPTR"),
        Query("_sips._tcp.example.com", "SRV"),
        Query("sip1.example.com", "A"),
        Query("sip1.example.com", "AAAA"),
        Query("backup.example.com", "A"),
        Query("backup.example.com", "AAAA"),
    ]


def test_no_naptr_goes_to_sips_srv() -> None:
    answers: Answers = {
        Query("_sips._tcp.example.com", "SRV"): [srv(0, 0, "sip.example.com")],
        Query("sip.example.com", "A"): ["192.0.2.3"],
    }
    targets, asked = drive(EXAMPLE, answers)
    assert targets == [tls("192.0.2.3")]
    assert asked[:2] == [Query("example.com", "NAPTR"), Query("_sips._tcp.example.com", "SRV")]


def test_naptr_without_sips_d2t_falls_back_to_sips_srv() -> None:
    answers: Answers = {
        Query("example.com", "NAPTR"): [naptr(10, 10, "SIP+D2T", "_sip._tcp.example.com")],
        Query("_sip._tcp.example.com", "SRV"): [srv(0, 0, "plain.example.com")],
        Query("_sips._tcp.example.com", "SRV"): [srv(0, 0, "secure.example.com")],
        Query("secure.example.com", "A"): ["192.0.2.4"],
    }
    targets, asked = drive(EXAMPLE, answers)
    assert targets == [tls("192.0.2.4")]
    assert Query("_sip._tcp.example.com", "SRV") not in asked


def test_no_srv_falls_back_to_addresses_on_5061() -> None:
    answers: Answers = {
        Query("example.com", "A"): ["192.0.2.5"],
        Query("example.com", "AAAA"): ["2001:db8::5"],
    }
    targets, asked = drive(EXAMPLE, answers)
    # A before AAAA: sequential failover has no Happy Eyeballs race to hide a dead IPv6 path.
    assert targets == [tls("192.0.2.5"), tls("2001:db8::5")]
    assert [q.rdtype for q in asked] == ["NAPTR", "SRV", "A", "AAAA"]


def test_srv_dot_target_stops_without_address_fallback() -> None:
    answers: Answers = {
        Query("_sips._tcp.example.com", "SRV"): [srv(0, 0, ".")],
        Query("example.com", "A"): ["192.0.2.5"],
    }
    result, asked = drive(EXAMPLE, answers)
    assert isinstance(result, LocateError)
    assert "offers no SIPS service" in str(result)
    assert [q.rdtype for q in asked] == ["NAPTR", "SRV"]


def test_numeric_host_needs_no_lookup() -> None:
    for proxy, expected in (
        ("127.0.0.1", tls("127.0.0.1")),
        ("127.0.0.1:5071", tls("127.0.0.1", 5071)),
        ("[::1]:5072", tls("::1", 5072)),
    ):
        targets, asked = drive(plan_targets("sips:alice@example.com", proxy), {})
        assert (targets, asked) == ([expected], [])


def test_explicit_port_means_addresses_only() -> None:
    plan = plan_targets("sips:alice@example.com", "proxy.example.net:5070")
    answers: Answers = {Query("proxy.example.net", "AAAA"): ["2001:db8::70"]}
    targets, asked = drive(plan, answers)
    assert targets == [tls("2001:db8::70", 5070, "proxy.example.net")]
    assert asked == [Query("proxy.example.net", "A"), Query("proxy.example.net", "AAAA")]


def test_localhost_never_asks_dns() -> None:
    for proxy, port in (("localhost", 5061), ("localhost:5080", 5080)):
        targets, asked = drive(plan_targets("sips:alice@example.com", proxy), {})
        assert asked == []
        assert targets == [tls("127.0.0.1", port, "localhost"), tls("::1", port, "localhost")]


def test_srv_target_that_is_an_address_or_localhost() -> None:
    answers: Answers = {
        Query("_sips._tcp.example.com", "SRV"): [srv(0, 0, "192.0.2.8"), srv(1, 0, "localhost")],
    }
    targets, asked = drive(EXAMPLE, answers)
    assert targets == [tls("192.0.2.8"), tls("127.0.0.1"), tls("::1")]
    assert [q.rdtype for q in asked] == ["NAPTR", "SRV"]


def test_naptr_or_srv_failure_ends_location() -> None:
    boom = LocateError("DNS NAPTR lookup for example.com timed out")
    result, asked = drive(EXAMPLE, {Query("example.com", "NAPTR"): boom})
    assert result is boom
    assert asked == [Query("example.com", "NAPTR")]
    boom = LocateError("DNS SRV lookup for _sips._tcp.example.com failed: SERVFAIL")
    result, _ = drive(EXAMPLE, {Query("_sips._tcp.example.com", "SRV"): boom})
    assert result is boom


def test_address_failure_only_loses_that_family() -> None:
    answers: Answers = {
        Query("example.com", "A"): ["192.0.2.5"],
        Query("example.com", "AAAA"): LocateError("DNS AAAA lookup for example.com failed"),
    }
    targets, _ = drive(EXAMPLE, answers)
    assert targets == [tls("192.0.2.5")]


def test_address_failures_are_raised_when_nothing_is_left() -> None:
    first = LocateError("DNS A lookup for example.com timed out")
    answers: Answers = {
        Query("example.com", "A"): first,
        Query("example.com", "AAAA"): LocateError("DNS AAAA lookup for example.com timed out"),
    }
    result, _ = drive(EXAMPLE, answers)
    assert result is first


def test_nothing_found_names_the_host() -> None:
    result, asked = drive(plan_targets("sips:alice@nowhere.example"), {})
    assert isinstance(result, LocateError)
    assert "no address found for nowhere.example" in str(result)
    assert len(asked) == 4


def test_targets_are_deduplicated_and_bounded() -> None:
    srvs: list[Record] = [srv(0, 0, f"h{i}.example.com") for i in range(40)]
    answers: dict[Query, Sequence[Record] | LocateError] = {
        Query("_sips._tcp.example.com", "SRV"): srvs
    }
    for i in range(40):
        answers[Query(f"h{i}.example.com", "A")] = ["192.0.2.1", f"198.51.100.{i}"]
    targets, asked = drive(EXAMPLE, answers)
    assert isinstance(targets, list)
    assert len(targets) == MAX_TARGETS
    assert targets[0] == tls("192.0.2.1")
    assert targets.count(tls("192.0.2.1")) == 1
    assert len(asked) == 2 + 2 * 32  # at most MAX_SRV_RECORDS hosts are looked up


def test_locator_refuses_misuse() -> None:
    locator = Locator(EXAMPLE, random.Random(0))
    with pytest.raises(RuntimeError, match="has not finished"):
        locator.targets()
    query = locator.next_query()
    assert query == Query("example.com", "NAPTR")
    with pytest.raises(RuntimeError, match="still waiting"):
        locator.next_query()
    with pytest.raises(RuntimeError, match="but the locator asked for"):
        locator.receive(Query("example.com", "SRV"), [])


# --- properties --------------------------------------------------------------------------------

SIP_CHARS = st.text(alphabet=st.sampled_from("sip:@[]<>;?=.-_0123456789abcdef:²é "), max_size=40)
HOSTS = st.sampled_from(["example.com", "127.0.0.1", "[::1]", "::1", "localhost", ""])
SIP_TEXT = SIP_CHARS | st.builds(
    "{}{}{}:{}".format,
    st.sampled_from(["sips:", "sip:", "", "<sips:"]),
    st.sampled_from(["", "alice@"]),
    HOSTS,
    st.text(alphabet="0123456789²x", max_size=6),
)


@given(aor=SIP_TEXT, proxy=st.none() | SIP_TEXT, tls_name=st.none() | SIP_TEXT)
def test_plan_raises_only_config_error(aor: str, proxy: str | None, tls_name: str | None) -> None:
    try:
        plan = plan_targets(aor, proxy, tls_name)
    except ConfigError:
        return
    assert plan.tls_name == plan.tls_name.lower()
    assert not is_ip(plan.tls_name)  # RFC 5922: never an IP address as the identity
    assert plan.port is None or 0 < plan.port < 65536


SRV_RECORDS = st.lists(
    st.builds(
        SrvRecord,
        priority=st.integers(0, 3),
        weight=st.integers(0, 5),
        port=st.just(5061),
        target=st.sampled_from(["a", "b", "c", "d", "."]),
    ),
    max_size=12,
)


@given(records=SRV_RECORDS, seed=st.integers(0, 2**32))
def test_srv_order_is_a_priority_sorted_permutation(records: list[SrvRecord], seed: int) -> None:
    ordered = order_srv(records, random.Random(seed))
    assert Counter(ordered) == Counter(r for r in records if r.target != ".")
    assert [r.priority for r in ordered] == sorted(r.priority for r in ordered)


RECORDS: st.SearchStrategy[list[Record]] = st.lists(
    st.one_of(
        st.builds(
            NaptrRecord,
            order=st.integers(0, 3),
            preference=st.integers(0, 3),
            flags=st.sampled_from(["s", "S", "a", ""]),
            service=st.sampled_from(["SIPS+D2T", "SIP+D2U", "sips+d2t"]),
            regexp=st.sampled_from(["", "!x!y!"]),
            replacement=st.sampled_from(["_sips._tcp.example.com", "srv.example.com", "."]),
        ),
        SRV_RECORDS.map(lambda records: records[0] if records else SrvRecord(0, 0, 1, "x")),
        st.sampled_from(["192.0.2.1", "2001:db8::1"]),
    ),
    max_size=5,
)


@given(data=st.data())
def test_locator_ends_with_targets_or_a_locate_error(data: st.DataObject) -> None:
    # Whatever DNS says (any mix of records, or failures), the chain ends within its query bound
    # and the only error is LocateError.
    locator = Locator(EXAMPLE, random.Random(0))
    for _ in range(MAX_QUERIES + 1):
        query = locator.next_query()
        if query is None:
            break
        try:
            if data.draw(st.integers(0, 9)) == 0:  # one query in ten fails
                locator.receive_failure(query, LocateError(f"{query} failed"))
            else:
                locator.receive(query, data.draw(RECORDS))
        except LocateError:
            return
    else:
        raise AssertionError("the locator did not finish within MAX_QUERIES")
    try:
        targets = locator.targets()
    except LocateError:
        return
    assert targets
    assert all(t.tls_name == "example.com" and t.transport == "tls" for t in targets)


def test_several_naptr_names_with_many_srv_records_still_locate() -> None:
    # Two SIPS+D2T services with 20 SRV records each: the SRV cap holds across both names, so
    # the lookups stay under the query guard and targets come out.
    answers: dict[Query, Sequence[Record]] = {
        Query(DOMAIN, "NAPTR"): [
            NaptrRecord(10, 10, "s", "SIPS+D2T", "", "_sips._tcp.a.example.com"),
            NaptrRecord(20, 10, "s", "SIPS+D2T", "", "_sips._tcp.b.example.com"),
        ],
    }
    for name in ("a", "b"):
        answers[Query(f"_sips._tcp.{name}.example.com", "SRV")] = [
            SrvRecord(10, 1, 5061, f"sip{i}.{name}.example.com") for i in range(20)
        ]
        for i in range(20):
            answers[Query(f"sip{i}.{name}.example.com", "A")] = [f"10.0.{ord(name)}.{i}"]
    result, asked = drive(EXAMPLE, answers)
    assert isinstance(result, list), result
    assert result[0].host.startswith("10.0.97.")  # the first NAPTR's targets come first
    assert len(asked) <= MAX_QUERIES


def test_a_host_named_by_many_srv_records_is_looked_up_once() -> None:
    answers: dict[Query, Sequence[Record]] = {
        Query("_sips._tcp.example.com", "SRV"): [
            SrvRecord(10, 1, 5061 + i, "sip.example.com") for i in range(10)
        ],
        Query("sip.example.com", "A"): ["192.0.2.1"],
    }
    result, asked = drive(EXAMPLE, answers)
    assert isinstance(result, list), result
    assert Counter(q for q in asked if q.name == "sip.example.com") == {
        Query("sip.example.com", "A"): 1,
        Query("sip.example.com", "AAAA"): 1,
    }
    assert sorted(t.port for t in result) == [5061 + i for i in range(10)]
