"""An in-process UDP DNS responder on the loopback, for resolver tests under trio.

The records are a dict keyed by (owner name, record type) whose values are rdata in zone-file
text, e.g. ``{("example.com", "NAPTR"): ['10 50 "s" "SIPS+D2T" "" _sips._tcp.example.com.']}``.
Answers are built with dnspython's message and rrset APIs:

- a known (name, type) gets its records, authoritative;
- a known name asked for another type gets an empty NOERROR (dnspython's NoAnswer);
- an unknown name gets NXDOMAIN;
- `rcodes` forces an rcode (SERVFAIL...) for a (name, type);
- `silent` drops every query (a server that never answers, for timeouts).

Use it as ``async with serve_dns(records) as server:`` and point a resolver at
``server.host``/``server.port``. The socket is bound to a free port, the serving task lives in a
nursery owned by the context manager, and both are closed on exit whatever happens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import trio

MAX_DATAGRAM_BYTES: Final = 4096
"""Queries larger than this are dropped (a resolver query is well under 512 bytes)."""

MAX_RECORDED_QUERIES: Final = 1000
"""The query log stops growing here so a runaway client cannot eat memory."""

TTL_SECONDS: Final = 60

RecordKey = tuple[str, str]


def _key(name: str, rdtype: str) -> RecordKey:
    return name.lower().removesuffix("."), rdtype.upper()


@dataclass
class DnsServer:
    """A running loopback DNS server.

    Attributes:
        host: The address it listens on.
        port: The UDP port it listens on.
        queries: (name, type) of each query received, in order (name lower case, no final dot).
    """

    host: str
    port: int
    queries: list[RecordKey] = field(default_factory=list)


def _answer(
    query: dns.message.Message,
    records: Mapping[RecordKey, Sequence[str]],
    rcodes: Mapping[RecordKey, dns.rcode.Rcode],
) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    question = query.question[0]
    key = _key(question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
    if key in rcodes:
        response.set_rcode(rcodes[key])
    elif key in records:
        rrset = dns.rrset.from_text_list(
            question.name, TTL_SECONDS, dns.rdataclass.IN, question.rdtype, list(records[key])
        )
        response.answer.append(rrset)
    elif not any(name == key[0] for name, _ in records):
        response.set_rcode(dns.rcode.NXDOMAIN)
    return response


@asynccontextmanager
async def serve_dns(
    records: Mapping[tuple[str, str], Sequence[str]],
    *,
    rcodes: Mapping[tuple[str, str], dns.rcode.Rcode] | None = None,
    silent: bool = False,
    host: str = "127.0.0.1",
) -> AsyncIterator[DnsServer]:
    """Run a DNS responder on `host` and a free UDP port for the duration of the block.

    Args:
        records: Zone data: (name, type) -> rdata texts.
        rcodes: (name, type) -> rcode to answer with instead of data.
        silent: Never answer (queries are still recorded).
        host: The loopback address to bind.

    Yields:
        The server's address and query log.
    """
    zone = {_key(name, rdtype): list(texts) for (name, rdtype), texts in records.items()}
    forced = {_key(name, rdtype): rcode for (name, rdtype), rcode in (rcodes or {}).items()}
    family = trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
    sock = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
    with sock:
        await sock.bind((host, 0))
        server = DnsServer(host=host, port=sock.getsockname()[1])

        async def serve() -> None:
            while True:  # runs until the context manager cancels it
                data, peer = await sock.recvfrom(MAX_DATAGRAM_BYTES)
                try:
                    query = dns.message.from_wire(data)
                except dns.exception.DNSException:
                    continue  # not DNS: ignore it, as a real server would
                if not query.question:
                    continue
                question = query.question[0]
                if len(server.queries) < MAX_RECORDED_QUERIES:
                    server.queries.append(
                        _key(question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
                    )
                if silent:
                    continue
                response = _answer(query, zone, forced)
                await sock.sendto(response.to_wire(), peer)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            try:
                yield server
            finally:
                nursery.cancel_scope.cancel()
