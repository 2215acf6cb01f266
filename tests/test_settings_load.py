"""The loader: file, environment and overrides, precedence, and errors that name the culprit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sipua.errors import ConfigError
from sipua.settings.load import ENV_VARS, Override, load_settings, overrides_from_env

ENV = {"HOME": "/home/test"}


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def secret_file(tmp_path: Path, value: str = "pw-from-file", name: str = "pw") -> Path:
    path = tmp_path / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


ALICE = '[[accounts]]\naor = "sips:alice@example.test"\n'


def test_no_file_no_flags_gives_defaults() -> None:
    settings = load_settings(env=ENV)
    assert settings.accounts == ()
    assert settings.data_dir == Path("/home/test/.local/share/sipua")
    assert settings.config_warnings == ()


def test_flags_alone_define_an_account(tmp_path: Path) -> None:
    pw = secret_file(tmp_path)
    settings = load_settings(
        env=ENV,
        overrides=[
            Override("account.aor", "sips:alice@example.test", "--aor"),
            Override("account.password_file", str(pw), "--password-file"),
            Override("account.proxy", "127.0.0.1:5061", "--proxy"),
        ],
    )
    (account,) = settings.accounts
    assert (account.name, account.username, account.proxy) == ("alice", "alice", "127.0.0.1:5061")
    assert account.password is not None
    assert account.password.reveal() == "pw-from-file"


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    config = write(tmp_path, ALICE + "expires = 100\n[tls]\nca_type = 'custom'\n")
    assert load_settings(config, env=ENV).accounts[0].expires == 100
    env = {**ENV, "SIPUA_EXPIRES": "200", "SIPUA_CA_TYPE": "default"}
    from_env = load_settings(config, env=env)
    assert (from_env.accounts[0].expires, from_env.tls.ca_type) == (200, "default")
    flags = [Override("account.expires", "300", "--expires")]
    from_flags = load_settings(config, env=env, overrides=flags)
    assert (from_flags.accounts[0].expires, from_flags.tls.ca_type) == (300, "default")


def test_lists_from_flags_replace_the_file_list(tmp_path: Path) -> None:
    for name in ("a.pem", "b.pem", "c.pem"):
        (tmp_path / name).write_text("x")
    config = write(tmp_path, '[tls]\ntrusted_certs = ["a.pem", "b.pem"]\n')
    from_file = load_settings(config, env=ENV)
    # Relative paths in the file are relative to the file.
    assert from_file.tls.trusted_certs == (tmp_path / "a.pem", tmp_path / "b.pem")
    env = {**ENV, "SIPUA_TRUSTED_CERTS": f"{tmp_path / 'a.pem'}{os.pathsep}{tmp_path / 'c.pem'}"}
    assert load_settings(config, env=env).tls.trusted_certs == (
        tmp_path / "a.pem",
        tmp_path / "c.pem",
    )
    flags = [Override("tls.trusted_certs", [str(tmp_path / "c.pem")], "--trusted-cert")]
    assert load_settings(config, env=env, overrides=flags).tls.trusted_certs == (
        tmp_path / "c.pem",
    )


def test_error_names_file_key_expectation_and_value(tmp_path: Path) -> None:
    config = write(tmp_path, ALICE + 'expires = "soon"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config, env=ENV)
    assert str(info.value) == (
        f"{config}: accounts[0].expires: expected an integer from 1 to 4294967295 "
        "(0 would remove the registration at once; sipua unregisters by itself when it stops), "
        "got 'soon'"
    )
    assert info.value.exit_code == 2


@pytest.mark.parametrize("written", ["expires = 0\n", "expires = -5\n", "expires = 4294967296\n"])
def test_a_registration_lifetime_of_0_is_refused_not_sent(tmp_path: Path, written: str) -> None:
    # Expires: 0 in a REGISTER asks the registrar to remove the binding (RFC 3261 §10.2.2).
    with pytest.raises(ConfigError, match=r"expires: expected an integer from 1 .*0 would remove"):
        load_settings(write(tmp_path, ALICE + written), env=ENV)
    assert load_settings(write(tmp_path, ALICE + "expires = 1\n"), env=ENV).accounts[0].expires == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[tls]\nonly_trused = false\n",
            r"tls: unknown setting 'only_trused'; did you mean 'only_trusted'\?",
        ),
        ("log_formt = 'json'\n", r"unknown setting 'log_formt'; did you mean 'log_format'\?"),
        (
            ALICE + "expirse = 5\n",
            r"accounts\[0\]: unknown setting 'expirse'; did you mean 'expires'\?",
        ),
        ("zzz = 1\n", r"unknown setting 'zzz'; known keys: accounts, certificates, data_dir"),
        ("tls = 1\n", r"tls: expected a table \(\[tls\]\), got 1"),
        ("[accounts]\naor = 'x'\n", r"accounts: expected an array of tables"),
        ("[tls]\nonly_trusted = 'no'\n", r"tls.only_trusted: expected true or false, got 'no'"),
        ("[tls]\nca_type = 'some'\n", r"tls.ca_type: expected one of 'default', 'custom', 'all'"),
        ("[tls]\nmin_version = 1.25\n", r"tls.min_version: expected one of '1.0'"),
        ("[tls]\nmac = 'nope'\n", r"tls.mac: expected a MAC address"),
        ("[tls]\nhandshake_timeout = 0\n", r"handshake_timeout: expected a number of seconds > 0"),
        ("[tls]\nhandshake_timeout = nan\n", r"handshake_timeout: expected a number of seconds"),
        (
            "[tls]\ntrusted_certs = ['missing.pem']\n",
            r"^.*config.toml: tls.trusted_certs: the certificate file '.*/missing.pem' does not "
            r"exist; give the path of a CA certificate file \(PEM or DER\)$",
        ),
        ("[tls]\ntrusted_certs = ['.']\n", r"tls.trusted_certs: '.*' is not a file; give the"),
        ("[tls]\ntrusted_certs = 'a.pem'\n", r"expected a list of certificate files"),
        ("[listen]\nhost = 'example.test'\n", r"listen.host: expected an IP address to listen on"),
        ("[listen]\nport = 65536\n", r"listen.port: expected an integer from 0 to 65535"),
        ("[listen]\nport = true\n", r"listen.port: expected an integer from 0 to 65535, got true"),
        (
            ALICE + "proxy = '::1'\n",
            r"proxy: expected HOST\[:PORT\] \(put the IPv6 address in brackets: \[::1\]",
        ),
        (ALICE + "tls_name = 'a.test:5061'\n", r"tls_name: expected a host name"),
        (ALICE + "answer = 'maybe'\n", r"answer: expected one of 'accept', 'busy', 'decline'"),
        (ALICE + "instance_id = 'x'\n", r"instance_id: expected a UUID URN"),
        (ALICE + "name = 'has space'\n", r"name: expected a name of letters"),
        ('[[accounts]]\naor = "alice@example.test"\n', r"aor: expected a SIP address of record"),
        ('[[accounts]]\naor = "sips:a@bad_host"\n', r"aor: expected .* valid host \('bad_host'"),
        # The core's URI grammar: what the settings take, every message sipua builds can carry.
        ("[[accounts]]\naor = 'sips:\"alice@example.test'\n", r"aor: .*user part '\"alice'"),
        ('[[accounts]]\naor = "sips:al%zzice@example.test"\n', r"aor: .*only %-escaped"),
        ('[[accounts]]\naor = "sips:alicé@example.test"\n', r"aor: .*only %-escaped"),
        ("[[accounts]]\nexpires = 5\n", r"accounts\[0\]: set name or aor"),
        (ALICE + ALICE, r"accounts\[1\]: another account is also called 'alice'"),
        ("[tls]\nmin_version = '1.3'\nmax_version = '1.2'\n", r"max_version: TLS 1.2 is below"),
        ("x = 1\ny = = 2\n", r"not valid TOML: .*line 2"),
    ],
)
def test_file_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "a.pem").write_text("x")
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text), env=ENV)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.toml: no such configuration file; check --config"):
        load_settings(tmp_path / "nope.toml", env=ENV)
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(tmp_path / "bin.toml", env=ENV)


def test_env_and_flag_errors_name_the_variable_or_flag(tmp_path: Path) -> None:
    config = write(tmp_path, ALICE)
    with pytest.raises(ConfigError, match=r"^SIPUA_EXPIRES: expected an integer .*, got 'soon'$"):
        load_settings(config, env={**ENV, "SIPUA_EXPIRES": "soon"})
    with pytest.raises(ConfigError, match=r"^--listen: expected an IP address to listen on"):
        load_settings(config, env=ENV, overrides=[Override("listen.address", "a.test", "--listen")])
    with pytest.raises(ConfigError, match=r"^SIPUA_TRACE: expected one of true/false"):
        load_settings(config, env={**ENV, "SIPUA_TRACE": "maybe"})


@pytest.mark.parametrize(
    ("word", "value"), [("1", True), ("yes", True), ("Off", False), ("0", False)]
)
def test_env_booleans(word: str, value: bool) -> None:
    assert load_settings(env={**ENV, "SIPUA_TRACE": word}).trace is value


def test_env_numbers_and_text() -> None:
    env = {
        **ENV,
        "SIPUA_AOR": "sips:bob@example.test",
        "SIPUA_USERNAME": "bob-auth",
        "SIPUA_KEEPALIVE": "25.5",
        "SIPUA_LISTEN": "[::]:5071",
        "SIPUA_MAC": "00-15-65-AA-BB-CC",
        "SIPUA_TLS_MIN_VERSION": "TLSv1.3",
        "SIPUA_INSTANCE_ID": "8E1C9A4E-4A43-4B8E-9A52-6A1C4C7F3B21",
        "SIPUA_DATA_DIR": "~/state",
        "SIPUA_LOG_FORMAT": "json",
        "SIPUA_TLS13_CIPHERS": "TLS_CHACHA20_POLY1305_SHA256",
        "SIPUA_TLS_GROUPS": "X25519:P-256",
    }
    settings = load_settings(env=env)
    (account,) = settings.accounts
    assert (account.name, account.username, account.keepalive_interval) == ("bob", "bob-auth", 25.5)
    assert account.instance_id == "urn:uuid:8e1c9a4e-4a43-4b8e-9a52-6a1c4c7f3b21"
    assert (settings.listen.host, settings.listen.port) == ("::", 5071)
    assert (settings.tls.mac, settings.tls.min_version) == ("001565aabbcc", "1.3")
    assert settings.data_dir == Path("~/state").expanduser()
    assert settings.log_format == "json"
    assert (settings.tls.tls13_ciphers, settings.tls.groups) == (
        "TLS_CHACHA20_POLY1305_SHA256",
        "X25519:P-256",
    )


def test_groups_with_spaces_are_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="SIPUA_TLS_GROUPS"):
        load_settings(env={**ENV, "SIPUA_TLS_GROUPS": "X25519 P-256"})


def test_listener_admission_settings_from_file_env_and_flag(tmp_path: Path) -> None:
    config = tmp_path / "sipua.toml"
    config.write_text(
        "[listen]\nmax_connections_per_address = 4\nhandshake_timeout = 2.5\nservers_only = true\n"
    )
    from_file = load_settings(config, env=ENV).listen
    assert (from_file.max_connections_per_address, from_file.handshake_timeout) == (4, 2.5)
    assert from_file.servers_only is True
    env = {
        **ENV,
        "SIPUA_MAX_CONNECTIONS_PER_ADDRESS": "2",
        "SIPUA_LISTEN_HANDSHAKE_TIMEOUT": "1",
        "SIPUA_SERVERS_ONLY": "off",
    }
    from_env = load_settings(config, env=env).listen
    assert (from_env.max_connections_per_address, from_env.handshake_timeout) == (2, 1.0)
    assert from_env.servers_only is False
    flag = Override("listen.servers_only", True, "--servers-only/--no-servers-only")
    assert load_settings(config, env=env, overrides=[flag]).listen.servers_only is True
    with pytest.raises(ConfigError, match=r"SIPUA_MAX_CONNECTIONS_PER_ADDRESS: expected an int"):
        load_settings(env={**ENV, "SIPUA_MAX_CONNECTIONS_PER_ADDRESS": "0"})
    with pytest.raises(ConfigError, match=r"SIPUA_LISTEN_HANDSHAKE_TIMEOUT: expected a number"):
        load_settings(env={**ENV, "SIPUA_LISTEN_HANDSHAKE_TIMEOUT": "0"})


def test_listen_flags() -> None:
    host_only = load_settings(
        env=ENV, overrides=[Override("listen.address", "0.0.0.0", "--listen")]
    )
    assert (host_only.listen.host, host_only.listen.port) == ("0.0.0.0", 0)
    off = load_settings(env=ENV, overrides=[Override("listen.enabled", False, "--no-listen")])
    assert off.listen.enabled is False


def test_empty_env_variables_count_as_unset() -> None:
    assert load_settings(env={**ENV, "SIPUA_LOG_FORMAT": ""}).log_format == "console"


def test_env_typo_is_a_warning_not_an_error() -> None:
    overrides, warnings = overrides_from_env({"SIPUA_EXPIRE": "5", "SIPUA_INTEROP": "1"})
    assert overrides == []
    assert warnings == ["environment variable SIPUA_EXPIRE is not a sipua setting; SIPUA_EXPIRES?"]


def test_every_env_variable_maps_to_a_setting() -> None:
    # Each documented variable must be accepted by the loader (a valid value for each).
    for name, key in ENV_VARS.items():
        overrides, _ = overrides_from_env({name: "x"})
        assert overrides == [Override(key, "x", name)]


# --- passwords -----------------------------------------------------------------------------------


def test_password_from_file_env_and_literal(tmp_path: Path) -> None:
    pw = secret_file(tmp_path)
    by_file = write(tmp_path, ALICE + 'password_file = "pw"\n', "a.toml")
    by_env = write(tmp_path, ALICE + 'password_env = "ALICE_PW"\n', "b.toml")
    literal = write(tmp_path, ALICE + 'password = "pw-literal"\n', "c.toml")
    assert pw.exists()

    def password(path: Path, env: dict[str, str]) -> str:
        secret = load_settings(path, env=env).accounts[0].password
        assert secret is not None
        return secret.reveal()

    assert password(by_file, ENV) == "pw-from-file"
    assert password(by_env, {**ENV, "ALICE_PW": "pw-env"}) == "pw-env"
    assert password(literal, ENV) == "pw-literal"
    # Environment beats the file, flags beat the environment.
    assert password(literal, {**ENV, "SIPUA_PASSWORD": "pw-sipua-env"}) == "pw-sipua-env"
    other = secret_file(tmp_path, "pw-flag", "other")
    flag = Override("account.password_file", str(other), "--password-file")
    settings = load_settings(literal, env={**ENV, "SIPUA_PASSWORD": "x"}, overrides=[flag])
    assert settings.accounts[0].password is not None
    assert settings.accounts[0].password.reveal() == "pw-flag"


def test_password_errors_never_quote_the_password(tmp_path: Path) -> None:
    two = write(tmp_path, ALICE + 'password = "pw-two-1"\npassword_env = "X"\n', "two.toml")
    with pytest.raises(ConfigError, match="set only one of password") as info:
        load_settings(two, env=ENV)
    assert "pw-two-1" not in str(info.value)
    number = write(tmp_path, ALICE + "password = 123456\n", "num.toml")
    with pytest.raises(ConfigError, match=r"accounts\[0\].password: expected a non-empty string$"):
        load_settings(number, env=ENV)
    missing_env = write(tmp_path, ALICE + 'password_env = "NOPE"\n', "env.toml")
    with pytest.raises(ConfigError, match=r"password_env: environment variable NOPE is not set"):
        load_settings(missing_env, env=ENV)
    missing_file = write(tmp_path, ALICE + 'password_file = "nope"\n', "file.toml")
    with pytest.raises(ConfigError, match=r"accounts\[0\].password_file: password file .*nope"):
        load_settings(missing_file, env=ENV)
    both_env = {**ENV, "SIPUA_PASSWORD": "x", "SIPUA_PASSWORD_FILE": "y"}
    with pytest.raises(ConfigError, match="give only one"):
        load_settings(env=both_env)


def test_world_readable_password_warns(tmp_path: Path) -> None:
    config = write(tmp_path, ALICE + 'password = "pw"\n')
    assert load_settings(config, env=ENV).config_warnings == ()
    config.chmod(0o644)
    (warning,) = load_settings(config, env=ENV).config_warnings
    assert "other users can read it" in warning
    assert "chmod o-r" in warning
    pw = secret_file(tmp_path)
    pw.chmod(0o644)
    flag = [Override("account.password_file", str(pw), "--password-file")]
    settings = load_settings(env={**ENV, "SIPUA_AOR": "sips:a@b.test"}, overrides=flag)
    assert settings.config_warnings == (
        f"password file {pw} can be read by other users; run `chmod 600 {pw}`",
    )


def test_risky_settings_warn(tmp_path: Path) -> None:
    env = {**ENV, "SIPUA_KEYLOG_FILE": str(tmp_path / "keys"), "SIPUA_ONLY_TRUSTED": "no"}
    warnings = load_settings(env=env).config_warnings
    assert any("key logging is on" in w for w in warnings)
    assert any("only_trusted is off" in w for w in warnings)


# --- accounts ------------------------------------------------------------------------------------

TWO = (
    '[[accounts]]\nname = "alice"\naor = "sips:alice@example.test"\nexpires = 100\n'
    '[[accounts]]\naor = "sips:bob@example.test"\n'
)


def test_all_accounts_without_a_selection(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, TWO), env=ENV)
    assert [a.name for a in settings.accounts] == ["alice", "bob"]


def test_selection_returns_one_account_with_overrides(tmp_path: Path) -> None:
    config = write(tmp_path, TWO)
    flags = [Override("account.expires", "60", "--expires")]
    settings = load_settings(config, env=ENV, overrides=flags, account="bob")
    assert [(a.name, a.expires) for a in settings.accounts] == [("bob", 60)]
    from_env = load_settings(config, env={**ENV, "SIPUA_ACCOUNT": "alice"})
    assert [(a.name, a.expires) for a in from_env.accounts] == [("alice", 100)]


def test_account_flags_need_a_selection_when_the_file_has_several(tmp_path: Path) -> None:
    flags = [Override("account.expires", "60", "--expires")]
    with pytest.raises(
        ConfigError, match=r"--expires applies to one account, .* has 2 \(alice, bob\)"
    ):
        load_settings(write(tmp_path, TWO), env=ENV, overrides=flags)


def test_unknown_account(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no account named 'bobb' in .*; did you mean 'bob'\?"):
        load_settings(write(tmp_path, TWO), env=ENV, account="bobb")
    with pytest.raises(ConfigError, match=r"no account named 'x' \(no configuration file given\)"):
        load_settings(env=ENV, account="x")


def test_selection_can_name_a_flag_account(tmp_path: Path) -> None:
    flags = [Override("account.aor", "sips:carol@example.test", "--aor")]
    settings = load_settings(write(tmp_path, TWO), env=ENV, overrides=flags, account="desk-1")
    assert [(a.name, a.aor) for a in settings.accounts] == [("desk-1", "sips:carol@example.test")]


def test_account_without_aor(tmp_path: Path) -> None:
    flags = [Override("account.username", "u", "--username")]
    with pytest.raises(ConfigError, match=r"has no address of record; pass --aor"):
        load_settings(env=ENV, overrides=flags)
    named = write(tmp_path, '[[accounts]]\nname = "desk"\n')
    with pytest.raises(ConfigError, match=r"account 'desk' has no address of record; set aor in"):
        load_settings(named, env=ENV)
    # The aor may come from the environment for a file account that lacks it.
    settings = load_settings(named, env={**ENV, "SIPUA_AOR": "sips:d@example.test"})
    assert settings.accounts[0].name == "desk"
