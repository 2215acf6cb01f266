"""REGISTER throughput and client CPU: `sipua load` (TLS) beside SIPp (TCP) on the same Kamailio.

One Kamailio from the project's config (one TLS worker, tlsf allocator) with users
load0000..; then, alternating, `sipua load` (each account its own new TLS connection, digest
auth) and SIPp with the same accounts and number of registrations over TCP (`-t tn`: one new
connection per registration; Debian's SIPp has no TLS, so this is a harder bar). Both run with
the same concurrency. Then sipua on one reused TLS connection (`--reuse-connection`).

Measured: registrations per second (sipua: its own elapsed time; SIPp: wall time of the
process, which includes its ~20 ms start), client CPU per registration (sipua: its report's
user+system time during the run; SIPp: the child's rusage) and Kamailio's CPU per
registration (all its processes, from /proc). Medians of the runs, with min-max.

Usage: python scripts/bench/register.py [--count 2000] [--runs 3] [--concurrency 50]
                                        [--tls-groups X25519]
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

from _peers import PASSWORD, BenchKamailio, sipua_load, spread, users, workdir


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


def run_sipp(kam: BenchKamailio, work: Path, count: int, concurrency: int) -> dict[str, float]:
    inf = work / "users.csv"
    inf.write_text(
        "SEQUENTIAL\n" + "".join(f"{user};{password}\n" for user, password in kam.users.items())
    )
    argv = [
        "sipp", "-sf", str(Path(__file__).with_name("sipp-register.xml")), "-inf", str(inf),
        "-t", "tn", "-i", kam.ip, "-p", "0", "-m", str(count), "-l", str(concurrency),
        "-r", "100000", "-key", "domain", kam.domain, "-au", "[field0]", "-ap", PASSWORD,
        "-nostdin", "-max_socket",
        str(concurrency * 4 + 100), "-timeout", "300s", "-timeout_error",
        f"{kam.ip}:{kam.tcp_port}",
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
        raise RuntimeError(f"sipua load failures: {report['failed']}")
    ok = report["succeeded"]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=2000, help="registrations per run")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--reuse-count", type=int, default=20000)
    parser.add_argument(
        "--tls-groups",
        help="also run sipua load with these key-exchange groups (e.g. X25519), alternating",
    )
    args = parser.parse_args()
    if shutil.which("sipp") is None or shutil.which("kamailio") is None:
        raise SystemExit("sipp and kamailio are needed (scripts/install-peers)")
    work = workdir()
    accounts = users(args.count)
    conns = args.concurrency * 4 + 2000
    with BenchKamailio(work / "kamailio", users=accounts, max_connections=conns, shm_mb=512) as kam:
        count = args.count
        sipua_runs: list[dict[str, float]] = []
        sipp_runs: list[dict[str, float]] = []
        groups_runs: list[dict[str, float]] = []
        own = ("--count", str(count), "--concurrency", str(args.concurrency))
        for _ in range(args.runs):
            sipua_runs.append(run_sipua(kam, work, *own))
            if args.tls_groups:
                groups_runs.append(run_sipua(kam, work, *own, "--tls-groups", args.tls_groups))
            sipp_runs.append(run_sipp(kam, work, count, args.concurrency))
        reuse_runs = [
            run_sipua(
                kam,
                work,
                "--reuse-connection",
                "--count",
                str(args.reuse_count),
                "--concurrency",
                "200",
            )
            for _ in range(args.runs)
        ]
    rate_sipua = [r["rate"] for r in sipua_runs]
    rate_sipp = [r["rate"] for r in sipp_runs]
    rate_reuse = [r["rate"] for r in reuse_runs]
    cpu_sipua, cpu_sipp = median(sipua_runs, "cpu_ms"), median(sipp_runs, "cpu_ms")
    throughput_ratio = statistics.median(rate_sipua) / statistics.median(rate_sipp)
    lines = [
        f"REGISTER, new connection per registration, digest, {count} per run, concurrency "
        f"{args.concurrency}, {args.runs} alternating runs (median (min-max)):",
        f"  sipua load (TLS):  {spread(rate_sipua)} reg/s, client CPU {cpu_sipua:.3f} ms/reg "
        f"(user {median(sipua_runs, 'user_ms'):.3f}, sys {median(sipua_runs, 'sys_ms'):.3f}), "
        f"Kamailio {median(sipua_runs, 'kamailio_ms'):.3f} ms/reg, latency p50 "
        f"{median(sipua_runs, 'p50'):.1f} ms p99 {median(sipua_runs, 'p99'):.1f} ms",
        f"  SIPp (TCP, -t tn): {spread(rate_sipp)} reg/s, client CPU {cpu_sipp:.3f} ms/reg, "
        f"Kamailio {median(sipp_runs, 'kamailio_ms'):.3f} ms/reg",
        f"  ratio sipua/SIPp: throughput {throughput_ratio:.2f}x, "
        f"client CPU {cpu_sipua / cpu_sipp:.2f}x",
        "  targets: >= 750 reg/s and <= 0.9 ms client CPU per registration",
        *(
            [
                f"  sipua load --tls-groups {args.tls_groups}: "
                f"{spread([r['rate'] for r in groups_runs])} reg/s, client CPU "
                f"{median(groups_runs, 'cpu_ms'):.3f} ms/reg"
            ]
            if groups_runs
            else []
        ),
        f"REGISTER on one reused TLS connection ({args.reuse_count} per run, 200 in flight):",
        f"  sipua load --reuse-connection: {spread(rate_reuse)} reg/s, client CPU "
        f"{median(reuse_runs, 'cpu_ms'):.3f} ms/reg (SIPp reference: ~11,600/s)",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
