"""`sipua load --processes`: throughput with 1 and N worker processes, alternating.

Where the registrar is not the limit: every registration over one TLS connection per worker
(`--reuse-connection`), a fresh Kamailio for each run (one connection's bindings pile up in
its location table), and, for comparison, a new connection per registration on one Kamailio.
Reports registrations/s, client CPU per registration (all processes) and Kamailio's CPU per
registration; the speed-up is the ratio of the medians of the same run. On a machine with two
cores, Kamailio shares them with the workers: the speed-up is bounded by what it leaves.

Usage: python scripts/bench/scaling.py [--processes 2] [--runs 3] [--reuse-count 20000]
                                       [--count 2000]
"""

from __future__ import annotations

import argparse
import statistics

from _peers import bench_kamailio, spread, users, workdir
from register import median, run_sipua


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--processes", default="2", help="N (or auto) against 1")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reuse-count", type=int, default=20000)
    parser.add_argument("--reuse-concurrency", type=int, default=800)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--tls-groups", default="X25519")
    parser.add_argument(
        "--tcp-children",
        type=int,
        default=2,
        help="Kamailio TCP/TLS workers for the one-connection-per-worker runs (default 2: one "
        "per sipua worker, so that one registrar process is not the limit)",
    )
    args = parser.parse_args()
    work = workdir()
    accounts = users(args.count)
    conns = args.concurrency * 4 + 2000
    modes: dict[str, list[dict[str, float]]] = {"1": [], args.processes: []}
    fresh: dict[str, list[dict[str, float]]] = {"1": [], args.processes: []}
    reuse = ("--reuse-connection", "--count", str(args.reuse_count), "--concurrency",
             str(args.reuse_concurrency), "--tls-groups", args.tls_groups)  # fmt: skip
    for i in range(args.runs):
        for procs in modes:
            with bench_kamailio(
                work / f"kam-{i}-{procs}",
                users=accounts,
                max_connections=conns,
                shm_mb=512,
                tcp_children=args.tcp_children,
            ) as kam:
                modes[procs].append(run_sipua(kam, work, *reuse, "--processes", procs))
    own = ("--count", str(args.count), "--concurrency", str(args.concurrency),
           "--tls-groups", args.tls_groups)  # fmt: skip
    with bench_kamailio(work / "kam-own", users=accounts, max_connections=conns, shm_mb=512) as kam:
        for _ in range(args.runs):
            for procs in fresh:
                fresh[procs].append(run_sipua(kam, work, *own, "--processes", procs))
    lines = []
    for title, table in (
        (
            f"one TLS connection per worker, {args.reuse_count} registrations, Kamailio with "
            f"{args.tcp_children} TCP workers",
            modes,
        ),
        (f"a new TLS connection per registration, {args.count} registrations", fresh),
    ):
        lines.append(f"{title}, {args.runs} alternating runs (median (min-max)):")
        for procs, runs in table.items():
            lines.append(
                f"  --processes {procs}: {spread([r['rate'] for r in runs])} reg/s, client CPU "
                f"{median(runs, 'cpu_ms'):.3f} ms/reg (all processes), Kamailio "
                f"{median(runs, 'kamailio_ms'):.3f} ms/reg"
            )
        one = statistics.median(r["rate"] for r in table["1"])
        many = statistics.median(r["rate"] for r in table[args.processes])
        lines.append(f"  speed-up --processes {args.processes} / 1: {many / one:.2f}x")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
