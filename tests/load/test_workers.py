"""`sipua load --processes`: sharding, merging, and a sharded run against the test registrar."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trio

from sipua.load.accounts import LoadAccount
from sipua.load.engine import LoadPlan
from sipua.load.stats import LoadReport
from sipua.load.workers import MAX_PROCESSES, merge_reports, process_count, shard
from sipua.settings.secret import Secret
from sipua.tls.connection.context import TlsClientConfig
from tests.support.registrar import TestRegistrar


def _plan(accounts: int, **changes: object) -> LoadPlan:
    fields: dict[str, object] = {
        "accounts": [
            LoadAccount(aor=f"sips:u{i}@example.test", username=f"u{i}", password=Secret("pw"))
            for i in range(accounts)
        ],
        "host": "127.0.0.1",
        "port": 5061,
        "tls": TlsClientConfig(server_name="example.test"),
        "count": accounts,
        "concurrency": 50,
    }
    fields.update(changes)
    return LoadPlan(**fields)  # type: ignore[arg-type]


def _one_process_order(plan: LoadPlan) -> list[str]:
    return [plan.accounts[j % len(plan.accounts)].username for j in range(plan.count)]


def _sharded_order(plan: LoadPlan, processes: int) -> list[str]:
    """What the workers run, put back in the one-process order (j = i + k*n)."""
    shards = shard(plan, processes)
    n = len(shards)
    order = [""] * plan.count
    for i, fields in enumerate(shards):
        accounts = fields["accounts"]
        for k in range(fields["count"]):
            order[i + k * n] = accounts[k % len(accounts)].username
    return order


@pytest.mark.parametrize(
    ("accounts", "count", "processes"),
    [(6, 6, 2), (6, 6, 4), (5, 12, 2), (1, 7, 3), (4, 10, 6), (3, 2, 8), (10, 1000, 4)],
)
def test_shards_run_exactly_the_registrations_of_one_process(
    accounts: int, count: int, processes: int
) -> None:
    plan = _plan(accounts, count=count)
    assert _sharded_order(plan, processes) == _one_process_order(plan)
    shards = shard(plan, processes)
    assert len(shards) == min(processes, count)
    assert sum(s["count"] for s in shards) == count
    assert all(s["accounts"] for s in shards)


def test_concurrency_and_rate_are_split_so_the_registrar_sees_the_same_load() -> None:
    shards = shard(_plan(10, concurrency=51, rate=100.0), 4)
    assert sorted(s["concurrency"] for s in shards) == [12, 13, 13, 13]
    assert sum(s["rate"] for s in shards) == pytest.approx(100.0)
    assert {s["host"] for s in shards} == {"127.0.0.1"}
    assert all("tls" not in s for s in shards)  # rebuilt in each worker from the settings


def test_process_count() -> None:
    assert process_count("3") == 3
    assert process_count("auto", cores=2) == 2
    assert process_count("auto") >= 1
    for bad in ("0", "-1", "x", str(MAX_PROCESSES + 1)):
        with pytest.raises(ValueError):
            process_count(bad)


def _report(succeeded: int, elapsed: float, **changes: object) -> LoadReport:
    fields: dict[str, object] = {
        "mode": "connection-per-account",
        "attempted": succeeded,
        "succeeded": succeeded,
        "failures": {},
        "elapsed_s": elapsed,
        "cpu_s": 1.5,
        "cpu_user_s": 1.0,
        "cpu_sys_s": 0.5,
        "latency_ms": {},
        "concurrency": 25,
        "rss_kib": 1000,
        "nofile_limit": 1024,
    }
    fields.update(changes)
    return LoadReport(**fields)  # type: ignore[arg-type]


def test_merged_report_sums_counts_and_cpu_and_takes_percentiles_of_all_samples() -> None:
    plan = _plan(4, count=5)
    finals = {
        0: (
            100.0,
            _report(2, 2.0, failures={"auth": 1}, attempted=3),
            [0.001, 0.002],
            {"auth": "a"},
        ),
        1: (100.5, _report(2, 3.0, nofile_limit=512), [0.003, 0.100], {}),
    }
    report, examples = merge_reports(plan, finals, started=100.0, parent_cpu=(0.25, 0.0))
    assert report.processes == 2
    assert report.attempted == 5
    assert report.succeeded == 4
    assert report.failures == {"auth": 1}
    assert report.elapsed_s == pytest.approx(3.5)  # the common start to the last worker's end
    assert report.cpu_s == pytest.approx(3.25)  # both workers and the parent
    assert report.cpu_user_s == pytest.approx(2.25)
    assert report.latency_ms["p50"] == pytest.approx(2.0)
    assert report.latency_ms["max"] == pytest.approx(100.0)
    assert report.concurrency == 50  # what was asked, not one worker's share
    assert report.rss_kib == 2000
    assert report.nofile_limit == 512
    assert examples == {"auth": "a"}
    assert report.to_json()["processes"] == 2
    assert "2 processes" in report.summary()


async def test_command_shards_over_processes_and_merges_one_report(tmp_path: Path) -> None:
    users = {f"load{i:02d}": "same-pw" for i in range(6)}
    users["load05"] = "another"  # one failure, counted once in the merged report
    (tmp_path / "pw").write_text("same-pw\n")
    async with TestRegistrar(users=users) as registrar:
        (tmp_path / "ca.pem").write_bytes(registrar.pki.ca.pem)
        argv = [
            sys.executable, "-m", "sipua", "load", "--users", "load{00..05}",
            "--domain", "example.test", "--password-file", str(tmp_path / "pw"),
            "--proxy", f"127.0.0.1:{registrar.port}", "--trusted-cert", str(tmp_path / "ca.pem"),
            "--ca-type", "custom", "--data-dir", str(tmp_path / "data"), "--processes", "2",
            "--concurrency", "2", "--progress", "0.2", "--json", str(tmp_path / "report.json"),
        ]  # fmt: skip
        with trio.fail_after(90):
            result = await trio.run_process(
                argv, capture_stdout=True, capture_stderr=True, check=False
            )
        assert registrar.connections == 6
        assert set(registrar.bindings) == set(users) - {"load05"}
    assert result.returncode == 4, result.stderr.decode()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["processes"] == 2
    assert report["attempted"] == 6
    assert report["succeeded"] == 5
    assert report["failed"]["by_reason"] == {"auth": 1}
    assert report["cpu_s"] > 0
    assert "load05" in report["failure_examples"]["auth"]
    out = result.stdout.decode()
    assert "5 of 6 registered" in out
    assert "2 processes" in out
    # One merged live line per interval, ending with the totals.
    lines = [line for line in result.stderr.decode().splitlines() if "/6 in " in line]
    assert lines
    assert lines[-1].startswith("6/6 ")
    assert "same-pw" not in out + result.stderr.decode()
