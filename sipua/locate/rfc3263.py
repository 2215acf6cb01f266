"""RFC 3263 server location for a SIPS user agent, as pure logic (no I/O).

Theory of operation
-------------------
Locating the server for an AOR happens in three pieces, all pure so that every rule is a table
test:

1. `plan_targets()` reads the AOR, the optional outbound proxy and the optional TLS-name override
   and decides *what* to locate (a host, maybe a port) and *which name* the TLS layer sends as SNI
   and validates. RFC 5922 §7.3: that name is the domain of the URI fed into RFC 3263 (the AOR's
   domain, or the proxy's name), never an SRV target and never an IP address.
2. `Locator` is a small step machine over that plan. It hands out DNS `Query` values one at a
   time (`next_query()`), takes the records back (`receive()` / `receive_failure()`), and walks
   RFC 3263's chain: NAPTR (keep only ``SIPS+D2T``, §4.1) -> SRV (``_sips._tcp``, RFC 2782
   ordering) -> A/AAAA (port 5061, §4.2). A numeric host needs no query; a name with an explicit
   port only needs A/AAAA (§4.2).
3. The adapter in `sipua.locate.resolver` asks dnspython for each query and feeds the answers back.

The result is an ordered list of `Target`: the UA connects to the first and moves to the next
when one refuses, times out or answers 503 (RFC 3263 §4.3). Randomness (SRV weights) comes from an
injected source so ordering is reproducible in tests.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal, Protocol

from sipua.errors import ConfigError, LocateError
from sipua.hostport import is_host_name, is_ip, split_host_port
from sipua.sip.errors import ProtocolError
from sipua.sip.uri import SipUri

SIPS_DEFAULT_PORT: Final = 5061
"""RFC 3261 §19.1.2: the default port for a ``sips:`` URI (TLS over TCP)."""

SIPS_SRV_PREFIX: Final = "_sips._tcp."
"""RFC 3263 §4.1: the SRV service for SIPS over TCP."""

SIPS_NAPTR_SERVICE: Final = "SIPS+D2T"
"""RFC 3263 §4.1: the only NAPTR service a SIPS client over TCP may use."""

MAX_NAPTR_RECORDS: Final = 32
"""NAPTR records considered per lookup; a bigger answer is truncated after ordering."""

MAX_SRV_NAMES: Final = 4
"""SRV names followed from NAPTR records (normally one: the SIPS+D2T replacement)."""

MAX_SRV_RECORDS: Final = 32
"""SRV records considered per SRV name; more are dropped after priority ordering."""

MAX_TARGETS: Final = 32
"""Targets returned at most; a UA that fails over through 32 servers has learnt enough."""

MAX_QUERIES: Final = 2 + MAX_SRV_NAMES + 2 * MAX_SRV_RECORDS
"""Upper bound on DNS queries for one location (NAPTR, SRV names, A+AAAA per SRV target)."""


Transport = Literal["tls"]
RecordType = Literal["NAPTR", "SRV", "A", "AAAA"]


@dataclass(frozen=True, slots=True)
class Target:
    """One place to open a SIPS connection to.

    Attributes:
        host: An IP address (IPv6 without brackets) or, for a caller that skips DNS, a name.
        port: The TCP port.
        transport: Always ``"tls"``: sipua speaks SIP over TLS only.
        tls_name: The name to send as SNI and to validate the server certificate against
            (RFC 5922 §7.3): the domain of the URI fed into RFC 3263, never an SRV target or IP.
    """

    host: str
    port: int
    transport: Transport
    tls_name: str


@dataclass(frozen=True, slots=True)
class NaptrRecord:
    """A NAPTR record's fields (RFC 3403 §4.1) as the locator needs them."""

    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str


@dataclass(frozen=True, slots=True)
class SrvRecord:
    """An SRV record's fields (RFC 2782)."""

    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Query:
    """One DNS question the locator wants answered.

    Attributes:
        name: The owner name, lower case, without the final dot.
        rdtype: The record type.
    """

    name: str
    rdtype: RecordType


Record = NaptrRecord | SrvRecord | str
"""An answer record: NAPTR and SRV as dataclasses, A and AAAA as address text."""


class RandomSource(Protocol):
    """What the SRV weighting needs from a random source (`random.Random` fits)."""

    def randint(self, a: int, b: int) -> int:
        """Return a random integer N with a <= N <= b."""
        ...


