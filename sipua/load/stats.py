"""Figures of a `sipua load` run: latencies, failures by reason, the progress line, the report.

Pure bookkeeping (no I/O, no clock): the engine hands in durations and outcomes, the command
prints `progress_line` and writes `LoadReport.to_json()`. Latencies are kept in a list bounded
by the run's registration count, so percentiles are exact.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

#: The percentiles the report gives (the progress line shows p50 and p99).
PERCENTILES: Final = (50, 90, 99, 99.9)
#: The most latency samples kept (one per registration; beyond it, later ones are dropped).
MAX_SAMPLES: Final = 10_000_000


def percentile(sorted_values: list[float], pct: float) -> float:
    """The nearest-rank percentile of already sorted values (0.0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(slots=True)
class LoadStats:
    """Running totals of a load run.

    Attributes:
        latencies: Seconds from the start of each successful registration to its 2xx.
        failures: Failed registrations by reason (`connect`, `tls-handshake`, `untrusted`,
            `timeout`, `auth`, `status-NNN`, `connection-lost`, `framing`, ...).
        refreshes: Successful refreshes while holding.
    """

    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    refreshes: int = 0

    @property
    def succeeded(self) -> int:
        """Registrations that ended in a 2xx."""
        return len(self.latencies)

    @property
    def failed(self) -> int:
        """Registrations that ended otherwise."""
        return sum(self.failures.values())

    def success(self, latency: float) -> None:
        """Records a registration that succeeded after `latency` seconds."""
        if len(self.latencies) < MAX_SAMPLES:
            self.latencies.append(latency)

    def failure(self, reason: str) -> None:
        """Records a registration that failed for `reason` (a short code)."""
        self.failures[reason] += 1

    def latency_ms(self) -> dict[str, float]:
        """Percentiles (``p50``, ``p90``, ``p99``, ``p99.9``, ``max``) in milliseconds."""
        ordered = sorted(self.latencies)
        result = {f"p{p:g}": round(percentile(ordered, p) * 1000, 3) for p in PERCENTILES}
        result["max"] = round(ordered[-1] * 1000, 3) if ordered else 0.0
        return result


def progress_line(stats: LoadStats, *, total: int, elapsed: float, window_rate: float) -> str:
    """The live progress line: done/total, current rate, p50/p99 and failures by reason.

    Args:
        stats: The totals so far.
        total: Registrations the run will attempt.
        elapsed: Seconds since the run started.
        window_rate: Registrations per second over the last progress interval.
    """
    recent = sorted(stats.latencies[-5000:])
    p50 = percentile(recent, 50) * 1000
    p99 = percentile(recent, 99) * 1000
    done = stats.succeeded + stats.failed
    failures = (
        " ".join(f"{reason}={n}" for reason, n in stats.failures.most_common(4))
        if stats.failures
        else "0"
    )
    return (
        f"{done}/{total} in {elapsed:.1f} s  {window_rate:.0f}/s  "
        f"p50 {p50:.1f} ms  p99 {p99:.1f} ms  ok {stats.succeeded}  failed {failures}"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadReport:
    """The outcome of a load run (what `--json FILE` writes).

    Attributes:
        mode: ``connection-per-account`` or ``reuse-connection``.
        attempted: Registrations started.
        succeeded: Registrations that got a 2xx.
        failures: Failed registrations by reason.
        elapsed_s: Seconds from the first connection to the last outcome (the hold excluded).
        cpu_s: CPU seconds this process spent in that time (user + system).
        cpu_user_s: The user part of `cpu_s` (Python, OpenSSL).
        cpu_sys_s: The system part of `cpu_s` (sockets; on loopback the kernel also delivers
            each segment to the peer in the sender's time).
        latency_ms: Latency percentiles in milliseconds.
        concurrency: Registrations allowed in flight at once.
        rate: The requested start rate per second, None when not paced.
        held: Accounts still registered at the end of `--hold` (None without it).
        hold_s: The hold in seconds (0 without it).
        refreshes: Successful refreshes during the hold.
        rss_kib: Resident memory at the end (while holding, if holding).
        rss_before_kib: Resident memory before the first connection.
        nofile_limit: The open-file limit the run had (raised to the hard limit; the lowest of
            the workers').
        processes: The processes that ran the registrations (`--processes`); with more than
            one, counts, CPU and memory are sums over them and latencies their merged samples.
    """

    mode: str
    attempted: int
    succeeded: int
    failures: dict[str, int]
    elapsed_s: float
    cpu_s: float
    latency_ms: dict[str, float]
    concurrency: int
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0
    rate: float | None = None
    held: int | None = None
    hold_s: float = 0.0
    refreshes: int = 0
    rss_kib: int = 0
    rss_before_kib: int = 0
    nofile_limit: int = 0
    processes: int = 1

    @property
    def failed(self) -> int:
        """Registrations that failed."""
        return sum(self.failures.values())

    @property
    def registrations_per_s(self) -> float:
        """Successful registrations per second of `elapsed_s`."""
        return self.succeeded / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def cpu_ms_per_registration(self) -> float:
        """Client CPU milliseconds per successful registration."""
        return self.cpu_s * 1000 / self.succeeded if self.succeeded else 0.0

    @property
    def rss_per_held_kib(self) -> float | None:
        """Resident memory per held account, above what the process used before any."""
        if not self.held:
            return None
        return (self.rss_kib - self.rss_before_kib) / self.held

    def to_json(self) -> dict[str, object]:
        """The report as a JSON-ready mapping (every figure named with its unit)."""
        return {
            "mode": self.mode,
            "attempted": self.attempted,
            "succeeded": self.succeeded,
            "failed": {"total": self.failed, "by_reason": dict(self.failures)},
            "registrations_per_s": round(self.registrations_per_s, 1),
            "elapsed_s": round(self.elapsed_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "cpu_user_s": round(self.cpu_user_s, 3),
            "cpu_sys_s": round(self.cpu_sys_s, 3),
            "cpu_ms_per_registration": round(self.cpu_ms_per_registration, 3),
            "latency_ms": self.latency_ms,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "hold_s": self.hold_s,
            "held": self.held,
            "refreshes": self.refreshes,
            "rss_kib": self.rss_kib,
            "rss_before_kib": self.rss_before_kib,
            "rss_per_held_kib": (
                round(self.rss_per_held_kib, 1) if self.rss_per_held_kib is not None else None
            ),
            "nofile_limit": self.nofile_limit,
            "processes": self.processes,
        }

    def summary(self) -> str:
        """A few human lines for the end of the run."""
        lat = self.latency_ms
        failures = ", ".join(f"{r} {n}" for r, n in sorted(self.failures.items())) or "none"
        lines = [
            f"{self.succeeded} of {self.attempted} registered in {self.elapsed_s:.2f} s "
            f"({self.registrations_per_s:.0f}/s, {self.mode}, concurrency {self.concurrency}"
            + (f", {self.processes} processes" if self.processes > 1 else "")
            + ")",
            f"latency ms: p50 {lat['p50']:.1f}  p90 {lat['p90']:.1f}  p99 {lat['p99']:.1f}  "
            f"max {lat['max']:.1f}",
            f"client CPU{' (all processes)' if self.processes > 1 else ''}: {self.cpu_s:.2f} s "
            f"(user {self.cpu_user_s:.2f}, system "
            f"{self.cpu_sys_s:.2f}), {self.cpu_ms_per_registration:.3f} ms per registration",
            f"failed: {failures}",
        ]
        if self.held is not None:
            per = self.rss_per_held_kib
            lines.append(
                f"held {self.held} for {self.hold_s:g} s ({self.refreshes} refreshes); RSS "
                f"{self.rss_kib} KiB"
                + (f", {per:.1f} KiB per held account" if per is not None else "")
            )
        return "\n".join(lines)
