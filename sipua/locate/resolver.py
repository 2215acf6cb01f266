"""RFC 3263 location over DNS: dnspython's async stub resolver driven under trio.

Theory of operation
-------------------
`locate()` plans the lookup with `plan_targets()`, then runs the pure `Locator` step machine,
answering each `Query` with a `RecordLookup`. `DnsResolver` is the real one: it asks
`dns.asyncresolver.Resolver` with the trio backend selected explicitly
(``dns.asyncbackend.get_backend("trio")``), so dnspython neither sniffs the running library nor
depends on a process-wide default another caller may have set.

Answers map onto the locator's three cases:

- records: NAPTR and SRV become `NaptrRecord` / `SrvRecord`, A and AAAA become address text;
- no records: NXDOMAIN and NoAnswer are an empty list, and the locator takes the next RFC 3263
  step (NAPTR -> SRV -> A/AAAA);
- failure: a timeout (the lifetime ran out), SERVFAIL or REFUSED from every server, or any other
  dnspython error becomes `LocateError`, naming the name and record type. No dnspython exception
  leaves this module.

The failover contract with the UA: `locate()` returns the targets in the order RFC 3263 §4.3 and
RFC 2782 give. The UA connects to the first; when the connection is refused, times out, fails the
TLS handshake or the server answers 503, it moves on to the next, and reports failure only when
the list is exhausted. Every target carries the same `tls_name`, so a failover never changes the
identity the certificate must prove.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final, Protocol

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.NAPTR
import dns.rdtypes.IN.SRV
import dns.resolver
import trio

from sipua.errors import LocateError
from sipua.locate.rfc3263 import (
    Locator,
    NaptrRecord,
    Query,
    RandomSource,
    Record,
    SrvRecord,
    Target,
    plan_targets,
)

DEFAULT_LIFETIME_SECONDS: Final = 5.0
"""How long one DNS question may take, across retries and servers (dnspython's default)."""

DEFAULT_LOCATE_TIMEOUT_SECONDS: Final = 30.0
"""How long a whole location (all its questions together) may take."""

DNS_PORT: Final = 53


class RecordLookup(Protocol):
    """Answers one locator `Query`; `DnsResolver` is the real one, tests may pass a fake."""

    async def lookup(self, query: Query) -> Sequence[Record]:
        """Return the records for `query`, empty for "no such name" or "no such data".

        Raises:
            LocateError: The question could not be answered (timeout, server failure).
        """
        ...


def _text(value: bytes) -> str:
    # NAPTR character-strings are bytes on the wire; RFC 3403 services are ASCII.
    return value.decode("ascii", errors="replace")


def _name(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


class DnsResolver:
    """NAPTR, SRV, A and AAAA lookups with dnspython on trio.

    Args:
        nameservers: IP addresses of the DNS servers to ask; None reads the system's
            configuration (/etc/resolv.conf) on first use.
        port: The DNS servers' port (53; tests point it at a loopback server).
        lifetime: Seconds one question may take in all, retries included.
    """

    def __init__(
        self,
        *,
        nameservers: Sequence[str] | None = None,
        port: int = DNS_PORT,
        lifetime: float = DEFAULT_LIFETIME_SECONDS,
    ) -> None:
        """Remember the configuration; the dnspython resolver is built on first use."""
        if lifetime <= 0:
            raise ValueError(f"DNS lifetime must be positive, got {lifetime}")
        self._nameservers = list(nameservers) if nameservers is not None else None
        self._port = port
        self._lifetime = lifetime
        self._resolver: dns.asyncresolver.Resolver | None = None

    def _get_resolver(self) -> dns.asyncresolver.Resolver:
        # Built lazily: a plan with an IP address never needs /etc/resolv.conf.
        if self._resolver is None:
            try:
                if self._nameservers is None:
                    resolver = dns.asyncresolver.Resolver(configure=True)
                else:
                    resolver = dns.asyncresolver.Resolver(configure=False)
                    resolver.nameservers = [
                        dns.nameserver.Do53Nameserver(address, self._port)
                        for address in self._nameservers
                    ]
            except (dns.exception.DNSException, OSError, ValueError) as exc:
                raise LocateError(
                    f"cannot set up DNS ({exc}); check /etc/resolv.conf or configure DNS "
                    "servers for sipua"
                ) from exc
            resolver.lifetime = self._lifetime
            resolver.timeout = min(resolver.timeout, self._lifetime)
            self._resolver = resolver
        return self._resolver

    def _servers(self) -> str:
        resolver = self._resolver
        servers = [str(s) for s in resolver.nameservers] if resolver else []
        return ", ".join(servers) or "none"

    async def lookup(self, query: Query) -> list[Record]:
        """Ask DNS one question.

        Args:
            query: The owner name and record type.

        Returns:
            The records; empty when the name does not exist or has no records of that type.

        Raises:
            LocateError: Timeout, every server failed (SERVFAIL, REFUSED...), or a malformed
                answer; the message names the query.
        """
        resolver = self._get_resolver()
        what = f"DNS {query.rdtype} lookup for {query.name}"
        try:
            answer = await resolver.resolve(
                dns.name.from_text(query.name),
                dns.rdatatype.from_text(query.rdtype),
                search=False,
                lifetime=self._lifetime,
                backend=dns.asyncbackend.get_backend("trio"),
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.resolver.LifetimeTimeout as exc:
            raise LocateError(
                f"{what} timed out after {self._lifetime:g} s (servers: {self._servers()}); "
                "check the network and the DNS servers"
            ) from exc
        except dns.resolver.NoNameservers as exc:
            raise LocateError(
                f"{what} failed: no DNS server gave a usable answer ({exc}); "
                "check the DNS servers or the domain's zone"
            ) from exc
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            raise LocateError(f"{what} failed: {exc}") from exc
        return [_record(rdata) for rdata in answer]


def _record(rdata: dns.rdata.Rdata) -> Record:
    if isinstance(rdata, dns.rdtypes.IN.NAPTR.NAPTR):
        return NaptrRecord(
            order=rdata.order,
            preference=rdata.preference,
            flags=_text(rdata.flags),
            service=_text(rdata.service),
            regexp=_text(rdata.regexp),
            replacement=_name(rdata.replacement),
        )
    if isinstance(rdata, dns.rdtypes.IN.SRV.SRV):
        return SrvRecord(
            priority=rdata.priority,
            weight=rdata.weight,
            port=rdata.port,
            target=_name(rdata.target),
        )
    if isinstance(rdata, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
        return str(rdata.address)
    # resolve() only returns the asked type; anything else is a bug in the answer handling.
    raise LocateError(f"unexpected DNS record {rdata!r}; sipua asks only NAPTR, SRV, A, AAAA")


async def run_locator(locator: Locator, resolver: RecordLookup) -> list[Target]:
    """Answer a `Locator`'s questions with `resolver` until it has its targets.

    Raises:
        LocateError: Location failed; the message names the name and record type.
    """
    while (query := locator.next_query()) is not None:
        try:
            records = await resolver.lookup(query)
        except LocateError as exc:
            locator.receive_failure(query, exc)
        else:
            locator.receive(query, records)
    return locator.targets()


async def locate(
    aor: str,
    proxy: str | None = None,
    tls_name: str | None = None,
    *,
    resolver: RecordLookup | None = None,
    rng: RandomSource | None = None,
) -> list[Target]:
    """Find the ordered TLS targets for an account (RFC 3263 §4, RFC 5922 §7.3).

    The UA tries the targets in order and moves to the next when one refuses, times out, fails
    the TLS handshake or answers 503 (RFC 3263 §4.3); all carry the same `tls_name`.

    Args:
        aor: The account's ``sips:`` address of record.
        proxy: Optional outbound proxy (``host``, ``host:port``, ``[v6]:port``, ``sips:`` URI).
        tls_name: Optional override for the SNI and certificate-identity name.
        resolver: Where answers come from; a `DnsResolver` on the system's DNS by default.
        rng: Random source for SRV weights; a fresh `random.Random` by default.

    Returns:
        At least one target, in the order to try.

    Raises:
        ConfigError: The AOR, proxy or TLS name is unusable (a ``sip:`` AOR, a bad port...).
        LocateError: DNS failed or found nothing; the message says for which name and type.
    """
    plan = plan_targets(aor, proxy, tls_name)
    locator = Locator(plan, rng if rng is not None else random.Random())
    # Each question has its own lifetime; this caps the sum (trio.fail_after around the call
    # gives a caller a tighter bound).
    timeout = DEFAULT_LOCATE_TIMEOUT_SECONDS
    with trio.move_on_after(timeout) as scope:
        return await run_locator(locator, resolver if resolver is not None else DnsResolver())
    assert scope.cancelled_caught
    raise LocateError(
        f"locating {plan.host} took longer than {timeout:g} s; check the network and DNS"
    )