@dataclass(frozen=True, slots=True)
class LocatePlan:
    """What to locate and which TLS name to use, decided from the configuration alone.

    Attributes:
        host: The name or IP address to locate (lower case, no brackets, no final dot).
        port: The explicit port, or None when RFC 3263 picks it.
        tls_name: The SNI and certificate-identity name (RFC 5922 §7.3).
        numeric: True when `host` is an IP address: no DNS at all.
    """

    host: str
    port: int | None
    tls_name: str
    numeric: bool


# --- configuration: AOR, proxy and TLS name ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _HostPort:
    host: str
    port: int | None
    numeric: bool


def _normalise_name(name: str, what: str) -> str:
    # DNS names are case-insensitive (RFC 4343); one absolute form keeps comparisons simple.
    if not is_host_name(name):
        raise ConfigError(
            f"{what}: {name!r} is not a valid host name; give a DNS name such as "
            "'sip.example.com' or an IP address"
        )
    return name.lower().removesuffix(".")


def _parse_hostport(text: str, what: str) -> _HostPort:
    """Split RFC 3261 §25.1 ``hostport``: name, IPv4, ``[IPv6]`` or a bare IPv6 address, each
    but the last with an optional port."""
    try:
        host, port = split_host_port(text, bare_ipv6=True)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    if ":" in host:
        return _HostPort(str(ipaddress.IPv6Address(host)), port, numeric=True)
    if is_ip(host):
        return _HostPort(host, port, numeric=True)
    return _HostPort(_normalise_name(host, what), port, numeric=False)


def _strip_uri(text: str) -> str:
    # Accept a name-addr ("Alice <sips:...>") as a courtesy: take what is inside the brackets.
    text = text.strip()
    if "<" in text and text.endswith(">"):
        text = text[text.index("<") + 1 : -1]
    return text


def _uri_hostport(uri: str, what: str) -> tuple[str, _HostPort]:
    """Return (scheme, hostport) of a SIP URI, parsed by the core's RFC 3261 §19.1.1 grammar."""
    if ":" not in uri:
        raise ConfigError(f"{what}: {uri!r} is not a URI; write it as sips:user@domain")
    try:
        parsed = SipUri.parse(uri)
    except ProtocolError as exc:
        raise ConfigError(
            f"{what}: {uri!r} is not a valid SIP URI ({exc}); write it as sips:user@domain"
        ) from exc
    transport = parsed.params.get("transport")
    if transport is not None and transport.lower() not in ("tcp", "tls"):
        raise ConfigError(
            f"{what}: {uri!r} asks for transport={transport}; sipua speaks SIP over TLS only, "
            "drop the transport parameter"
        )
    port = "" if parsed.port is None else f":{parsed.port}"
    return parsed.scheme, _parse_hostport(parsed.host + port, what)


def parse_aor(aor: str) -> tuple[str, int | None, bool]:
    """Read the host of a ``sips:`` AOR.

    Args:
        aor: The address of record, e.g. ``"sips:alice@example.com"``.

    Returns:
        (host, port, numeric): the host (lower case, IPv6 without brackets), the explicit port
        or None, and whether the host is an IP address.

    Raises:
        ConfigError: The AOR is not a ``sips:`` URI or its host is malformed.
    """
    uri = _strip_uri(aor)
    scheme, sep, _ = uri.partition(":")
    scheme = scheme.strip().lower()
    if sep and scheme == "sip":
        raise ConfigError(
            f"account AOR {aor!r} is a sip: URI; sipua registers over TLS only, "
            "so write it as sips: (for example sips:alice@example.com)"
        )
    if sep and scheme != "sips":
        raise ConfigError(f"account AOR {aor!r} must be a sips: URI, not {scheme}:")
    _, hostport = _uri_hostport(uri, "account AOR")
    return hostport.host, hostport.port, hostport.numeric


