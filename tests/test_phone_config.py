"""`sipua config import`: a desk phone's provisioning file becomes sipua's TOML."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

import pytest

from sipua import storage
from sipua.cli import main
from sipua.errors import StoreError
from sipua.settings.load import load_settings
from sipua.settings.phone import PhoneConfigError, parse_phone_config, translate

PHONE = """#!version:1.0.0.1
## Security
static.security.trust_certificates = 0
static.security.cn_validation = 1
static.security.ca_cert = 2
static.trusted_certificates.url = https://prov.example.test/ca.pem
static.trusted_certificates.delete = http://localhost/all
static.server_certificates.url = file:///etc/sipua/device.pem
account.1.enable = 1
account.1.label = "Reception desk"
account.1.auth_name = 100auth
account.1.user_name = 100
account.1.password = s3cret
account.1.sip_server.1.address = pbx.example.test
account.1.sip_server.1.port = 5061
account.1.sip_server.1.transport_type = 2
account.1.sip_server.1.expires = 300
account.1.codec.1.enable = 1
account.2.enable = 0
account.2.user_name = 200
account.2.sip_server.1.address = example.test
account.2.sip_server.1.port = 0
account.2.sip_server.1.transport_type = 3
account.3.user_name = 300
account.3.sip_server.1.address = pbx.example.test
account.3.sip_server.1.transport_type = 0
local_time.time_zone = +1
features.dnd.enable =
"""


def test_import_writes_toml_that_loads_and_keeps_the_password_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "phone.cfg"
    cfg.write_text(PHONE)
    out = tmp_path / "sipua.toml"
    assert main(["config", "import", str(cfg), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    text = out.read_text()
    assert "s3cret" not in text
    secret = tmp_path / "sipua.Reception-desk.password"
    assert secret.read_text() == "s3cret\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    settings = load_settings(out, env={})
    assert not settings.tls.only_trusted
    assert settings.tls.cn_validation
    assert settings.tls.ca_type == "all"  # the unconfirmed ca_cert value was not guessed
    assert settings.certificates.trusted_certificates_url == "https://prov.example.test/ca.pem"
    assert settings.certificates.trusted_certificates_delete
    assert settings.certificates.server_certificates_url == "file:///etc/sipua/device.pem"
    first, second = settings.accounts
    assert first.name == "Reception-desk"
    assert first.aor == "sips:100@pbx.example.test"
    assert first.username == "100auth"
    assert first.proxy == "pbx.example.test:5061"
    assert first.expires == 300
    assert first.password is not None
    assert first.password.reveal() == "s3cret"
    assert second.aor == "sips:200@example.test"
    assert second.proxy is None  # DNS-NAPTR: RFC 3263 location
    assert not second.register
    assert "static.security.ca_cert = 2: its value map is not confirmed" in printed.err
    assert "account.3 (300@pbx.example.test) uses UDP" in printed.err
    assert "local_time.time_zone" in printed.err
    assert "account.1.codec.1.enable" in printed.err
    assert main(["config", "import", str(cfg), "--out", str(out)]) == 2  # exists: --force
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("account.1.user_name = 1\n", "line 1: expected '#!version:1.0.0.1'"),
        ("#!version:1.0.0.1\nno equals sign\n", "line 2: expected 'key = value'"),
        ("#!version:1.0.0.1\na = 1\na = 2\n", "line 3: a is set twice"),
        ("#!version:1.0.0.1\nstatic.security.cn_validation = yes\n", "expected 0 or 1"),
        (
            "#!version:1.0.0.1\nstatic.trusted_certificates.delete = http://x/y\n",
            "sipua knows only 'http://localhost/all'",
        ),
    ],
)
def test_malformed_files_are_refused_naming_file_and_line(text: str, message: str) -> None:
    with pytest.raises(PhoneConfigError, match=message) as caught:
        translate(parse_phone_config(text.encode(), source="phone.cfg"), source="phone.cfg")
    assert "phone.cfg" in str(caught.value)


def test_nothing_is_written_when_the_result_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "phone.cfg"
    cfg.write_text(
        "#!version:1.0.0.1\naccount.1.user_name = a\naccount.1.label = x\n"
        "account.1.sip_server.1.address = p.example.test\n"
        "account.1.sip_server.1.transport_type = 3\n"
        "account.2.user_name = b\naccount.2.label = x\naccount.2.password = pw\n"
        "account.2.sip_server.1.address = p.example.test\n"
        "account.2.sip_server.1.transport_type = 3\n"
    )
    out = tmp_path / "sipua.toml"
    assert main(["config", "import", str(cfg), "--out", str(out)]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phone.cfg"]


def _one_account(changes: dict[str, str] | None = None) -> str:
    """A phone file with account 1 over TLS; `changes` adds or replaces `account.1.` keys."""
    keys = {
        "label": "Reception",
        "user_name": "alice",
        "password": "pw",
        "sip_server.1.address": "pbx.example.test",
        "sip_server.1.port": "5061",
        "sip_server.1.transport_type": "2",
    }
    keys.update(changes or {})
    return "#!version:1.0.0.1\n" + "".join(f"account.1.{k} = {v}\n" for k, v in keys.items())


@pytest.mark.parametrize("address", ["::1", "[::1]"])
def test_an_ipv6_server_is_bracketed_once_in_the_aor_and_the_proxy(
    tmp_path: Path, address: str
) -> None:
    cfg = tmp_path / "phone.cfg"
    cfg.write_text(_one_account({"sip_server.1.address": address}))
    out = tmp_path / "sipua.toml"
    assert main(["config", "import", str(cfg), "--out", str(out)]) == 0
    (account,) = load_settings(out, env={}).accounts
    assert account.aor == "sips:alice@[::1]"
    assert account.proxy == "[::1]:5061"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("pbx.example.test:5060", "give the port in account.1.sip_server.1.port"),
        ("[::1]:5060", "give the port in account.1.sip_server.1.port"),
        ("pbx_example", "'pbx_example' is not an IP address or a valid host name"),
        ("[pbx.example.test]", "'pbx.example.test' in brackets is not an IPv6 address"),
    ],
)
def test_a_server_address_that_is_not_a_host_is_refused_naming_the_key(
    address: str, message: str
) -> None:
    entries = parse_phone_config(
        _one_account({"sip_server.1.address": address}).encode(), source="phone.cfg"
    )
    with pytest.raises(PhoneConfigError) as caught:
        translate(entries, source="phone.cfg")
    assert str(caught.value).startswith(
        f"phone.cfg: account.1.sip_server.1.address = {address!r}: "
    )
    assert message in str(caught.value)


@pytest.mark.parametrize("port", ["99999", "-1", "5061x", "5²"])
def test_a_port_out_of_range_is_refused_saying_what_is_expected(port: str) -> None:
    entries = parse_phone_config(
        _one_account({"sip_server.1.port": port}).encode(), source="phone.cfg"
    )
    with pytest.raises(PhoneConfigError) as caught:
        translate(entries, source="phone.cfg")
    assert str(caught.value) == (
        f"phone.cfg: account.1.sip_server.1.port = {port!r}: "
        "expected a port from 1 to 65535, or 0 for none"
    )


@pytest.mark.parametrize("expires", ["abc", "-5", "99999999999"])
def test_an_expiry_sipua_cannot_take_is_listed_not_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], expires: str
) -> None:
    cfg = tmp_path / "phone.cfg"
    cfg.write_text(_one_account({"sip_server.1.expires": expires}))
    out = tmp_path / "sipua.toml"
    assert main(["config", "import", str(cfg), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"not imported: account.1.sip_server.1.expires = {expires!r}: expected an integer" in err
    assert "registers for sipua's default, 600 s" in err
    (account,) = load_settings(out, env={}).accounts
    assert account.expires == 600


@pytest.mark.parametrize("user", ['"unterminated', "a b", "100:secret", "100@pbx", "100%", "é"])
def test_a_user_name_that_is_not_a_sip_user_part_is_refused_naming_the_key(user: str) -> None:
    entries = parse_phone_config(_one_account({"user_name": user}).encode(), source="phone.cfg")
    with pytest.raises(PhoneConfigError) as caught:
        translate(entries, source="phone.cfg")
    assert str(caught.value).startswith(
        f"phone.cfg: account.1.user_name = {user!r}: not a SIP user name; "
    )


@pytest.mark.parametrize("user", ["100", "alice.smith", "+4930123456", "a%41b", "o'neil"])
def test_a_sip_user_part_is_kept_as_written(user: str) -> None:
    entries = parse_phone_config(_one_account({"user_name": user}).encode(), source="phone.cfg")
    (account,) = translate(entries, source="phone.cfg").accounts
    assert account.aor == f"sips:{user}@pbx.example.test"


def test_a_refused_result_is_named_by_the_phone_file_and_account_not_a_scratch_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cfg = tmp_path / "phone.cfg"
    cfg.write_text(
        "#!version:1.0.0.1\n"
        + "".join(
            f"account.{n}.user_name = {n}00\naccount.{n}.label = desk\n"
            f"account.{n}.sip_server.1.address = pbx.example.test\n"
            f"account.{n}.sip_server.1.transport_type = 3\n"
            for n in (1, 2)
        )
    )
    assert main(["config", "import", str(cfg), "--out", str(tmp_path / "sipua.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sipua: error: {cfg}: account.2 makes a configuration sipua refuses: ")
    assert "accounts[1]" in err
    assert "desk" in err
    assert str(scratch) not in err


def _two_passwords(tmp_path: Path) -> Path:
    """A phone file of two TLS accounts with passwords, `Reception` and `Office`."""
    cfg = tmp_path / "phone.cfg"
    cfg.write_text(
        _one_account()
        + "account.2.label = Office\naccount.2.user_name = bob\naccount.2.password = pw2\n"
        "account.2.sip_server.1.address = pbx.example.test\n"
        "account.2.sip_server.1.transport_type = 3\n"
    )
    return cfg


def _files(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(directory.iterdir()) if path.is_file()}


def test_an_existing_password_file_is_not_replaced_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _two_passwords(tmp_path)
    (tmp_path / "z.Office.password").write_text("IMPORTANT DATA\n")
    before = _files(tmp_path)
    assert main(["config", "import", str(cfg), "--out", str(tmp_path / "z.toml")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'z.Office.password'} exists; pass --force to replace it" in err
    assert _files(tmp_path) == before
    assert main(["config", "import", str(cfg), "--out", str(tmp_path / "z.toml"), "--force"]) == 0
    assert (tmp_path / "z.Office.password").read_text() == "pw2\n"


def test_an_out_path_that_is_a_directory_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _two_passwords(tmp_path)
    out = tmp_path / "dir.pem"
    out.mkdir()
    before = _files(tmp_path)
    assert main(["config", "import", str(cfg), "--out", str(out), "--force"]) == 2
    assert f"cannot write {out}: it is a directory" in capsys.readouterr().err
    assert _files(tmp_path) == before


def test_a_failed_write_puts_back_what_the_import_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _two_passwords(tmp_path)
    out = tmp_path / "z.toml"
    kept = tmp_path / "z.Office.password"
    kept.write_text("old\n")
    kept.chmod(0o600)
    before = _files(tmp_path)
    real_write = storage.atomic_write

    def full_disk(path: Path, data: bytes, *, mode: int = storage.PUBLIC_FILE_MODE) -> None:
        if path == out:
            raise StoreError(f"cannot write {path}: No space left on device")
        real_write(path, data, mode=mode)

    monkeypatch.setattr(storage, "atomic_write", full_disk)
    assert main(["config", "import", str(cfg), "--out", str(out), "--force"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert _files(tmp_path) == before  # the new password file removed, the replaced one back
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_a_file_that_cannot_be_put_back_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _two_passwords(tmp_path)
    out = tmp_path / "z.toml"
    real_write = storage.atomic_write

    def full_disk(path: Path, data: bytes, *, mode: int = storage.PUBLIC_FILE_MODE) -> None:
        if path == out:
            raise StoreError(f"cannot write {path}: No space left on device")
        real_write(path, data, mode=mode)

    def stuck(path: Path) -> None:
        raise StoreError(f"cannot remove {path}: Read-only file system")

    monkeypatch.setattr(storage, "atomic_write", full_disk)
    monkeypatch.setattr(storage, "remove_file", stuck)
    assert main(["config", "import", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device; the files written before it could not all be put back" in err
    assert f"cannot remove {tmp_path / 'z.Office.password'}: Read-only file system" in err
    assert f"cannot remove {tmp_path / 'z.Reception.password'}: Read-only file system" in err
