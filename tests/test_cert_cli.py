"""`sipua cert ...` end to end through `sipua.cli.main` (and once as a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from sipua.cli import main
from sipua.tls.stores.store import CertStore
from tests.support.certs import make_ca, make_leaf, pem_bundle

ROOT = make_ca("CLI Test Root")
INTER = make_ca("CLI Test Intermediate", issuer=ROOT)


def cli(data_dir: Path, *args: str) -> int:
    return main(["cert", *args, "--data-dir", str(data_dir)])


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_import_list_show_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert cli(data, "import-trusted", str(_write(tmp_path, "root.pem", ROOT.pem))) == 0
    assert ROOT.fingerprint in capsys.readouterr().out
    assert cli(data, "list") == 0
    out = capsys.readouterr().out
    assert "Trusted certificates, default:" in out
    assert "Trusted certificates, custom: 1 of 10" in out
    assert "CLI Test Root [custom, CA]" in out
    assert ROOT.fingerprint in out
    assert cli(data, "show", ROOT.fingerprint[:8]) == 0
    assert "key:         EC secp256r1" in capsys.readouterr().out
    assert cli(data, "remove-trusted", "CLI Test Root") == 0
    assert "removed: CLI Test Root" in capsys.readouterr().out
    assert cli(data, "list", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["trusted"]["custom"] == []
    assert document["trusted"]["default"]["count"] >= 0


def test_list_json_shows_device_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    CertStore(data).devices.identity("default", "00:15:65:00:00:01")
    leaf = make_leaf(None, cn="custom.example.com")
    assert cli(data, "import-device", str(_write(tmp_path, "d.pem", leaf.key_pem + leaf.pem))) == 0
    capsys.readouterr()
    assert cli(data, "list", "--json") == 0
    device = json.loads(capsys.readouterr().out)["device"]
    assert sorted((d["kind"], d["type"]) for d in device) == [
        ("custom", "custom"),
        ("device-ca", "default"),
        ("unique", "default"),
    ]
    assert all(len(d["fingerprint_sha256"]) == 64 for d in device)
    assert cli(data, "remove-device") == 0
    assert "custom.example.com" in capsys.readouterr().out


def test_remove_device_with_a_corrupt_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    (data / "certs").mkdir(parents=True, mode=0o700)
    custom = data / "certs" / "device-custom.pem"
    custom.write_bytes(b"not a certificate")
    custom.chmod(0o644)
    assert cli(data, "remove-device") == 0
    assert "held no readable certificate" in capsys.readouterr().out
    assert not custom.exists()


def test_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    key = _write(tmp_path, "key.pem", make_leaf(None).key_pem)
    assert cli(data, "import-trusted", str(key)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sipua: error:")
    assert "private key" in err
    assert "\n" not in err
    assert cli(data, "remove-trusted", "nothing") == 2
    assert cli(data, "remove-device") == 2
    assert "no custom device certificate" in capsys.readouterr().err


def test_import_device_with_passphrase_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    leaf = make_leaf(None)
    cert = _write(tmp_path, "d.cer", leaf.pem)
    key = _write(tmp_path, "d.key", leaf.encrypted_key_pem(b"pw"))
    assert cli(data, "import-device", str(cert), "--key", str(key)) == 2
    assert "encrypted" in capsys.readouterr().err
    secret = _write(tmp_path, "pass.txt", b"pw\n")
    secret.chmod(0o600)
    args = ["import-device", str(cert), "--key", str(key), "--passphrase-file", str(secret)]
    assert cli(data, *args) == 0


def test_import_device_refuses_an_empty_passphrase_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    leaf = make_leaf(None)
    cert = _write(tmp_path, "d.cer", leaf.pem)
    key = _write(tmp_path, "d.key", leaf.encrypted_key_pem(b"pw"))
    for content in (b"", b"\n"):
        secret = _write(tmp_path, "pass.txt", content)
        secret.chmod(0o600)
        args = ["import-device", str(cert), "--key", str(key), "--passphrase-file", str(secret)]
        assert cli(data, *args) == 2
        assert capsys.readouterr().err == (
            f"sipua: error: the passphrase file {secret} is empty; put the key's passphrase in it\n"
        )
    assert not (data / "certs" / "device-custom.pem").exists()


def test_import_device_names_a_readable_passphrase_file_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leaf = make_leaf(None)
    cert = _write(tmp_path, "d.cer", leaf.pem)
    key = _write(tmp_path, "d.key", leaf.encrypted_key_pem(b"pw"))
    key.chmod(0o600)
    secret = _write(tmp_path, "pass.txt", b"pw\n")
    secret.chmod(0o644)
    args = ["import-device", str(cert), "--key", str(key), "--passphrase-file", str(secret)]
    assert cli(tmp_path / "data", *args) == 2
    assert capsys.readouterr().err == (
        f"sipua: error: refusing to use passphrase file {secret}: its mode is 0644, so other "
        f"users can read it; run `chmod 600 {secret}` (and replace the passphrase if it may "
        "have leaked)\n"
    )


def test_import_device_with_an_empty_key_file_expects_a_private_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert = _write(tmp_path, "d.pem", make_leaf(None).pem)
    empty = _write(tmp_path, "empty.pem", b"")
    assert cli(tmp_path / "data", "import-device", str(cert), "--key", str(empty)) == 2
    assert capsys.readouterr().err == f"sipua: error: {empty} is empty; expected a private key\n"
    assert cli(tmp_path / "data", "import-device", str(empty), "--key", str(cert)) == 2
    assert capsys.readouterr().err == f"sipua: error: {empty} is empty; expected a certificate\n"


def test_export_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert cli(data, "export-ca") == 0
    printed = capsys.readouterr().out.encode()
    assert printed.startswith(b"-----BEGIN CERTIFICATE-----")
    out = tmp_path / "ca.pem"
    assert cli(data, "export-ca", "--out", str(out)) == 0
    assert out.read_bytes() == printed


def test_device_certificate_passes_openssl_strict_verify(tmp_path: Path) -> None:
    # Kamailio verifies with OpenSSL: the device chain must pass its strict checks as both a
    # TLS server and a TLS client certificate. (The openssl tool is a documented dependency.)
    data = tmp_path / "data"
    store = CertStore(data)
    identity = store.devices.identity("default", "00:15:65:00:00:02")
    ca = _write(tmp_path, "ca.pem", identity.chain[0].public_bytes(serialization.Encoding.PEM))
    leaf = _write(
        tmp_path, "leaf.pem", identity.certificate.public_bytes(serialization.Encoding.PEM)
    )
    for purpose in ("sslserver", "sslclient"):
        result = subprocess.run(
            ["openssl", "verify", "-x509_strict", "-purpose", purpose, "-CAfile", ca, leaf],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def _verify_args(chain: Path, *extra: str) -> list[str]:
    return ["verify", str(chain), "--name", "example.com", *extra]


def test_verify_accepts_and_rejects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    leaf = make_leaf(INTER, uris=("sip:example.com",))
    chain = _write(tmp_path, "chain.pem", pem_bundle(leaf, INTER))
    root = _write(tmp_path, "root.der", ROOT.der)
    assert cli(data, *_verify_args(chain)) == 1
    assert "rejected (untrusted-issuer)" in capsys.readouterr().out
    assert cli(data, *_verify_args(chain, "--trusted-cert", str(root))) == 0
    assert capsys.readouterr().out.startswith("verified:")
    # --trusted-cert counts as custom.
    assert cli(data, *_verify_args(chain, "--trusted-cert", str(root), "--ca-type", "default")) == 1
    assert "ca-type-not-accepted" in capsys.readouterr().out
    # The store's custom trusted certificates are used too.
    assert cli(data, "import-trusted", str(root)) == 0
    assert cli(data, *_verify_args(chain)) == 0
    capsys.readouterr()
    assert cli(data, "verify", str(chain), "--name", "example.net") == 1
    assert "name-mismatch" in capsys.readouterr().out
    assert cli(data, "verify", str(chain), "--name", "example.net", "--no-cn-validation") == 0
    # CN validation, when on, is mandatory: "only trusted" off does not waive a name mismatch.
    assert cli(data, "verify", str(chain), "--name", "example.net", "--no-only-trusted") == 1
    assert "rejected (name-mismatch)" in capsys.readouterr().out
    no_checks = ("--no-only-trusted", "--no-cn-validation")
    assert cli(data, "verify", str(chain), "--name", "example.net", *no_checks) == 0


def test_verify_judges_weak_keys_as_register_would_at_the_same_tls_minimum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    weak = make_leaf(INTER, uris=("sip:example.com",), key_kind="rsa-1024")
    chain = _write(tmp_path, "weak.pem", pem_bundle(weak, INTER))
    root = str(_write(tmp_path, "root.der", ROOT.der))
    lenient = ("--trusted-cert", root, "--no-only-trusted")
    # 'Only trusted' off does not waive a weak key...
    assert cli(data, *_verify_args(chain, *lenient)) == 1
    assert "weak-key" in capsys.readouterr().out
    # ...unless legacy TLS is asked for: the user's opt-in to old peers and their keys, in
    # `sipua register` and here alike.
    assert cli(data, *_verify_args(chain, *lenient, "--tls-min-version", "1.0")) == 0


def test_verify_at_and_wildcards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    leaf = make_leaf(ROOT, uris=(), dns=("*.example.com",))
    chain = _write(tmp_path, "leaf.crt", leaf.pem)
    root = str(_write(tmp_path, "root.pem", ROOT.pem))
    base = ["verify", str(chain), "--name", "sip.example.com", "--trusted-cert", root]
    assert cli(data, *base) == 1
    assert cli(data, *base, "--allow-wildcards") == 0
    assert cli(data, *base, "--allow-wildcards", "--at", "2999-01-01T00:00:00Z") == 1
    assert "expired" in capsys.readouterr().out
    assert cli(data, *base, "--at", "yesterday") == 2
    assert "ISO 8601" in capsys.readouterr().err
    assert cli(data, *base, "--allow-wildcards", "--json") == 0
    verdict = json.loads(capsys.readouterr().out)
    assert (verdict["ok"], verdict["code"], verdict["identities"]) == (
        True,
        "ok",
        ["DNS:*.example.com"],
    )


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_verify_at_beyond_the_calendar_in_utc_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], at: str
) -> None:
    # Exit 1 means "chain rejected": a time that cannot be judged must not look like one.
    chain = _write(tmp_path, "root.pem", ROOT.pem)
    assert cli(tmp_path / "data", "verify", str(chain), "--name", "x", "--at", at) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sipua: error: --at {at!r} is out of range")
    assert "0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z" in err


def test_verify_at_the_ends_of_the_calendar_in_utc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chain = str(_write(tmp_path, "root.pem", ROOT.pem))
    for at in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59", "0001-01-01T00:00:00-01:00"):
        args = ("verify", chain, "--name", "x", "--trusted-cert", chain, "--at", at)
        assert cli(tmp_path / "data", *args) == 1
        out = capsys.readouterr().out
        assert out.startswith(("rejected (expired)", "rejected (not-yet-valid)"))


def test_subprocess_round_trip(tmp_path: Path) -> None:
    env = {**os.environ, "SIPUA_DATA_DIR": str(tmp_path / "data")}
    root = _write(tmp_path, "root.pem", ROOT.pem)
    run = [sys.executable, "-m", "sipua", "cert"]
    imported = subprocess.run(
        [*run, "import-trusted", str(root)], env=env, capture_output=True, text=True, timeout=60
    )
    assert imported.returncode == 0, imported.stderr
    listed = subprocess.run(
        [*run, "list", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    custom = json.loads(listed.stdout)["trusted"]["custom"]
    assert [c["fingerprint_sha256"] for c in custom] == [ROOT.fingerprint]
    duplicate = subprocess.run(
        [*run, "import-trusted", str(root)], env=env, capture_output=True, text=True, timeout=60
    )
    assert duplicate.returncode == 2
    assert duplicate.stderr.startswith("sipua: error:")


def test_list_says_which_trusted_entries_are_end_entity_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A registrar's self-signed certificate is trusted as itself: the list must not call it a CA.
    data = tmp_path / "data"
    registrar = make_leaf(None, cn="pbx.example.com", dns=("pbx.example.com",))
    assert cli(data, "import-trusted", str(_write(tmp_path, "pbx.pem", registrar.pem))) == 0
    assert "[end-entity certificate, not a CA" in capsys.readouterr().out
    assert cli(data, "import-trusted", str(_write(tmp_path, "root.pem", ROOT.pem))) == 0
    capsys.readouterr()
    assert cli(data, "list") == 0
    out = capsys.readouterr().out
    assert "- pbx.example.com [custom, end-entity certificate, not a CA: trusts only itself]" in out
    assert "- CLI Test Root [custom, CA]" in out
    assert cli(data, "list", "--json") == 0
    custom = json.loads(capsys.readouterr().out)["trusted"]["custom"]
    assert [(c["name"], c["end_entity"]) for c in custom] == [
        ("pbx.example.com", True),
        ("CLI Test Root", False),
    ]


def test_trusted_self_signed_registrar_certificate_verifies_as_its_own_anchor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registrar = make_leaf(None, cn="pbx.example.com", uris=("sip:pbx.example.com",))
    chain = _write(tmp_path, "chain.pem", registrar.pem)
    trusted = _write(tmp_path, "pbx.pem", registrar.pem)
    args = ("verify", str(chain), "--name", "pbx.example.com", "--trusted-cert", str(trusted))
    assert cli(tmp_path / "data", *args) == 0
    assert capsys.readouterr().out.startswith(
        "verified: custom trusted end-entity certificate 'CN=pbx.example.com,O=sipua tests', "
        "trusted as itself"
    )


def test_list_shows_days_left_for_every_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    soon = make_ca("Expiring Soon CA", days=12)
    assert cli(data, "import-trusted", str(_write(tmp_path, "soon.pem", soon.pem))) == 0
    CertStore(data).devices.identity("generic")
    capsys.readouterr()
    assert cli(data, "list") == 0
    out = capsys.readouterr().out
    assert "(11 days left)" in out or "(12 days left)" in out
    assert "soonest to expire:" in out
    assert cli(data, "list", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["trusted"]["custom"][0]["days_left"] in (11, 12)
    assert all(isinstance(d["days_left"], int) for d in document["device"])
    assert all("days_left" in d for d in document["trusted"]["default"]["certificates"])


def test_show_prints_the_pin_and_accept_forget_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sipua.tls.trust.pins import spki_pin

    data = tmp_path / "data"
    assert cli(data, "import-trusted", str(_write(tmp_path, "root.pem", ROOT.pem))) == 0
    capsys.readouterr()
    assert cli(data, "show", ROOT.fingerprint[:12]) == 0
    assert f"pin:         {spki_pin(ROOT.cert)}" in capsys.readouterr().out
    pin = spki_pin(ROOT.cert)
    assert cli(data, "accept-key", "registrar.example.test", pin) == 0
    assert "recorded: registrar.example.test" in capsys.readouterr().out
    assert cli(data, "list") == 0
    assert f"registrar.example.test {pin}" in capsys.readouterr().out
    assert cli(data, "forget-key", "registrar.example.test") == 0
    assert cli(data, "forget-key", "registrar.example.test") == 2
    assert "no key is recorded" in capsys.readouterr().err
    assert cli(data, "accept-key", "registrar.example.test", "sha256/bad") == 2


@pytest.mark.parametrize("name", ["", "a b", "pbx.example.test\nevil.test"])
def test_accept_key_refuses_a_name_that_is_no_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    from sipua.tls.trust.pins import spki_pin

    data = tmp_path / "data"
    pin = spki_pin(ROOT.cert)
    assert cli(data, "accept-key", name, pin) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sipua: error: {name!r} is not a host name or IP address")
    assert "e.g. sip.example.com" in err
    # Nothing broken was written: the next change works.
    assert cli(data, "accept-key", "pbx.example.test", pin) == 0
    assert cli(data, "forget-key", "pbx.example.test") == 0


def test_import_trusted_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    env = {**os.environ, "SIPUA_DATA_DIR": str(tmp_path / "data")}
    imported = subprocess.run(
        [sys.executable, "-m", "sipua", "cert", "import-trusted", str(fifo)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert imported.returncode == 2
    assert imported.stderr == f"sipua: error: cannot read {fifo}: not a regular file\n"


def test_import_trusted_imports_a_repeated_certificate_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    bundle = _write(tmp_path, "dup2.pem", ROOT.pem + ROOT.pem)
    assert cli(data, "import-trusted", str(bundle)) == 0
    captured = capsys.readouterr()
    assert captured.out.count("trusted: CLI Test Root") == 1
    assert captured.err == (
        f"sipua: warning: {bundle} holds certificate 'CLI Test Root' (SHA-256 "
        f"{ROOT.fingerprint[:16]}...) more than once; it is imported once\n"
    )
    assert [s.fingerprint for s in CertStore(data).trusted.custom()] == [ROOT.fingerprint]


def test_list_reports_a_truncated_device_ca_as_corrupt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert cli(data, "export-ca") == 0
    ca = data / "certs" / "device-ca.pem"
    text = ca.read_bytes()
    ca.write_bytes(text[: text.index(b"-----BEGIN CERTIFICATE-----") + 40])
    capsys.readouterr()
    corrupt = (
        f"the device CA file {ca} is corrupt; remove it to create a new device CA (registrars "
        "that trust the old one must then trust the new one: `sipua cert export-ca`)"
    )
    assert cli(data, "list") == 0
    assert capsys.readouterr().err == f"sipua: warning: {corrupt}\n"
    assert cli(data, "export-ca") == 2
    assert capsys.readouterr().err == f"sipua: error: {corrupt}\n"
