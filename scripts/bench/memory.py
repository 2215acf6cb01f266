"""Memory: resident memory per idle registered TLS UA, at 1,000 and 5,000 UAs in one process.

`sipua load --hold` registers N accounts, each over its own TLS connection, keeps them all
registered (connections open, reading, refreshing) and reports the process's RSS while holding;
the figure is (RSS while holding - RSS before the first connection) / N. Kamailio gets 2,500
users at most (its private memory, see `_peers.py`), so above that an account holds several
bindings, each its own connection and Contact. The target is <= 50 KiB per UA.

Usage: python scripts/bench/memory.py [--uas 1000 5000] [--hold 5] [--tls-groups X25519]
"""

from __future__ import annotations

import argparse

from _peers import BenchKamailio, sipua_load, users, workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--uas", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--hold", type=float, default=5.0)
    parser.add_argument(
        "--tls-groups", help="key-exchange groups for sipua (default: OpenSSL's), e.g. X25519"
    )
    args = parser.parse_args()
    extra = ["--tls-groups", args.tls_groups] if args.tls_groups else []
    work = workdir()
    top = max(args.uas)
    with BenchKamailio(
        work / "kamailio", users=users(top), max_connections=top + 2000, shm_mb=1024
    ) as kam:
        for count in args.uas:
            report = sipua_load(
                kam, work, "--count", str(count), "--rate", "400", "--hold", str(args.hold), *extra
            )
            print(
                f"{count} UAs: held {report['held']}, RSS {report['rss_kib']} KiB "
                f"(before {report['rss_before_kib']} KiB), "
                f"{report['rss_per_held_kib']} KiB per idle registered TLS UA "
                f"(target <= 50), failures {report['failed']['total']}"
            )


if __name__ == "__main__":
    main()
