"""RFC 3263 server location for sipua: from a ``sips:`` AOR (or outbound proxy) to TLS targets.

`plan_targets()` and `Locator` (in `rfc3263`) are pure; `locate()` and `DnsResolver` (in
`resolver`) ask DNS with dnspython under trio. The UA calls `locate()` and tries the returned
targets in order.
"""

from __future__ import annotations

from sipua.locate.resolver import DnsResolver, RecordLookup, locate
from sipua.locate.rfc3263 import (
    SIPS_DEFAULT_PORT,
    LocatePlan,
    Locator,
    NaptrRecord,
    Query,
    SrvRecord,
    Target,
    order_srv,
    plan_targets,
    select_naptr,
)

__all__ = [
    "SIPS_DEFAULT_PORT",
    "DnsResolver",
    "LocatePlan",
    "Locator",
    "NaptrRecord",
    "Query",
    "RecordLookup",
    "SrvRecord",
    "Target",
    "locate",
    "order_srv",
    "plan_targets",
    "select_naptr",
]
