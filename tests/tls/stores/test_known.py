"""The known-keys file (trust on first use), the pin grammar and the accept-key command."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from sipua.cli import main
from sipua.errors import StoreError
from sipua.settings.model import parse_pin
from sipua.tls.stores.known import KnownKeysError, format_known_keys, parse_known_keys
from sipua.tls.stores.store import CertStore
from sipua.tls.trust.pins import spki_pin
from tests.support.certs import make_leaf

PIN = "sha256/" + "A" * 43 + "="
OTHER = "sha256/" + "B" * 43 + "="


def test_pin_grammar() -> None:
    assert parse_pin(PIN) == bytes(32)
    assert parse_pin(spki_pin(make_leaf(None).cert)) != bytes(32)
    for bad in ("sha1/" + "A" * 27 + "=", "sha256/short=", PIN[:-1], PIN + "A", "A" * 51):
        with pytest.raises(ValueError, match="SPKI pin"):
            parse_pin(bad)


def test_known_keys_round_trip_and_errors() -> None:
    records = {"example.test": PIN, "2001:db8::1": OTHER, "192.0.2.1": PIN}
    assert parse_known_keys(format_known_keys(records), source="f") == records
    cases = {
        b"example.test\n": "line 1: expected 'NAME sha256/BASE64', found 1",
        b"# c\n\nexample.test sha256/xx\n": "line 3: expected an SPKI pin",
        b"a.test " + PIN.encode() + b"\nA.TEST " + OTHER.encode() + b"\n": "listed twice",
        b"\xff\xfe": "not UTF-8",
    }
    for data, message in cases.items():
        with pytest.raises(KnownKeysError, match=message):
            parse_known_keys(data, source="known-keys")


def test_a_file_an_earlier_release_wrote_is_still_read() -> None:
    # Earlier releases recorded any name and could bracket IPv6: one such line must not make
    # every record unreadable (trust on first use would refuse every registrar).
    data = (
        f"example.test {PIN}\nsip_proxy.example.test {OTHER}\nbad/name {OTHER}\n"
        f"[2001:db8::1] {OTHER}\n"
    ).encode()
    assert parse_known_keys(data, source="known-keys") == {
        "example.test": PIN,
        "2001:db8::1": OTHER,
    }


def test_record_keeps_the_first_key_accept_replaces_forget_removes(tmp_path: Path) -> None:
    known = CertStore(tmp_path).known
    known.record("Example.Test", PIN)
    known.record("example.test", OTHER)  # a first use recorded meanwhile is kept
    assert known.lookup("example.test") == PIN
    assert known.accept("example.test", OTHER) == PIN
    assert known.lookup("EXAMPLE.test") == OTHER
    assert known.forget("example.test") == OTHER
    assert known.records() == {}
    with pytest.raises(ValueError):
        known.accept("example.test", "sha256/nope")


@pytest.mark.parametrize("name", ["", "a b", "a\nb", "bad/name", "[2001:db8::1]", "x" * 254])
def test_a_name_that_is_no_host_is_refused_and_the_file_stays_readable(
    tmp_path: Path, name: str
) -> None:
    known = CertStore(tmp_path).known
    known.record("example.test", PIN)
    with pytest.raises(StoreError, match="is not a host name or IP address") as refused:
        known.accept(name, OTHER)
    assert not isinstance(refused.value, KnownKeysError)  # the file is not what is wrong
    with pytest.raises(StoreError, match="is not a host name or IP address"):
        known.record(name, OTHER)
    assert known.records() == {"example.test": PIN}
    assert known.accept("registrar.example.test", OTHER) is None
    assert known.forget("example.test") == PIN


def test_known_keys_writable_by_others_is_refused(tmp_path: Path) -> None:
    known = CertStore(tmp_path).known
    known.record("example.test", PIN)
    known.path.chmod(0o666)
    with pytest.raises(Exception, match="other users can change"):
        known.records()


def test_the_suggested_accept_command_names_a_non_default_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SIPUA_DATA_DIR", raising=False)
    default = CertStore(tmp_path / "xdg" / "sipua").known
    assert (
        default.accept_command("example.test", PIN) == f"sipua cert accept-key example.test {PIN}"
    )
    elsewhere = tmp_path / "ci data"
    command = CertStore(elsewhere).known.accept_command("example.test", PIN)
    assert command == (f"sipua cert accept-key --data-dir '{elsewhere}' example.test {PIN}")
    # Copied as it is, it records the key in that store and not in the default one.
    assert main(shlex.split(command)[1:]) == 0
    assert CertStore(elsewhere).known.lookup("example.test") == PIN
    assert default.lookup("example.test") is None
