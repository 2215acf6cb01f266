"""`sipua load --processes N`: one load run sharded over worker processes, merged into one.

One process registers as fast as one core allows (the TLS handshakes and the interpreter are
CPU-bound). With N workers, registration j of the run goes to worker j mod N, so worker i runs
the registrations i, i+N, i+2N... over the accounts they would use in one process; the
concurrency and the start rate are split between the workers (their sum is what was asked), so
that a run with N workers asks the registrar for the same load as one process.

The workers are started with the `spawn` method (a fresh interpreter: no trio run, OpenSSL
context or open socket is inherited) and get the settings, from which each builds its own TLS
configuration (`TlsSetup`: certificate objects are not picklable). Each worker then waits for a
common start signal, so that the figures cover the same window, and sends the parent, over one
queue:

- a progress message every interval: the latencies recorded since the last one (bounded) and
  its failure counts so far;
- one final message: its report, all its latency samples and one example message per failure
  reason; or an error message if the run itself failed.

The parent prints one merged progress line and builds one `LoadReport`: counts and failures
summed, latency percentiles from the merged samples, elapsed from the common start to the last
worker's end, and CPU of all the processes (every worker's, plus the parent's own).
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import queue
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sipua.errors import SipuaError
from sipua.load.stats import LoadReport, LoadStats

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event as EventType

    from sipua.load.engine import LoadPlan
    from sipua.settings.model import Settings

#: The most worker processes one run starts.
MAX_PROCESSES: Final = 256
#: The most latency samples one progress message carries (the live line needs a recent window).
MAX_PROGRESS_SAMPLES: Final = 5_000
#: Seconds a worker may take to start (spawn, imports, TLS configuration) before the run fails.
START_TIMEOUT_S: Final = 60.0
#: Seconds the parent waits for a worker's last message after the worker process ended.
DRAIN_TIMEOUT_S: Final = 5.0

MergedProgress = Callable[[LoadStats, float, float], None]


class WorkerFailed(SipuaError):
    """A load worker process failed or ended without its report."""

    exit_code = 1


def process_count(value: str, *, cores: int | None = None) -> int:
    """The number of worker processes for ``--processes VALUE`` (``auto``: this machine's cores).

    Raises:
        ValueError: VALUE is neither ``auto`` nor a whole number from 1 to `MAX_PROCESSES`.
    """
    if value == "auto":
        if cores is None:
            try:
                cores = len(os.sched_getaffinity(0))
            except (AttributeError, OSError):
                cores = os.cpu_count() or 1
        return max(1, min(cores, MAX_PROCESSES))
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither 'auto' nor a whole number") from None
    if not 1 <= count <= MAX_PROCESSES:
        raise ValueError(f"the number of processes must be between 1 and {MAX_PROCESSES}")
    return count


def shard(plan: LoadPlan, processes: int) -> list[dict[str, Any]]:
    """The plans of `processes` workers, as LoadPlan fields without `tls`.

    Worker i runs registrations i, i+N, ... of the run; it gets the accounts those use, in
    order (one period of that cycle), so it cycles through them exactly as one process would.
    Workers that would get no registration are not started.
    """
    n = min(processes, plan.count)
    accounts = list(plan.accounts)
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan) if f.name != "tls"}
    period = len(accounts) // math.gcd(n, len(accounts))
    shards: list[dict[str, Any]] = []
    for index in range(n):
        count = plan.count // n + (1 if index < plan.count % n else 0)
        # Registration j = index + k*n uses accounts[j % len]; that repeats after `period`.
        mine = [accounts[(index + k * n) % len(accounts)] for k in range(period)]
        shards.append(
            {
                **fields,
                "accounts": mine,
                "count": count,
                "concurrency": max(
                    1, plan.concurrency // n + (1 if index < plan.concurrency % n else 0)
                ),
                "rate": plan.rate / n if plan.rate is not None else None,
            }
        )
    return shards


@dataclass(frozen=True, slots=True)
class _Job:
    index: int
    plan_fields: dict[str, Any]
    settings: Settings
    tls_name: str | None
    progress_interval: float


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _worker(job: _Job, start: EventType, out: multiprocessing.Queue[Any]) -> None:
    """A worker process: build the plan, wait for the start, run, send the outcome."""
    try:
        import trio

        from sipua.load.engine import LoadPlan, LoadRun
        from sipua.tls.setup import TlsSetup

        plan = LoadPlan(**job.plan_fields, tls=TlsSetup(job.settings).client(job.tls_name))
        sent = 0

        def progress(stats: LoadStats, _rate: float) -> None:
            nonlocal sent
            new = stats.latencies[sent:]
            sent = len(stats.latencies)
            out.put(("progress", job.index, new[-MAX_PROGRESS_SAMPLES:], dict(stats.failures)))

        run = LoadRun(plan, progress=progress, progress_interval=job.progress_interval)
        out.put(("ready", job.index))
        if not start.wait(START_TIMEOUT_S * 2):
            return
        started = time.monotonic()
        report = trio.run(run.run)
        out.put(("done", job.index, started, report, run.stats.latencies, run.examples))
    except KeyboardInterrupt:
        pass
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        out.put(("error", job.index, f"{type(exc).__name__}: {exc}"))


def run_sharded(
    plan: LoadPlan,
    *,
    settings: Settings,
    tls_name: str | None,
    processes: int,
    progress: MergedProgress | None = None,
    progress_interval: float = 1.0,
) -> tuple[LoadReport, dict[str, str]]:
    """Runs `plan` over `processes` worker processes; returns the merged report and examples.

    `progress` is called in the parent every `progress_interval` seconds with the merged
    totals, the rate over the interval and the seconds since the start.

    Raises:
        WorkerFailed: A worker did not start, failed, or ended without its report.
    """
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[Any] = context.Queue()
    start = context.Event()
    shards = shard(plan, processes)
    workers = [
        context.Process(
            target=_worker,
            args=(_Job(i, fields, settings, tls_name, progress_interval), start, out),
            name=f"sipua-load-{i}",
            daemon=True,
        )
        for i, fields in enumerate(shards)
    ]
    try:
        for worker in workers:
            worker.start()
        _await_ready(workers, out)
        cpu_started = _cpu()
        started = time.monotonic()
        start.set()
        return _collect(plan, workers, out, started, cpu_started, progress, progress_interval)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join(DRAIN_TIMEOUT_S)
        out.close()
        out.cancel_join_thread()


def _await_ready(workers: list[Any], out: multiprocessing.Queue[Any]) -> None:
    ready: set[int] = set()
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(ready) < len(workers):
        left = deadline - time.monotonic()
        if left <= 0:
            raise WorkerFailed(
                f"{len(workers) - len(ready)} load worker(s) did not start within "
                f"{START_TIMEOUT_S:g} s (a busy machine? try fewer --processes)"
            )
        try:
            message = out.get(timeout=min(left, 0.5))
        except queue.Empty:
            _check_alive(workers, ready)
            continue
        if message[0] == "error":
            raise WorkerFailed(f"load worker {message[1]} failed: {message[2]}")
        if message[0] == "ready":
            ready.add(message[1])


def _check_alive(workers: list[Any], pending: set[int]) -> None:
    for index, worker in enumerate(workers):
        if index not in pending and not worker.is_alive():
            raise WorkerFailed(
                f"load worker {index} ended (exit code {worker.exitcode}) without its report"
            )


def _collect(
    plan: LoadPlan,
    workers: list[Any],
    out: multiprocessing.Queue[Any],
    started: float,
    cpu_started: tuple[float, float],
    progress: MergedProgress | None,
    interval: float,
) -> tuple[LoadReport, dict[str, str]]:
    live = LoadStats()
    failures: dict[int, dict[str, int]] = {}
    finals: dict[int, tuple[float, LoadReport, list[float], dict[str, str]]] = {}
    last_done, last_time = 0, started
    next_progress = started + interval
    dead_since: float | None = None
    while len(finals) < len(workers):
        now = time.monotonic()
        if progress is not None and now >= next_progress:
            live.failures = Counter()
            for counts in failures.values():
                live.failures.update(counts)
            done = live.succeeded + live.failed
            rate = (done - last_done) / (now - last_time) if now > last_time else 0.0
            last_done, last_time = done, now
            progress(live, rate, now - started)
            next_progress = now + interval
        try:
            message = out.get(timeout=max(0.01, min(next_progress - now, 0.5)))
        except queue.Empty:
            missing = {i for i in range(len(workers)) if i not in finals}
            if any(not workers[i].is_alive() for i in missing):
                # A worker ended; give its last message time to arrive through the queue.
                dead_since = dead_since if dead_since is not None else time.monotonic()
                if time.monotonic() - dead_since > DRAIN_TIMEOUT_S:
                    _check_alive(workers, set(finals))
            continue
        kind, index = message[0], message[1]
        if kind == "progress":
            live.latencies.extend(message[2])
            failures[index] = message[3]
        elif kind == "done":
            finals[index] = (message[2], message[3], message[4], message[5])
        elif kind == "error":
            raise WorkerFailed(f"load worker {index} failed: {message[2]}")
    parent_cpu = tuple(b - a for a, b in zip(cpu_started, _cpu(), strict=True))
    report, examples = merge_reports(plan, finals, started, (parent_cpu[0], parent_cpu[1]))
    if progress is not None:  # the last line: the totals
        final = LoadStats(failures=Counter(report.failures))
        for _, _, latencies, _ in finals.values():
            final.latencies.extend(latencies)
        progress(final, 0.0, report.elapsed_s)
    return report, examples


def merge_reports(
    plan: LoadPlan,
    finals: dict[int, tuple[float, LoadReport, list[float], dict[str, str]]],
    started: float,
    parent_cpu: tuple[float, float] = (0.0, 0.0),
) -> tuple[LoadReport, dict[str, str]]:
    """One report from the workers' (start time, report, latencies, examples)."""
    stats = LoadStats()
    examples: dict[str, str] = {}
    failures: Counter[str] = Counter()
    for _, report, latencies, worker_examples in finals.values():
        stats.latencies.extend(latencies)
        failures.update(report.failures)
        for reason, text in worker_examples.items():
            examples.setdefault(reason, text)
    reports = [report for _, report, _, _ in finals.values()]
    ended = max(begun + report.elapsed_s for begun, report, _, _ in finals.values())
    user = sum(r.cpu_user_s for r in reports) + parent_cpu[0]
    system = sum(r.cpu_sys_s for r in reports) + parent_cpu[1]
    helds = [r.held for r in reports if r.held is not None]
    merged = LoadReport(
        mode=reports[0].mode,
        attempted=sum(r.attempted for r in reports),
        succeeded=sum(r.succeeded for r in reports),
        failures=dict(failures),
        elapsed_s=max(ended - started, 0.0),
        cpu_s=user + system,
        cpu_user_s=user,
        cpu_sys_s=system,
        latency_ms=stats.latency_ms(),
        concurrency=plan.concurrency,
        rate=plan.rate,
        held=sum(helds) if helds else None,
        hold_s=plan.hold,
        refreshes=sum(r.refreshes for r in reports),
        rss_kib=sum(r.rss_kib for r in reports),
        rss_before_kib=sum(r.rss_before_kib for r in reports),
        nofile_limit=min(r.nofile_limit for r in reports),
        processes=len(reports),
    )
    return merged, examples
