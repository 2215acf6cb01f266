"""The settings declarations: each setting declared once, and every source derived from it.

Each declared setting is given once through the configuration file, once through its
environment variable and once through its flag, and must reach the same model value each way;
every key, variable and flag exists once; and a wrong value or an unknown key is refused naming
the file and the key.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import re
from pathlib import Path

import pytest

from sipua.cli import build_parser, main
from sipua.errors import ConfigError
from sipua.settings import model
from sipua.settings.flags import add_common_flags, overrides_from_args, settings_from_args
from sipua.settings.load import Override, load_settings, setting_value
from sipua.settings.model import ALTERNATIVES, SECTIONS, SETTINGS, Settings
from sipua.settings.schema import Setting, declared
from sipua.settings.values import choices_of

ENV = {"HOME": "/home/test"}
PIN = "sha256/" + base64.b64encode(bytes(range(32))).decode()
BASE_AOR = "sips:base@example.test"

#: A value for each setting: (in the file, as text for the environment and flags, in the model).
#: "FILE" stands for a password file the test writes, "CERT" for a certificate file.
SAMPLES: dict[str, tuple[object, str | None, object]] = {
    "data_dir": ("/srv/sipua", "/srv/sipua", Path("/srv/sipua")),
    "log_format": ("json", "json", "json"),
    "log_level": ("debug", "debug", "debug"),
    "trace": (True, "yes", True),
    "account.name": ("desk", None, "desk"),
    "account.aor": (
        "sips:carol@example.test",
        "sips:carol@example.test",
        "sips:carol@example.test",
    ),
    "account.username": ("auth-1", "auth-1", "auth-1"),
    "account.password": ("pw-literal", "pw-literal", "pw-literal"),
    "account.proxy": ("[::1]:5062", "[::1]:5062", "[::1]:5062"),
    "account.tls_name": ("reg.example.test", "reg.example.test", "reg.example.test"),
    "account.expires": (120, "120", 120),
    "account.register": (False, "no", False),
    "account.keepalive_interval": (30.5, "30.5", 30.5),
    "account.instance_id": (
        "urn:uuid:8e1c9a4e-4a43-4b8e-9a52-6a1c4c7f3b21",
        "8E1C9A4E-4A43-4B8E-9A52-6A1C4C7F3B21",
        "urn:uuid:8e1c9a4e-4a43-4b8e-9a52-6a1c4c7f3b21",
    ),
    "account.auto_answer_delay": (0, "0", 0.0),
    "account.answer": ("busy", "busy", "busy"),
    "account.srtp": ("compulsory", "compulsory", "compulsory"),
    "account.symmetric_rtp": (False, "off", False),
    "account.pins": ([PIN], PIN, (PIN,)),
    "account.trust_on_first_use": (True, "1", True),
    "account.password_file": ("FILE", "FILE", "pw-from-file"),
    "account.password_env": ("MY_SIPUA_PW", None, "pw-from-env"),
    "tls.trusted_certs": (["CERT"], "CERT", ("CERT",)),
    "tls.only_trusted": (False, "false", False),
    "tls.ca_type": ("custom", "custom", "custom"),
    "tls.cn_validation": (False, "0", False),
    "tls.allow_wildcards": (True, "on", True),
    "tls.device_cert": ("generic", "generic", "generic"),
    "tls.mac": ("00:15:65:AA:BB:CC", "00-15-65-aa-bb-cc", "001565aabbcc"),
    "tls.min_version": ("1.3", "TLSv1.3", "1.3"),
    "tls.max_version": ("1.3", "1.3", "1.3"),
    "tls.ciphers": ("ECDHE+AESGCM", "ECDHE+AESGCM", "ECDHE+AESGCM"),
    "tls.tls13_ciphers": (
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_128_GCM_SHA256",
    ),
    "tls.groups": ("X25519", "X25519", "X25519"),
    "tls.keylog_file": ("/tmp/sipua-keys.log", "/tmp/sipua-keys.log", Path("/tmp/sipua-keys.log")),
    "tls.handshake_timeout": (5, "5", 5.0),
    "tls.verify_client": ("require", "require", "require"),
    "listen.enabled": (False, "false", False),
    "listen.host": ("::", None, "::"),
    "listen.port": (5070, None, 5070),
    "listen.address": (None, "[::]:5071", ("::", 5071)),
    "listen.max_connections": (10, "10", 10),
    "listen.max_connections_per_address": (2, "2", 2),
    "listen.handshake_timeout": (1.5, "1.5", 1.5),
    "listen.idle_timeout": (60, "60", 60.0),
    "listen.servers_only": (True, "yes", True),
    "media.port_range": ([20000, 20099], "20000-20099", (20000, 20099)),
    "certificates.expiry_warning_days": (7, "7", 7),
    "certificates.check_interval": (60, "60", 60.0),
    "certificates.trusted_certificates_url": (
        "https://prov.example.test/ca.pem",
        "https://prov.example.test/ca.pem",
        "https://prov.example.test/ca.pem",
    ),
    "certificates.trusted_certificates_delete": (True, "true", True),
    "certificates.server_certificates_url": (
        "file:///etc/sipua/device.pem",
        "file:///etc/sipua/device.pem",
        "file:///etc/sipua/device.pem",
    ),
    "certificates.server_certificates_delete": (True, "1", True),
    "certificates.provision_interval": (600, "600", 600.0),
    "certificates.allow_http": (True, "yes", True),
}


def test_every_declared_setting_has_a_sample() -> None:
    assert sorted(SAMPLES) == sorted(declared.key for declared in SETTINGS)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(value)


def _files(tmp_path: Path, value: object) -> object:
    """The sample with "FILE" replaced by a real file (a password or a certificate)."""
    secret = tmp_path / "pw"
    secret.write_text("pw-from-file\n")
    secret.chmod(0o600)
    cert = tmp_path / "ca.pem"
    cert.write_text("not parsed by the loader")
    if value == "FILE":
        return str(secret)
    if value == "CERT":
        return str(cert)
    if value == ["CERT"]:
        return [str(cert)]
    if value == ("CERT",):
        return (cert,)
    return value


def _model_value(settings: Settings, declared: Setting) -> object:
    if declared.key == "listen.address":
        return (settings.listen.host, settings.listen.port)
    if declared.section == "account":
        (account,) = settings.accounts
        if declared.name.startswith("password"):
            assert account.password is not None
            return account.password.reveal()
        return getattr(account, declared.name)
    section = getattr(settings, declared.section) if declared.section else settings
    return getattr(section, declared.name)


def _expected(tmp_path: Path, declared: Setting) -> object:
    return _files(tmp_path, SAMPLES[declared.key][2])


@pytest.mark.parametrize("declared", [d for d in SETTINGS if d.file], ids=lambda d: d.key)
def test_each_setting_from_the_file(tmp_path: Path, declared: Setting) -> None:
    value = _files(tmp_path, SAMPLES[declared.key][0])
    line = f"{declared.name} = {_toml(value)}\n"
    if declared.section == "account":
        aor = "" if declared.name == "aor" else f'aor = "{BASE_AOR}"\n'
        text = f"[[accounts]]\n{aor}{line}"
    elif declared.section:
        text = f"[{declared.section}]\n{line}"
    else:
        text = line
    config = tmp_path / "sipua.toml"
    config.write_text(text)
    config.chmod(0o600)
    settings = load_settings(config, env={**ENV, "MY_SIPUA_PW": "pw-from-env"})
    assert _model_value(settings, declared) == _expected(tmp_path, declared)


@pytest.mark.parametrize("declared", [d for d in SETTINGS if d.env], ids=lambda d: d.key)
def test_each_setting_from_its_environment_variable(tmp_path: Path, declared: Setting) -> None:
    assert declared.env is not None
    text = _files(tmp_path, SAMPLES[declared.key][1])
    env = {**ENV, declared.env: str(text)}
    if declared.section == "account" and declared.name != "aor":
        env["SIPUA_AOR"] = BASE_AOR
    assert _model_value(load_settings(env=env), declared) == _expected(tmp_path, declared)


def _argv(declared: Setting, text: str, expected: object) -> list[str]:
    assert declared.flag is not None
    if declared.kind == "switch":
        return [declared.flag if expected else f"--no-{declared.flag.removeprefix('--')}"]
    if declared.kind in ("on", "off"):
        return [declared.flag]
    if choices_of(declared.parse) is not None:
        return [declared.flag, str(expected)]  # argparse takes only the choices' own words
    return [declared.flag, text]


@pytest.mark.parametrize("declared", [d for d in SETTINGS if d.flag], ids=lambda d: d.key)
def test_each_setting_from_its_flag(tmp_path: Path, declared: Setting) -> None:
    parser = argparse.ArgumentParser()
    add_common_flags(parser)
    text = str(_files(tmp_path, SAMPLES[declared.key][1]))
    argv = _argv(declared, text, SAMPLES[declared.key][2])
    if declared.section == "account" and declared.name != "aor":
        argv += ["--aor", BASE_AOR]
    settings = settings_from_args(parser.parse_args(argv), ENV, require_account=False)
    assert _model_value(settings, declared) == _expected(tmp_path, declared)


@pytest.mark.parametrize(
    "declared", [d for d in SETTINGS if d.kind == "switch" and d.env], ids=lambda d: d.key
)
def test_a_switch_beats_its_environment_variable(declared: Setting) -> None:
    assert declared.env is not None
    parser = argparse.ArgumentParser()
    add_common_flags(parser)
    for wanted in (True, False):
        argv = _argv(declared, "", wanted)
        if declared.section == "account":
            argv += ["--aor", BASE_AOR]
        env = {**ENV, declared.env: "no" if wanted else "yes"}
        settings = settings_from_args(parser.parse_args(argv), env, require_account=False)
        assert _model_value(settings, declared) is wanted


# --- one declaration each ------------------------------------------------------------------------


def _unique(items: list[str]) -> list[str]:
    return sorted({item for item in items if items.count(item) > 1})


def test_every_model_field_is_declared_exactly_once() -> None:
    nested = {"accounts", "tls", "listen", "media", "certificates", "config_warnings"}
    for section, cls in SECTIONS.items():
        names = [f.name for f in dataclasses.fields(cls) if f.name not in nested]
        assert [d.name for d in declared(cls, section)] == names, cls.__name__
    assert _unique([d.key for d in SETTINGS]) == []


def test_keys_variables_flags_and_phone_keys_are_unique() -> None:
    envs = [d.env for d in SETTINGS if d.env is not None]
    assert _unique([*envs, "SIPUA_CONFIG", "SIPUA_ACCOUNT"]) == []
    assert all(env.startswith("SIPUA_") for env in envs)
    flags = [d.flag for d in SETTINGS if d.flag is not None]
    negations = [f"--no-{d.flag.removeprefix('--')}" for d in SETTINGS if d.kind == "switch"]
    assert _unique([*flags, *negations, "--config", "--account", "--password"]) == []
    assert _unique([d.dest for d in SETTINGS if d.flag is not None]) == []
    phone = [key.key for d in SETTINGS for key in d.phone]
    assert _unique(phone) == []
    # A way of giving a setting is not a second declaration of a field.
    field_keys = {d.key for d in SETTINGS if d not in ALTERNATIVES}
    assert not {d.key for d in ALTERNATIVES} & field_keys


@pytest.mark.parametrize("command", ["register", "call", "load"])
def test_commands_take_every_flag_and_reuse_none_of_their_names(command: str) -> None:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = sub.choices[command]._actions
    by_dest = {action.dest: action for action in actions}
    for declared_setting in SETTINGS:
        if declared_setting.flag is None:
            continue
        action = by_dest[declared_setting.dest]
        # The dest belongs to the setting's own flag, not to a command argument of that name.
        assert declared_setting.flag in action.option_strings


# --- errors name the file and the key -------------------------------------------------------------


@pytest.mark.parametrize("declared", [d for d in SETTINGS if d.file], ids=lambda d: d.key)
def test_a_wrong_type_names_the_file_and_the_key(tmp_path: Path, declared: Setting) -> None:
    line = f"{declared.name} = {{ wrong = 1 }}\n"
    if declared.section == "account":
        text, where = f'[[accounts]]\naor = "{BASE_AOR}"\n{line}', f"accounts[0].{declared.name}"
        if declared.name == "aor":
            text = f"[[accounts]]\n{line}"
    elif declared.section:
        text, where = f"[{declared.section}]\n{line}", declared.key
    else:
        text, where = line, declared.key
    config = tmp_path / "sipua.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(config, env=ENV)
    assert str(info.value).startswith(f"{config}: {where}: expected "), str(info.value)


@pytest.mark.parametrize("section", ["", "accounts", "tls", "listen", "media", "certificates"])
def test_an_unknown_key_names_the_file_the_section_and_the_key(
    tmp_path: Path, section: str
) -> None:
    table = {"": "", "accounts": "[[accounts]]\n"}.get(section, f"[{section}]\n")
    config = tmp_path / "sipua.toml"
    config.write_text(f"{table}no_such_setting = 1\n")
    where = {"": "", "accounts": ": accounts[0]"}.get(section, f": {section}")
    message = re.escape(f"{config}{where}: unknown setting 'no_such_setting'")
    with pytest.raises(ConfigError, match=f"^{message}"):
        load_settings(config, env=ENV)


TAKES_ANY_TEXT = (model.v.text, model.v.secret_text, model.v.path)


def test_a_bad_environment_variable_is_named() -> None:
    for declared_setting in SETTINGS:
        if declared_setting.env is None or declared_setting.parse in TAKES_ANY_TEXT:
            continue  # any text is a user name, a password or a file name
        with pytest.raises(ConfigError, match=rf"^{declared_setting.env}: "):
            load_settings(env={**ENV, declared_setting.env: "\x01 not valid"})


# --- one setting alone ---------------------------------------------------------------------------


def test_setting_value_reads_flag_then_environment_then_default(tmp_path: Path) -> None:
    env = {"HOME": "/h", "SIPUA_DATA_DIR": str(tmp_path / "explicit"), "XDG_DATA_HOME": "/xdg"}
    assert setting_value("data_dir", env=env) == tmp_path / "explicit"
    flag = [Override("data_dir", str(tmp_path / "flag"), "--data-dir")]
    assert setting_value("data_dir", flag, env=env) == tmp_path / "flag"
    assert setting_value("data_dir", env={"HOME": "/h", "XDG_DATA_HOME": "/xdg"}) == Path(
        "/xdg/sipua"
    )
    assert setting_value("data_dir", env={"HOME": "/h", "XDG_DATA_HOME": "rel"}) == Path(
        "/h/.local/share/sipua"
    )
    assert setting_value("tls.ca_type", env={}) == "all"
    with pytest.raises(ConfigError, match=r"^SIPUA_CA_TYPE: expected one of"):
        setting_value("tls.ca_type", env={"SIPUA_CA_TYPE": "some"})


# --- the listing and the documentation ---------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_config_settings_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "settings"]) == 0
    out = capsys.readouterr().out
    for declared_setting in SETTINGS:
        for part in (declared_setting.env, declared_setting.flag, declared_setting.help):
            if part is not None:
                assert part in out, (declared_setting.key, part)


def test_docs_settings_table_is_the_declarations(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "settings", "--markdown"]) == 0
    table = capsys.readouterr().out.splitlines()
    documented = [line for line in DOCS.read_text().splitlines() if line.startswith("|")]
    # Regenerate with: sipua config settings --markdown (below the page's introduction).
    assert documented == table


def test_a_command_argument_sharing_a_flag_name_is_not_a_setting(tmp_path: Path) -> None:
    # `sipua cert accept-key NAME PIN` has a positional `pin`, as `--pin` has: only the flags the
    # parser was given for settings are read back as settings.
    args = build_parser("cert").parse_args(
        ["cert", "accept-key", "reg.example.test", PIN, "--data-dir", str(tmp_path)]
    )
    assert args.pin == PIN
    assert overrides_from_args(args) == [Override("data_dir", str(tmp_path), "--data-dir")]
