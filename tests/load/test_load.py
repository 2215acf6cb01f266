"""`sipua load`: accounts, figures, and the engine against the test registrar over real TLS."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import pytest
import trio

from sipua.errors import ConfigError
from sipua.load.accounts import LoadAccount, csv_accounts, expand_users, pattern_accounts
from sipua.load.engine import RUN_GC_THRESHOLD, LoadPlan, LoadRun
from sipua.load.stats import LoadReport, LoadStats, percentile, progress_line
from sipua.settings.secret import Secret
from sipua.tls.connection.context import TlsClientConfig
from sipua.tls.trust.policy import TrustPolicy
from tests.support.registrar import Pki, TestRegistrar

# -- accounts ------------------------------------------------------------------------------------


def test_pattern_pads_to_the_width_of_the_lower_bound() -> None:
    assert expand_users("load{0000..0003}") == ["load0000", "load0001", "load0002", "load0003"]
    assert expand_users("u{8..11}x") == ["u8x", "u9x", "u10x", "u11x"]
    assert expand_users("alice") == ["alice"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a{1..2}b{1..2}", "only one"),
        ("a{5..1}", "goes down"),
        ("a{0..200000}", "at most"),
        ("bad user{1..2}", "not a valid SIP user name"),
    ],
)
def test_bad_patterns_are_refused_with_the_reason(pattern: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        expand_users(pattern)


def test_pattern_accounts_share_one_password_that_never_shows() -> None:
    accounts = pattern_accounts("u{1..2}", domain="example.test", password=Secret("pw1"))
    assert [a.aor for a in accounts] == ["sips:u1@example.test", "sips:u2@example.test"]
    assert "pw1" not in repr(accounts)
    with pytest.raises(ConfigError, match="domain"):
        pattern_accounts("u", domain="bad domain", password=None)


def test_csv_accounts_fill_password_and_aor(tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text(
        "username,password,aor\nann,ann-pw,\nbob,,sips:bob@other.test\n", encoding="utf-8"
    )
    ann, bob = csv_accounts(path, domain="example.test", password=Secret("default-pw"))
    assert ann.aor == "sips:ann@example.test"
    assert ann.password is not None
    assert ann.password.reveal() == "ann-pw"
    assert bob.aor == "sips:bob@other.test"
    assert bob.password is not None
    assert bob.password.reveal() == "default-pw"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user,password\nann,x\n", "username"),
        ("username\n", "no account rows"),
        ("username,aor\nann,sip:ann@example.test\n", "not a sips: URI"),
        ("username,aor\nann,sips:a%zzn@example.test\n", "line 2: aor .*only %-escaped"),
        ('username,aor\nann,"sips:""ann@example.test"\n', "line 2: aor .*only %-escaped"),
        ("username,password\n,secret-value\n", "line 2: empty username"),
    ],
)
def test_bad_csv_files_name_the_problem_without_passwords(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        csv_accounts(path, domain="example.test", password=None)
    assert "secret-value" not in str(info.value)


def test_csv_without_aor_needs_a_domain(tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text("username\nann\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="--domain"):
        csv_accounts(path, domain=None, password=None)


# -- figures -------------------------------------------------------------------------------------


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 50) == 0.0


def test_stats_progress_and_report_figures() -> None:
    stats = LoadStats()
    for ms in (10, 20, 30, 40):
        stats.success(ms / 1000)
    stats.failure("timeout")
    stats.failure("auth")
    stats.failure("timeout")
    line = progress_line(stats, total=10, elapsed=2.0, window_rate=3.0)
    assert line.startswith("7/10 in 2.0 s  3/s  p50 20.0 ms  p99 40.0 ms  ok 4")
    assert "timeout=2" in line
    assert "auth=1" in line
    report = LoadReport(
        mode="connection-per-account",
        attempted=7,
        succeeded=stats.succeeded,
        failures=dict(stats.failures),
        elapsed_s=2.0,
        cpu_s=0.5,
        latency_ms=stats.latency_ms(),
        concurrency=5,
        held=4,
        rss_kib=1400,
        rss_before_kib=1000,
    )
    document = report.to_json()
    assert document["registrations_per_s"] == 2.0
    assert document["succeeded"] == 4
    assert document["failed"] == {"total": 3, "by_reason": {"timeout": 2, "auth": 1}}
    assert document["cpu_ms_per_registration"] == 125.0
    assert document["rss_per_held_kib"] == 100.0
    assert document["latency_ms"]["p50"] == 20.0  # type: ignore[index]
    assert "4 of 7 registered" in report.summary()


def test_plan_refuses_nonsense() -> None:
    account = LoadAccount(aor="sips:a@example.test", username="a", password=None)
    tls = TlsClientConfig(server_name="example.test")
    with pytest.raises(ValueError, match="count"):
        LoadPlan(accounts=[account], host="127.0.0.1", port=1, tls=tls, count=0)
    with pytest.raises(ValueError, match="account"):
        LoadPlan(accounts=[], host="127.0.0.1", port=1, tls=tls, count=1)
    with pytest.raises(ValueError, match="rate"):
        LoadPlan(accounts=[account], host="127.0.0.1", port=1, tls=tls, count=1, rate=0)


# -- the engine against the test registrar --------------------------------------------------------

USERS = {f"load{i}": f"pw{i}" for i in range(6)}


def _plan(registrar: TestRegistrar, **changes: object) -> LoadPlan:
    accounts = [
        LoadAccount(aor=f"sips:{u}@example.test", username=u, password=Secret(p))
        for u, p in USERS.items()
    ]
    tls = TlsClientConfig(
        server_name="example.test",
        policy=TrustPolicy(accepted_ca="custom"),
        trusted=(registrar.pki.ca.cert,),
    )
    fields: dict[str, object] = {
        "accounts": accounts,
        "host": "127.0.0.1",
        "port": registrar.port,
        "tls": tls,
        "count": len(accounts),
        "concurrency": 3,
    }
    fields.update(changes)
    return LoadPlan(**fields)  # type: ignore[arg-type]


async def test_each_account_registers_over_its_own_verified_connection() -> None:
    async with TestRegistrar(users=dict(USERS)) as registrar:
        progress: list[int] = []
        run = LoadRun(
            _plan(registrar),
            progress=lambda stats, rate: progress.append(stats.succeeded),
            progress_interval=0.05,
        )
        with trio.fail_after(30):
            report = await run.run()
        assert report.succeeded == len(USERS), run.examples
        assert report.failures == {}
        assert registrar.connections == len(USERS)
        assert set(registrar.bindings) == set(USERS)
        # Digest: every account was challenged once, then sent credentials.
        assert len(registrar.registers) == 2 * len(USERS)
        assert report.latency_ms["p50"] > 0
        assert report.cpu_s > 0
        assert progress
        assert progress[-1] == len(USERS)


async def test_count_beyond_the_accounts_cycles_through_them() -> None:
    async with TestRegistrar(users=dict(USERS)) as registrar:
        with trio.fail_after(30):
            report = await LoadRun(_plan(registrar, count=9, rate=200.0)).run()
        assert report.succeeded == 9
        assert registrar.connections == 9


async def test_reuse_connection_sends_everything_over_one_connection() -> None:
    async with TestRegistrar(users=dict(USERS)) as registrar:
        with trio.fail_after(30):
            report = await LoadRun(_plan(registrar, reuse_connection=True, count=12)).run()
        assert report.mode == "reuse-connection"
        assert report.succeeded == 12
        assert registrar.connections == 1


async def test_a_run_collects_garbage_less_often_and_restores_the_collector() -> None:
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []

    def note(stats: LoadStats, rate: float) -> None:
        seen.append(gc.get_threshold())

    async with TestRegistrar(users=dict(USERS)) as registrar:
        with trio.fail_after(30):
            run = LoadRun(_plan(registrar, count=3), progress=note, progress_interval=0.01)
            report = await run.run()
    assert report.succeeded == 3
    assert seen
    assert seen[0][0] == RUN_GC_THRESHOLD
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_hold_keeps_every_binding_and_refreshes_it() -> None:
    async with TestRegistrar(users=dict(USERS)) as registrar:
        with trio.fail_after(30):
            report = await LoadRun(_plan(registrar, hold=1.5, expires=2)).run()
        assert report.held == len(USERS)
        # Granted 2 s, refreshed at the earliest after a quarter of it (refresh_delay).
        assert report.refreshes >= len(USERS)
        assert report.rss_kib > 0


@pytest.mark.parametrize("reuse", [False, True])
async def test_a_200_that_comes_with_the_close_counts(reuse: bool) -> None:
    # The registrar's 200 and its close_notify in one read: the 200 was thrown away and the
    # registration counted as connection-lost.
    async with TestRegistrar(users=dict(USERS), close_after_200=True) as registrar:
        with trio.fail_after(30):
            report = await LoadRun(_plan(registrar, count=1, reuse_connection=reuse)).run()
        assert report.succeeded == 1, report.failures


async def test_failures_are_counted_by_reason() -> None:
    users = dict(USERS)
    users["load0"] = "another password"
    async with TestRegistrar(users=users) as registrar:
        with trio.fail_after(30):
            report = await LoadRun(_plan(registrar)).run()
        assert report.succeeded == len(USERS) - 1
        assert report.failures == {"auth": 1}


async def test_an_untrusted_registrar_gets_no_sip_byte() -> None:
    async with TestRegistrar(users=dict(USERS)) as registrar:
        stranger = Pki.make()
        plan = _plan(
            registrar,
            tls=TlsClientConfig(
                server_name="example.test",
                policy=TrustPolicy(accepted_ca="custom"),
                trusted=(stranger.ca.cert,),
            ),
        )
        run = LoadRun(plan)
        with trio.fail_after(30):
            report = await run.run()
        assert report.failures == {"untrusted": len(USERS)}
        assert registrar.registers == []
        assert "not trusted" in run.examples["untrusted"]


async def test_an_alert_from_the_registrar_is_a_counted_failure_not_a_crashed_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # TLS 1.3: the client's handshake ends before the server judges a client certificate; a
    # registrar that refuses it sends an alert, which surfaces as TlsAlertReceived.
    from sipua.errors import TlsAlertReceived
    from sipua.load.raw_tls import RawTlsFlow

    async def refused(*args: object, **kwargs: object) -> RawTlsFlow:
        await trio.lowlevel.checkpoint()
        raise TlsAlertReceived("the server ended TLS with the alert 'unknown ca'")

    monkeypatch.setattr(RawTlsFlow, "open", refused)
    async with TestRegistrar(users=dict(USERS)) as registrar:
        run = LoadRun(_plan(registrar, count=3))
        with trio.fail_after(30):
            report = await run.run()
    assert report.failures == {"tls-alert": 3}
    assert "unknown ca" in run.examples["tls-alert"]


async def test_a_closed_port_counts_connect_failures() -> None:
    async with TestRegistrar(users=dict(USERS)) as registrar:
        port = registrar.port
    with trio.fail_after(30):
        report = await LoadRun(_plan(registrar, port=port, count=2)).run()
    assert report.failures == {"connect": 2}


# -- the command ---------------------------------------------------------------------------------


async def test_command_registers_a_pattern_and_writes_the_json_report(tmp_path: Path) -> None:
    users = {f"load{i:02d}": "same-pw" for i in range(4)}
    (tmp_path / "pw").write_text("same-pw\n")
    (tmp_path / "ca.pem").write_bytes(b"")
    async with TestRegistrar(users=users) as registrar:
        (tmp_path / "ca.pem").write_bytes(registrar.pki.ca.pem)
        argv = [
            sys.executable, "-m", "sipua", "load", "--users", "load{00..03}",
            "--domain", "example.test", "--password-file", str(tmp_path / "pw"),
            "--proxy", f"127.0.0.1:{registrar.port}", "--trusted-cert", str(tmp_path / "ca.pem"),
            "--ca-type", "custom", "--data-dir", str(tmp_path / "data"),
            "--concurrency", "2", "--json", str(tmp_path / "report.json"),
        ]  # fmt: skip
        with trio.fail_after(60):
            result = await trio.run_process(
                argv, capture_stdout=True, capture_stderr=True, check=False
            )
        assert result.returncode == 0, result.stderr.decode()
        assert set(registrar.bindings) == set(users), (
            result.stdout.decode(),
            [(r.to.uri, r.headers.get("Authorization") is not None) for r in registrar.registers],
        )
    out = result.stdout.decode()
    assert "4 of 4 registered" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["succeeded"] == 4
    assert report["failed"]["total"] == 0
    assert report["registrations_per_s"] > 0
    assert set(report["latency_ms"]) >= {"p50", "p90", "p99"}
    assert "cpu_s" in report
    assert "same-pw" not in out + result.stderr.decode()


async def test_command_exit_code_says_why_registrations_failed(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("wrong\n")
    async with TestRegistrar(users={"load0": "right"}) as registrar:
        (tmp_path / "ca.pem").write_bytes(registrar.pki.ca.pem)
        argv = [
            sys.executable, "-m", "sipua", "load", "--users", "load{0..0}",
            "--domain", "example.test", "--password-file", str(tmp_path / "pw"),
            "--proxy", f"127.0.0.1:{registrar.port}", "--trusted-cert", str(tmp_path / "ca.pem"),
            "--ca-type", "custom", "--data-dir", str(tmp_path / "data"), "--progress", "0",
        ]  # fmt: skip
        with trio.fail_after(60):
            result = await trio.run_process(
                argv, capture_stdout=True, capture_stderr=True, check=False
            )
    assert result.returncode == 4, result.stderr.decode()
    assert "auth" in result.stdout.decode() + result.stderr.decode()


def test_client_tls_config_follows_the_settings_and_the_load_flags(tmp_path: Path) -> None:
    from sipua.load.engine import client_tls_config
    from sipua.settings.model import Settings, TlsSettings
    from sipua.tls.trust.policy import TrustPolicy

    legacy = Settings(
        tls=TlsSettings(
            min_version="1.0",
            only_trusted=False,
            groups="X25519",
            tls13_ciphers="TLS_AES_128_GCM_SHA256",
        ),
        data_dir=tmp_path,
    )
    config = client_tls_config(legacy, "example.com")
    # The same policy the user agent applies, legacy opt-in included.
    assert config.policy == TrustPolicy.from_settings(legacy.tls)
    assert config.policy is not None
    assert config.policy.allow_weak_crypto
    assert config.protocol.groups == "X25519"
    assert config.protocol.tls13_ciphersuites == "TLS_AES_128_GCM_SHA256"
    default = client_tls_config(Settings(data_dir=tmp_path), "example.com")
    assert default.protocol.groups is None
    assert default.protocol.tls13_ciphersuites is None
    assert default.policy is not None
    assert not default.policy.allow_weak_crypto
