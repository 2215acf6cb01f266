"""REGISTER throughput and client CPU: `sipua load` beside SIPp over TLS (and TCP), same Kamailio.

One Kamailio from the project's config (one TLS worker, tlsf allocator) with users
load0000..; then, alternating, `sipua load` (each account its own new TLS connection, digest
auth), a TLS-capable SIPp 3.7.7 with the same accounts and number of registrations (`-t ln`:
one new TLS connection per registration) and Debian's SIPp over TCP (`-t tn`, the figure of
earlier rounds), all with the same concurrency. Then, each on a fresh Kamailio (its location
table would otherwise grow from run to run), registrations over one connection: `sipua load
--reuse-connection` against TLS SIPp `-t l1`.

The TLS SIPp is built from ../shared/peers by `scripts/build-peers sipp` (cached outside the
repository; a cached build costs the hashing of the tarball). SIPp does not verify the
registrar's certificate; sipua does (its trust verdict is cached per chain).

Measured: registrations per second (sipua: its own elapsed time; SIPp: wall time of the
process, which includes its ~20 ms start), client CPU per registration (sipua: its report's
user+system time of all its processes during the run; SIPp: the child's rusage) and
Kamailio's CPU per registration (all its processes, from /proc). Medians of the runs, with
min-max; ratios sipua/SIPp are of the medians of the same run.

Usage: python scripts/bench/register.py [--count 2000] [--runs 3] [--concurrency 50]
                                        [--tls-groups X25519] [--processes N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from _peers import PASSWORD, BenchKamailio, bench_kamailio, sipua_load, spread, users, workdir


def kamailio_cpu(pid: int) -> float:
    """CPU seconds (user + system) of every process in Kamailio's process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pid:  # pgrp
            total += int(fields[11]) + int(fields[12])
    return total / tick


REPO = Path(__file__).resolve().parents[2]