def plan_targets(aor: str, proxy: str | None = None, tls_name: str | None = None) -> LocatePlan:
    """Decide what to locate for an account and which TLS name to verify.

    The rules (RFC 3263 §4, RFC 5922 §7.3): without a proxy the AOR's domain is located; with an
    outbound proxy the proxy is. The TLS name is the AOR's domain, or the proxy's name when the
    proxy is given by name; a proxy given as an IP address keeps the AOR's domain (an IP address
    is no RFC 5922 identity). `tls_name` overrides all of that.

    Args:
        aor: The ``sips:`` address of record.
        proxy: Optional outbound proxy: ``host``, ``host:port``, ``[v6]:port`` or a ``sips:`` URI.
        tls_name: Optional override for the SNI and certificate-identity name.

    Returns:
        The plan for `Locator`.

    Raises:
        ConfigError: A ``sip:`` AOR, a malformed host or port, or no DNS name to verify (an IP
            AOR without a named proxy needs `tls_name`).
    """
    aor_host, aor_port, aor_numeric = parse_aor(aor)
    if proxy is not None and proxy.strip():
        text = _strip_uri(proxy)
        if ":" in text and text.split(":", 1)[0].lower() in ("sip", "sips"):
            _, where = _uri_hostport(text, "outbound proxy")
        else:
            where = _parse_hostport(text, "outbound proxy")
    else:
        where = _HostPort(aor_host, aor_port, aor_numeric)

    if tls_name is not None:
        if is_ip(tls_name.strip("[]")):
            raise ConfigError(
                f"TLS name {tls_name!r} is an IP address; RFC 5922 identities are DNS names, "
                "give the domain in the server's certificate"
            )
        name = _normalise_name(tls_name, "TLS name")
    elif not where.numeric:
        name = where.host
    elif not aor_numeric:
        name = aor_host
    else:
        raise ConfigError(
            f"account AOR {aor!r} names its domain by IP address and no proxy name is given; "
            "an IP address is no RFC 5922 identity, so set the TLS name (--tls-name) to the "
            "domain in the server's certificate"
        )
    return LocatePlan(host=where.host, port=where.port, tls_name=name, numeric=where.numeric)


# --- record ordering ---------------------------------------------------------------------------


def select_naptr(records: Sequence[NaptrRecord]) -> list[str]:
    """Pick the SRV names a SIPS client follows from a NAPTR answer.

    RFC 3263 §4.1: a client resolving a SIPS URI discards every service but ``SIPS+D2x``; sipua
    speaks TLS over TCP, so only ``SIPS+D2T`` stays (not ``SIPS+D2S``, not ``SIP+D2T``). Services
    and flags compare case-insensitively (RFC 3403 §4.1). Records are taken by order, then
    preference (RFC 3403 §4.1). Only the ``s`` flag (next lookup is SRV) with an empty regexp is
    followed: RFC 3263 uses no other.

    Args:
        records: The NAPTR records of the domain.

    Returns:
        SRV owner names (lower case, no final dot) in the order to try, without duplicates.
    """
    ranked = sorted(records, key=lambda r: (r.order, r.preference))[:MAX_NAPTR_RECORDS]
    names: list[str] = []
    for record in ranked:
        if record.service.upper() != SIPS_NAPTR_SERVICE or record.flags.lower() != "s":
            continue
        if record.regexp or record.replacement in ("", "."):
            continue
        name = record.replacement.lower().removesuffix(".")
        if name not in names:
            names.append(name)
        if len(names) == MAX_SRV_NAMES:
            break
    return names


def srv_service_unavailable(records: Sequence[SrvRecord]) -> bool:
    """Tell whether an SRV answer says the service is decidedly not available.

    RFC 2782: a single record whose target is ``.`` means the domain does not offer it.
    """
    return len(records) == 1 and records[0].target in ("", ".")


def order_srv(records: Sequence[SrvRecord], rng: RandomSource) -> list[SrvRecord]:
    """Order SRV records for trying, as RFC 2782 ("Usage rules") says.

    Lower priority first. Within one priority, records are drawn one by one with a probability
    proportional to their weight: weight-0 records go first in the candidate list, a running sum
    is built, a number from 0 to the total is drawn and the first record whose running sum
    reaches it is taken. Weight-0 records thus come after weighted ones except when the draw is
    0 (RFC 2782's "very small chance"); records of equal weight are in uniform random order.
    Records with the target ``.`` are dropped.

    Args:
        records: The SRV records of one owner name.
        rng: The random source for weighted selection.

    Returns:
        The records in the order to try, at most `MAX_SRV_RECORDS`.
    """
    usable = [r for r in records if r.target not in ("", ".")]
    ordered: list[SrvRecord] = []
    for priority in sorted({r.priority for r in usable}):
        group = [r for r in usable if r.priority == priority]
        # RFC 2782 arranges the records "in any order" before drawing; a shuffle makes that
        # order random, which is what spreads the load among weight-0 records (the draw alone
        # would always pick the first of them). Then weight 0 first, order kept (stable sort).
        _shuffle(group, rng)
        group.sort(key=lambda r: r.weight != 0)
        while group:  # each pass removes one record: bounded by len(group)
            total = sum(r.weight for r in group)
            draw = rng.randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= draw:
                    ordered.append(group.pop(index))
                    break
        if len(ordered) >= MAX_SRV_RECORDS:
            break
    return ordered[:MAX_SRV_RECORDS]


