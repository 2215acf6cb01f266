"""The settings model, its small parsers, and the example configuration against the defaults."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from sipua.settings.load import load_settings
from sipua.settings.model import (
    ANSWER_STATUS,
    SETTINGS,
    AccountSettings,
    ListenSettings,
    Settings,
    TlsSettings,
    aor_parts,
    default_data_dir,
)
from sipua.settings.secret import Secret

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "sipua.example.toml"


def test_defaults() -> None:
    tls = TlsSettings()
    assert (tls.only_trusted, tls.ca_type, tls.cn_validation, tls.allow_wildcards) == (
        True,
        "all",
        True,
        False,
    )
    assert (tls.min_version, tls.max_version, tls.handshake_timeout) == ("1.2", None, 10.0)
    listen = ListenSettings()
    # Port 0: a free port, never the SIPS port a registrar on the same machine listens on.
    assert (listen.enabled, listen.host, listen.port) == (True, "127.0.0.1", 0)
    # Inbound handshakes get less time than our own (10 s): a silent client holds a place.
    assert (listen.max_connections, listen.max_connections_per_address) == (256, 8)
    assert (listen.handshake_timeout, listen.servers_only) == (3.0, False)
    account = AccountSettings(name="a", aor="sips:alice@example.test", username="alice")
    assert (account.expires, account.register, account.keepalive_interval) == (600, True, None)
    assert (account.auto_answer_delay, account.answer) == (1.0, "accept")
    assert ANSWER_STATUS == {"accept": 200, "busy": 486, "decline": 603}


def test_models_are_frozen_and_slotted() -> None:
    for cls in (Settings, AccountSettings, TlsSettings, ListenSettings):
        assert "__slots__" in vars(cls)
    with pytest.raises(dataclasses.FrozenInstanceError):
        TlsSettings().only_trusted = False  # type: ignore[misc]


def test_settings_repr_hides_the_password() -> None:
    account = AccountSettings(
        name="a", aor="sips:alice@example.test", username="alice", password=Secret("hunter2")
    )
    settings = Settings(accounts=(account,), data_dir=Path("/tmp/x"))
    assert "hunter2" not in repr(settings)
    assert settings.account("a") is account
    with pytest.raises(KeyError):
        settings.account("b")


def test_account_helpers() -> None:
    account = AccountSettings(
        name="a", aor="sips:alice@Example.test", username="alice", proxy="[2001:db8::1]:5062"
    )
    assert account.domain == "Example.test"
    assert account.proxy_address() == ("2001:db8::1", 5062)
    assert dataclasses.replace(account, proxy=None).proxy_address() is None


def test_aor_parts() -> None:
    assert aor_parts("sips:alice@example.test") == ("sips", "alice", "example.test", None)
    assert aor_parts("SIP:bob@[2001:db8::1]:5061") == ("sip", "bob", "2001:db8::1", 5061)
    for bad in ("alice@example.test", "sips:example.test", "tel:+15551234", "sips:a@b c"):
        with pytest.raises(ValueError, match="address of record"):
            aor_parts(bad)


def test_default_data_dir() -> None:
    assert default_data_dir({"HOME": "/home/a"}) == Path("/home/a/.local/share/sipua")
    assert default_data_dir({"HOME": "/home/a", "XDG_DATA_HOME": "/xdg"}) == Path("/xdg/sipua")
    # A relative XDG_DATA_HOME is invalid per the XDG spec and ignored.
    assert default_data_dir({"HOME": "/h", "XDG_DATA_HOME": "rel"}) == Path("/h/.local/share/sipua")


# --- the example configuration ------------------------------------------------------------------


def test_example_config_parses_to_the_documented_defaults() -> None:
    env = {"SIPUA_ALICE_PASSWORD": "example-pw", "HOME": "/home/a"}
    settings = load_settings(EXAMPLE, env=env)
    # The example's only departures from the defaults are the ones it marks "not a default".
    expected = Settings(
        accounts=(
            AccountSettings(
                name="alice",
                aor="sips:alice@example.test",
                username="alice",
                password=Secret("example-pw"),
            ),
        ),
        listen=ListenSettings(host="0.0.0.0", port=5061),
        data_dir=default_data_dir(env),
    )
    assert settings == expected


def test_example_config_mentions_every_setting() -> None:
    text = EXAMPLE.read_text()
    mentioned = set(re.findall(r"^#? ?(\w+) = ", text, re.M))
    for declared in SETTINGS:
        if declared.file:
            assert declared.name in mentioned, declared.key
            # Its flag is named where it is explained.
            assert declared.flag is None or declared.flag in text, declared.key


def test_example_commented_values_are_valid(tmp_path: Path) -> None:
    # Uncommenting every "# key = value" line of the [tls], [listen] and account sections must
    # still load: the documented alternatives are real values, not prose.
    lines: list[str] = []
    active: dict[str, int] = {}  # key -> index of its active line in the current section
    for line in EXAMPLE.read_text().splitlines():
        if line.startswith("["):
            active = {}
        match = re.match(r"# (\w+) = (.*?)(\s+#.*)?$", line)
        if match and not match[1].startswith(("password", "name", "aor")):
            line = f"{match[1]} = {match[2]}"
            if match[1] in active:
                lines[active[match[1]]] = ""  # the alternative replaces the default line
        plain = re.match(r"(\w+) = ", line)
        if plain:
            active[plain[1]] = len(lines)
        lines.append(line)
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "registrar-ca.pem").write_text("not checked here")
    uncommented = tmp_path / "all.toml"
    uncommented.write_text("\n".join(lines))
    settings = load_settings(uncommented, env={"SIPUA_ALICE_PASSWORD": "pw", "HOME": "/h"})
    assert settings.tls.mac == "001565aabbcc"
    assert settings.tls.trusted_certs == (tmp_path / "certs" / "registrar-ca.pem",)
    assert settings.accounts[0].keepalive_interval == 30.0
    assert settings.data_dir == Path("/var/lib/sipua")