def tls_sipp() -> str:
    """The TLS-capable SIPp, built (once, cached) by scripts/build-peers."""
    result = subprocess.run(
        [str(REPO / "scripts" / "build-peers"), "sipp"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"cannot build the TLS SIPp:\n{result.stderr[-3000:]}")
    return str(Path(result.stdout.strip().splitlines()[-1]) / "bin" / "sipp")


def run_sipp(
    kam: BenchKamailio,
    work: Path,
    count: int,
    concurrency: int,
    *,
    sipp: str = "sipp",
    transport: str = "tn",
) -> dict[str, float]:
    """One SIPp run; `transport` tn (TCP), ln (TLS, a connection per registration), l1 (TLS,
    one connection)."""
    inf = work / "users.csv"
    inf.write_text(
        "SEQUENTIAL\n" + "".join(f"{user};{password}\n" for user, password in kam.users.items())
    )
    port = kam.tcp_port if transport.startswith("t") else kam.tls_port
    # SIPp keeps a TLS call's socket open after the call: once -max_socket sockets are open it
    # spreads the next calls over them instead of connecting (2,000 registrations went over
    # 300 connections with the old limit). A connection per registration needs the limit
    # above the count.
    max_socket = count + 100 if transport == "ln" else concurrency * 4 + 100
    tls: list[str] = []
    if transport.startswith("l"):
        # SIPp loads a certificate and key even as a client; Kamailio's plain TLS port asks
        # for none, so these are never sent.
        tls = ["-tls_cert", str(kam.pki.cert("device")), "-tls_key", str(kam.pki.key("device"))]
    argv = [
        sipp, "-sf", str(Path(__file__).with_name("sipp-register.xml")), "-inf", str(inf),
        "-t", transport, *tls, "-i", kam.ip, "-p", "0", "-m", str(count),
        "-l", str(concurrency), "-r", "100000", "-key", "domain", kam.domain,
        "-au", "[field0]", "-ap", PASSWORD, "-nostdin", "-max_socket", str(max_socket),
        "-timeout", "300s", "-timeout_error",
        f"{kam.ip}:{port}",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    kam_before = kamailio_cpu(kam.pid or 0)
    started = time.monotonic()
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=320, check=False, cwd=work
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    kam_cpu = kamailio_cpu(kam.pid or 0) - kam_before
    if result.returncode != 0:
        raise RuntimeError(f"sipp exited {result.returncode}:\n{result.stdout[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "rate": count / wall,
        "cpu_ms": cpu * 1000 / count,
        "kamailio_ms": kam_cpu * 1000 / count,
    }


def run_sipua(kam: BenchKamailio, work: Path, *extra: str) -> dict[str, float]:
    kam_before = kamailio_cpu(kam.pid or 0)
    report = sipua_load(kam, work, *extra)
    kam_cpu = kamailio_cpu(kam.pid or 0) - kam_before
    if report["failed"]["total"]:
        # Counted, not fatal: on a shared machine another run can take a port mid-bench.
        print(f"  (sipua load failures: {report['failed']['by_reason']})", flush=True)
    ok = report["succeeded"] or 1
    return {
        "rate": report["registrations_per_s"],
        "cpu_ms": report["cpu_ms_per_registration"],
        "user_ms": report["cpu_user_s"] * 1000 / ok,
        "sys_ms": report["cpu_sys_s"] * 1000 / ok,
        "kamailio_ms": kam_cpu * 1000 / ok,
        "p50": report["latency_ms"]["p50"],
        "p99": report["latency_ms"]["p99"],
    }


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def ratio(a: list[dict[str, float]], b: list[dict[str, float]], key: str) -> float:
    return median(a, key) / median(b, key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=2000, help="registrations per run")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--reuse-count", type=int, default=20000)
    parser.add_argument("--reuse-concurrency", type=int, default=200)
    parser.add_argument(
        "--tls-groups",
        help="also run sipua load with these key-exchange groups (e.g. X25519), alternating",
    )
    parser.add_argument(
        "--processes", default="1", help="sipua load --processes for every sipua run (default 1)"
    )
    args = parser.parse_args()
    if shutil.which("sipp") is None or shutil.which("kamailio") is None:
        raise SystemExit("sipp and kamailio are needed (scripts/install-peers)")
    sipp = tls_sipp()
    work = workdir()
    accounts = users(args.count)
    conns = max(args.concurrency * 4, args.count) + 2000
    count = args.count
    procs = ("--processes", args.processes) if args.processes != "1" else ()
    sipua_runs: list[dict[str, float]] = []
    groups_runs: list[dict[str, float]] = []
    tls_runs: list[dict[str, float]] = []
    tcp_runs: list[dict[str, float]] = []
    with bench_kamailio(
        work / "kamailio", users=accounts, max_connections=conns, shm_mb=512
    ) as kam:
        own = ("--count", str(count), "--concurrency", str(args.concurrency), *procs)
        for _ in range(args.runs):
            sipua_runs.append(run_sipua(kam, work, *own))
            if args.tls_groups:
                groups_runs.append(run_sipua(kam, work, *own, "--tls-groups", args.tls_groups))
            tls_runs.append(run_sipp(kam, work, count, args.concurrency, sipp=sipp, transport="ln"))
            tcp_runs.append(run_sipp(kam, work, count, args.concurrency))
    reuse_runs: list[dict[str, float]] = []
    reuse_sipp: list[dict[str, float]] = []
    reuse = ("--count", str(args.reuse_count), "--concurrency", str(args.reuse_concurrency))
    for i in range(args.runs * 2):
        # A fresh Kamailio for each: one connection's bindings pile up in its location table.
        with bench_kamailio(
            work / f"kamailio-reuse-{i}", users=accounts, max_connections=conns, shm_mb=512
        ) as kam:
            if i % 2 == 0:
                reuse_runs.append(run_sipua(kam, work, "--reuse-connection", *reuse, *procs))
            else:
                reuse_sipp.append(
                    run_sipp(
                        kam, work, args.reuse_count, args.reuse_concurrency, sipp=sipp,
                        transport="l1",
                    )
                )  # fmt: skip
    base = sipua_runs
    lines = [
        f"REGISTER, new connection per registration, digest, {count} per run, concurrency "
        f"{args.concurrency}, sipua --processes {args.processes}, {args.runs} alternating runs "
        "(median (min-max)):",
        f"  sipua load (TLS):  {spread([r['rate'] for r in base])} reg/s, client CPU "
        f"{median(base, 'cpu_ms'):.3f} ms/reg (user {median(base, 'user_ms'):.3f}, sys "
        f"{median(base, 'sys_ms'):.3f}), Kamailio {median(base, 'kamailio_ms'):.3f} ms/reg, "
        f"latency p50 {median(base, 'p50'):.1f} ms p99 {median(base, 'p99'):.1f} ms",
    ]
    if groups_runs:
        lines.append(
            f"  sipua load --tls-groups {args.tls_groups}: "
            f"{spread([r['rate'] for r in groups_runs])} reg/s, client CPU "
            f"{median(groups_runs, 'cpu_ms'):.3f} ms/reg, Kamailio "
            f"{median(groups_runs, 'kamailio_ms'):.3f} ms/reg"
        )
    lines += [
        f"  SIPp 3.7.7 (TLS, -t ln): {spread([r['rate'] for r in tls_runs])} reg/s, client CPU "
        f"{median(tls_runs, 'cpu_ms'):.3f} ms/reg, Kamailio {median(tls_runs, 'kamailio_ms'):.3f}"
        " ms/reg",
        f"  SIPp (TCP, -t tn):  {spread([r['rate'] for r in tcp_runs])} reg/s, client CPU "
        f"{median(tcp_runs, 'cpu_ms'):.3f} ms/reg, Kamailio {median(tcp_runs, 'kamailio_ms'):.3f}"
        " ms/reg",
        f"  ratio sipua/SIPp-TLS: throughput {ratio(base, tls_runs, 'rate'):.2f}x, client CPU "
        f"{ratio(base, tls_runs, 'cpu_ms'):.2f}x"
        + (
            f"; with --tls-groups {args.tls_groups}: {ratio(groups_runs, tls_runs, 'rate'):.2f}x, "
            f"CPU {ratio(groups_runs, tls_runs, 'cpu_ms'):.2f}x"
            if groups_runs
            else ""
        ),
        f"  ratio sipua/SIPp-TCP: throughput {ratio(base, tcp_runs, 'rate'):.2f}x, client CPU "
        f"{ratio(base, tcp_runs, 'cpu_ms'):.2f}x",
        f"REGISTER on one TLS connection ({args.reuse_count} per run, "
        f"{args.reuse_concurrency} in flight, a fresh Kamailio per run):",
        f"  sipua load --reuse-connection: {spread([r['rate'] for r in reuse_runs])} reg/s, "
        f"client CPU {median(reuse_runs, 'cpu_ms'):.3f} ms/reg",
        f"  SIPp 3.7.7 (TLS, -t l1): {spread([r['rate'] for r in reuse_sipp])} reg/s, "
        f"client CPU {median(reuse_sipp, 'cpu_ms'):.3f} ms/reg",
        f"  ratio sipua/SIPp-TLS: throughput {ratio(reuse_runs, reuse_sipp, 'rate'):.2f}x, "
        f"client CPU {ratio(reuse_runs, reuse_sipp, 'cpu_ms'):.2f}x",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