def _shuffle(items: list[SrvRecord], rng: RandomSource) -> None:
    # Fisher-Yates with randint only, so any RandomSource will do.
    for i in range(len(items) - 1, 0, -1):
        j = rng.randint(0, i)
        items[i], items[j] = items[j], items[i]


def _is_localhost(name: str) -> bool:
    # RFC 6761 §6.3: "localhost." and names below it are the loopback, never asked of DNS.
    return name == "localhost" or name.endswith(".localhost")


_LOOPBACK_ADDRESSES: Final = ("127.0.0.1", "::1")


# --- the step machine --------------------------------------------------------------------------


class _Step(Enum):
    NAPTR = "naptr"
    SRV = "srv"
    ADDRESSES = "addresses"
    DONE = "done"


@dataclass(slots=True)
class _AddressJob:
    """A/AAAA for one host (asked once, however many SRV records name it)."""

    host: str
    addresses: list[str] = field(default_factory=list)
    pending: list[RecordType] = field(default_factory=lambda: ["A", "AAAA"])


class Locator:
    """Walks RFC 3263's NAPTR -> SRV -> A/AAAA chain for one plan, without doing I/O.

    Drive it with::

        while (query := locator.next_query()) is not None:
            try:
                records = await ask_dns(query)
            except LocateError as exc:
                locator.receive_failure(query, exc)
            else:
                locator.receive(query, records)
        targets = locator.targets()

    "No such name" and "no records of that type" are both an empty answer. A failure (timeout,
    SERVFAIL) of a NAPTR or SRV query ends location with that error: guessing past a broken zone
    could pick a server the domain never named. A failed A/AAAA query only loses that address
    family of that host; it is raised only if no target at all is left.
    """

    def __init__(self, plan: LocatePlan, rng: RandomSource) -> None:
        """Start locating `plan`, using `rng` for SRV weights."""
        self._plan = plan
        self._rng = rng
        self._targets: list[Target] = []
        self._srv_names: list[str] = []
        self._srv_records: list[SrvRecord] = []
        self._jobs: list[_AddressJob] = []
        # (host, port) in the order to try, and each host's lookup, shared by its ports.
        self._pairs: list[tuple[str, int]] = []
        self._lookups: dict[str, _AddressJob] = {}
        self._errors: list[LocateError] = []
        self._unavailable = False
        self._queries = 0
        self._waiting: Query | None = None
        if plan.numeric:
            # §4.2: a numeric host is used as is; port given or the SIPS default.
            self._add_target(plan.host, plan.port or SIPS_DEFAULT_PORT)
            self._step = _Step.DONE
        elif plan.port is not None or _is_localhost(plan.host):
            # §4.2: an explicit port with a name means A/AAAA only, no NAPTR or SRV; localhost
            # is never asked of DNS (RFC 6761 §6.3), so it has no NAPTR or SRV either.
            self._start_addresses([(plan.host, plan.port or SIPS_DEFAULT_PORT)])
        else:
            self._step = _Step.NAPTR

    @property
    def plan(self) -> LocatePlan:
        """The plan being located."""
        return self._plan

    def next_query(self) -> Query | None:
        """Return the next DNS question, or None when location is finished."""
        if self._waiting is not None:
            raise RuntimeError(f"locator is still waiting for the answer to {self._waiting}")
        query = self._next()
        if query is not None:
            self._queries += 1
            if self._queries > MAX_QUERIES:  # the chain below cannot get here; a guard only
                raise LocateError(f"locating {self._plan.host} needed over {MAX_QUERIES} queries")
        self._waiting = query
        return query

    def _next(self) -> Query | None:
        host = self._plan.host
        if self._step is _Step.NAPTR:
            return Query(host, "NAPTR")
        if self._step is _Step.SRV:
            return Query(self._srv_names[0], "SRV")
        if self._step is _Step.ADDRESSES:
            while self._jobs:
                job = self._jobs[0]
                if _is_localhost(job.host) and job.pending:
                    job.pending.clear()
                    job.addresses.extend(_LOOPBACK_ADDRESSES)
                if job.pending:
                    return Query(job.host, job.pending[0])
                self._jobs.pop(0)
            for host, port in self._pairs:
                for address in self._lookups[host].addresses:
                    self._add_target(address, port)
            self._step = _Step.DONE
        return None

    def receive(self, query: Query, records: Sequence[Record]) -> None:
        """Take the answer to `query` (an empty sequence for NXDOMAIN or no data)."""
        self._check_waiting(query)
        if self._step is _Step.NAPTR:
            naptrs = [r for r in records if isinstance(r, NaptrRecord)]
            # §4.1: no usable NAPTR (none at all, or none SIPS+D2T) -> SRV _sips._tcp.<domain>.
            self._srv_names = select_naptr(naptrs) or [SIPS_SRV_PREFIX + self._plan.host]
            self._step = _Step.SRV
        elif self._step is _Step.SRV:
            self._srv_names.pop(0)
            srvs = [r for r in records if isinstance(r, SrvRecord)]
            if srv_service_unavailable(srvs):
                self._unavailable = True
            # The cap holds across every SRV name a NAPTR answer led to, not per name.
            ordered = self._srv_records + order_srv(srvs, self._rng)
            self._srv_records = ordered[:MAX_SRV_RECORDS]
            if not self._srv_names:
                self._after_srv()
        else:
            self._jobs[0].pending.pop(0)
            self._jobs[0].addresses.extend(r for r in records if isinstance(r, str))

    def receive_failure(self, query: Query, error: LocateError) -> None:
        """Take a failed lookup (timeout, SERVFAIL).

        Raises:
            LocateError: `error`, when the failure leaves no way to go on (NAPTR or SRV).
        """
        self._check_waiting(query)
        if self._step is not _Step.ADDRESSES:
            self._step = _Step.DONE
            raise error
        self._jobs[0].pending.pop(0)
        self._errors.append(error)

    def targets(self) -> list[Target]:
        """Return the ordered targets once `next_query()` returned None.

        Raises:
            LocateError: No target was found; the message says why and for which name.
        """
        if self._step is not _Step.DONE:
            raise RuntimeError("locator has not finished; call next_query() until it is None")
        if self._targets:
            return list(self._targets)
        if self._errors:
            raise self._errors[0]
        if self._unavailable:
            raise LocateError(
                f"{self._plan.host} publishes SRV target '.' for {SIPS_SRV_PREFIX}: it offers no "
                "SIPS service (RFC 2782); check the domain or set an outbound proxy"
            )
        raise LocateError(
            f"no address found for {self._plan.host}: DNS has no NAPTR, SRV, A or AAAA records "
            "for it; check the domain or set an outbound proxy"
        )

    def _check_waiting(self, query: Query) -> None:
        if query != self._waiting:
            raise RuntimeError(f"answer for {query} but the locator asked for {self._waiting}")
        self._waiting = None

    def _after_srv(self) -> None:
        if self._srv_records:
            self._start_addresses(
                [(r.target.lower().removesuffix("."), r.port) for r in self._srv_records]
            )
        elif self._unavailable:
            self._step = _Step.DONE
        else:
            # §4.2: no SRV records -> A/AAAA of the domain on the SIPS default port.
            self._start_addresses([(self._plan.host, SIPS_DEFAULT_PORT)])

    def _start_addresses(self, hosts: Sequence[tuple[str, int]]) -> None:
        self._step = _Step.ADDRESSES
        self._pairs = list(hosts)
        for host, _ in self._pairs:
            if host in self._lookups:
                continue  # one A/AAAA lookup per host, reused for each of its ports
            if is_ip(host):  # not in RFC 2782, but harmless to accept: no lookup needed
                job = _AddressJob(host, addresses=[host], pending=[])
            else:
                job = _AddressJob(host)
            self._lookups[host] = job
            self._jobs.append(job)

    def _add_target(self, host: str, port: int) -> None:
        target = Target(host, port, "tls", self._plan.tls_name)
        if target not in self._targets and len(self._targets) < MAX_TARGETS:
            self._targets.append(target)
