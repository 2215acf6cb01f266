"""The shared command-line flags: names (a contract), mapping onto settings, import weight."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from sipua.errors import ConfigError
from sipua.settings.flags import add_common_flags, overrides_from_args, settings_from_args

ENV = {"HOME": "/home/test"}

# The flag names scripts and CI jobs use; renaming any of them breaks callers.
CONTRACT_FLAGS = (
    *("--config", "--account", "--aor", "--username", "--password-file", "--proxy"),
    *("--tls-name", "--trusted-cert", "--only-trusted", "--no-only-trusted", "--ca-type"),
    *("--cn-validation", "--no-cn-validation", "--allow-wildcards", "--device-cert", "--mac"),
    *("--listen", "--no-listen", "--expires", "--data-dir", "--log-format", "--trace"),
    *("--tls-min-version", "--ciphers", "--keylog-file", "--keepalive"),
    *("--servers-only", "--no-servers-only"),
    *("--srtp", "--symmetric-rtp", "--no-symmetric-rtp", "--media-ports"),
)


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(prog="sipua register")
    add_common_flags(result)
    return result


def parse(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


def test_contract_flag_names_exist() -> None:
    known = set(parser()._option_string_actions)
    assert [flag for flag in CONTRACT_FLAGS if flag not in known] == []


def test_nothing_given_means_no_overrides() -> None:
    assert overrides_from_args(parse()) == []


def test_registration_needs_nothing_but_flags(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret-pw\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    args = parse(
        "--aor", "sips:alice@example.test", "--username", "alice", "--password-file", str(pw),
        "--proxy", "127.0.0.1:5061", "--trusted-cert", str(ca),
    )  # fmt: skip
    settings = settings_from_args(args, ENV)
    (account,) = settings.accounts
    assert (account.aor, account.username, account.proxy) == (
        "sips:alice@example.test",
        "alice",
        "127.0.0.1:5061",
    )
    assert account.password is not None
    assert account.password.reveal() == "secret-pw"
    assert settings.tls.trusted_certs == (ca,)


def test_every_flag_reaches_its_setting(tmp_path: Path) -> None:
    cas = [tmp_path / "a.pem", tmp_path / "b.pem"]
    for ca in cas:
        ca.write_text("x")
    args = parse(
        "--aor", "sips:alice@example.test", "--account", "desk", "--username", "auth-alice",
        "--proxy", "[::1]:5062", "--tls-name", "reg.example.test", "--expires", "120",
        "--keepalive", "30", "--trusted-cert", str(cas[0]), "--trusted-cert", str(cas[1]),
        "--no-only-trusted", "--ca-type", "custom", "--no-cn-validation", "--allow-wildcards",
        "--device-cert", "custom", "--mac", "00:15:65:AA:BB:CC", "--listen", "[::]:0",
        "--data-dir", str(tmp_path), "--log-format", "json", "--log-level", "debug", "--trace",
        "--tls-min-version", "1.3", "--tls-max-version", "1.3", "--ciphers", "ECDHE+AESGCM",
        "--tls13-ciphers", "TLS_AES_128_GCM_SHA256", "--tls-groups", "X25519",
        "--keylog-file", str(tmp_path / "keys"),
    )  # fmt: skip
    settings = settings_from_args(args, ENV)
    (account,) = settings.accounts
    assert (account.name, account.username, account.proxy, account.tls_name) == (
        "desk",
        "auth-alice",
        "[::1]:5062",
        "reg.example.test",
    )
    assert (account.expires, account.keepalive_interval) == (120, 30.0)
    tls = settings.tls
    assert tls.trusted_certs == tuple(cas)
    assert (tls.only_trusted, tls.ca_type, tls.cn_validation, tls.allow_wildcards) == (
        False,
        "custom",
        False,
        True,
    )
    assert (tls.device_cert, tls.mac, tls.min_version, tls.max_version) == (
        "custom",
        "001565aabbcc",
        "1.3",
        "1.3",
    )
    assert (tls.ciphers, tls.keylog_file) == ("ECDHE+AESGCM", tmp_path / "keys")
    assert (tls.tls13_ciphers, tls.groups) == ("TLS_AES_128_GCM_SHA256", "X25519")
    assert (settings.listen.enabled, settings.listen.host, settings.listen.port) == (True, "::", 0)
    assert (settings.data_dir, settings.log_format, settings.log_level, settings.trace) == (
        tmp_path,
        "json",
        "debug",
        True,
    )


def test_flags_override_environment_and_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[accounts]]\naor = "sips:alice@example.test"\nexpires = 100\n')
    env = {**ENV, "SIPUA_EXPIRES": "200"}
    assert settings_from_args(parse("--config", str(config)), env).accounts[0].expires == 200
    args = parse("--config", str(config), "--expires", "300", "--no-listen")
    settings = settings_from_args(args, env)
    assert settings.accounts[0].expires == 300
    assert settings.listen.enabled is False


def test_listen_and_no_listen_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--listen", "127.0.0.1:5061", "--no-listen")
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--password", "hunter2"], ["--password=hunter2"]])
def test_password_flag_is_refused_without_echo(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # A password on the command line is visible to every user (ps, /proc): no flag takes it.
    with pytest.raises(SystemExit) as info:
        parse(*argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    # One line, as every sipua error is printed; not argparse's usage block.
    assert err.startswith("sipua: error: --password is not supported: "), err
    assert err.count("\n") == 1
    assert "usage:" not in err
    assert "hunter2" not in err


def test_no_account_is_an_error_unless_allowed() -> None:
    with pytest.raises(ConfigError, match=r"no account to use: pass --aor"):
        settings_from_args(parse(), ENV)
    assert settings_from_args(parse(), ENV, require_account=False).accounts == ()


def test_bad_flag_value_names_the_flag() -> None:
    args = parse("--aor", "sips:alice@example.test", "--expires", "soon")
    with pytest.raises(ConfigError, match=r"^--expires: expected an integer .*, got 'soon'$"):
        settings_from_args(args, ENV)


def test_flags_module_imports_only_the_standard_library() -> None:
    # The flags are built from the settings' declarations on every `--help`: neither the loader
    # nor the SIP core (which `sipua.errors` would bring) may come with them.
    code = (
        "import sys, argparse\n"
        "from sipua.settings.flags import add_common_flags\n"
        "add_common_flags(argparse.ArgumentParser())\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in "
        "('trio', 'OpenSSL', 'cryptography', 'dns', 'structlog', 'tomllib')"
        " or m.startswith(('sipua.settings.load', 'sipua.sip', 'sipua.errors'))]\n"
        "print(sorted(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_servers_only_flag_maps_onto_the_listen_setting() -> None:
    assert settings_from_args(
        parse("--servers-only"), ENV, require_account=False
    ).listen.servers_only
    off = settings_from_args(
        parse("--no-servers-only"), {**ENV, "SIPUA_SERVERS_ONLY": "1"}, require_account=False
    )
    assert off.listen.servers_only is False


def test_media_flags_and_environment_map_onto_their_settings(tmp_path: Path) -> None:
    aor = ("--aor", "sips:alice@example.test")
    defaults = settings_from_args(parse(*aor), ENV)
    assert (defaults.accounts[0].srtp, defaults.accounts[0].symmetric_rtp) == ("optional", True)
    assert defaults.media.port_range == (16384, 32767)
    flagged = settings_from_args(
        parse(*aor, "--srtp", "compulsory", "--no-symmetric-rtp", "--media-ports", "20000-20099"),
        {**ENV, "SIPUA_SRTP": "disabled", "SIPUA_MEDIA_PORTS": "30000-30001"},
    )
    assert (flagged.accounts[0].srtp, flagged.accounts[0].symmetric_rtp) == ("compulsory", False)
    assert flagged.media.port_range == (20000, 20099)
    from_env = settings_from_args(
        parse(*aor), {**ENV, "SIPUA_SRTP": "disabled", "SIPUA_MEDIA_PORTS": "30000-30001"}
    )
    assert (from_env.accounts[0].srtp, from_env.media.port_range) == ("disabled", (30000, 30001))
    config = tmp_path / "c.toml"
    config.write_text("[media]\nport_range = [40000, 40010]\n")
    assert settings_from_args(parse("--config", str(config), *aor), ENV).media.port_range == (
        40000,
        40010,
    )


@pytest.mark.parametrize("ports", ["100-200", "30000", "3-2-1", "40001-40001", "50000-40000"])
def test_bad_media_port_ranges_name_the_flag(ports: str) -> None:
    with pytest.raises(ConfigError, match="--media-ports: expected a port range"):
        settings_from_args(parse("--aor", "sips:a@example.test", "--media-ports", ports), ENV)
