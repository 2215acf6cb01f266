"""`CertStore`: custom trusted certificates, device identities, on-disk safety."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from sipua.errors import CertificateError, ConfigError, StoreError
from sipua.tls import TrustPolicy, verify_chain
from sipua.tls.stores.store import MAX_CUSTOM_TRUSTED, CertStore
from sipua.tls.trust.anchors import SystemBundle
from tests.support.certs import NOW, Issued, make_ca, make_leaf, pem_bundle

SYSTEM_ROOT = make_ca("Store System Root")
MAC = "00:15:65:AA:BB:CC"


def _store(tmp_path: Path) -> CertStore:
    bundle = SystemBundle(path=None, certificates=(SYSTEM_ROOT.cert,))
    return CertStore(tmp_path / "data", system=bundle)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- trusted ---------------------------------------------------------------------------------


def test_import_list_and_trusted_sets(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ca = make_ca("Store Custom CA")
    imported = store.import_trusted(_write(tmp_path, "ca.crt", ca.der))
    assert [s.fingerprint for s in imported] == [ca.fingerprint]
    assert [s.name for s in store.custom_trusted()] == ["Store Custom CA"]
    assert store.trusted("custom") == [ca.cert]
    assert store.trusted("default") == [SYSTEM_ROOT.cert]
    assert store.trusted("all") == [SYSTEM_ROOT.cert, ca.cert]
    assert [s.type for s in store.default_trusted()] == ["default"]
    assert _mode(store.directory) == 0o700
    with pytest.raises(ValueError, match="accepted_ca"):
        store.trusted("everything")  # type: ignore[arg-type]


def test_pem_bundle_imports_each_certificate(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a, b = make_ca("Bundle A"), make_ca("Bundle B")
    store.import_trusted(_write(tmp_path, "two.pem", pem_bundle(a, b)))
    assert [s.name for s in store.custom_trusted()] == ["Bundle A", "Bundle B"]


def test_eleventh_custom_certificate_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    cas = [make_ca(f"Limit CA {i}") for i in range(MAX_CUSTOM_TRUSTED + 1)]
    store.import_trusted(_write(tmp_path, "ten.pem", pem_bundle(*cas[:-1])))
    with pytest.raises(StoreError, match="at most 10"):
        store.import_trusted(_write(tmp_path, "eleven.pem", cas[-1].pem))
    assert len(store.custom_trusted()) == MAX_CUSTOM_TRUSTED


def test_bundle_over_the_limit_imports_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    cas = [make_ca(f"Over CA {i}") for i in range(MAX_CUSTOM_TRUSTED + 1)]
    with pytest.raises(StoreError, match="would make 11"):
        store.import_trusted(_write(tmp_path, "many.pem", pem_bundle(*cas)))
    assert store.custom_trusted() == []


def test_duplicate_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ca = make_ca("Dup CA")
    store.import_trusted(_write(tmp_path, "ca.pem", ca.pem))
    with pytest.raises(StoreError, match="already trusted"):
        store.import_trusted(_write(tmp_path, "ca.der", ca.der))
    with pytest.raises(StoreError, match="already trusted"):
        store.import_trusted(_write(tmp_path, "twice.pem", pem_bundle(make_ca("New"), ca)))
    assert len(store.custom_trusted()) == 1


@pytest.mark.parametrize(
    ("name", "data", "error", "message"),
    [
        ("ca.txt", make_ca("Ext CA").pem, CertificateError, "unsupported file type"),
        ("key.pem", make_leaf(None).key_pem, CertificateError, "private key"),
        ("junk.crt", b"junk", CertificateError, "not a certificate"),
        ("empty.pem", b"", CertificateError, "empty"),
    ],
)
def test_import_trusted_refusals(
    tmp_path: Path, name: str, data: bytes, error: type[Exception], message: str
) -> None:
    store = _store(tmp_path)
    with pytest.raises(error, match=message):
        store.import_trusted(_write(tmp_path, name, data))
    assert store.custom_trusted() == []


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="no such file"):
        _store(tmp_path).import_trusted(tmp_path / "missing.pem")


def test_remove_by_fingerprint_prefix_and_name(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a, b = make_ca("Remove A"), make_ca("Remove B")
    store.import_trusted(_write(tmp_path, "ab.pem", pem_bundle(a, b)))
    assert store.remove_trusted(a.fingerprint[:10].upper()).name == "Remove A"
    assert store.remove_trusted("remove b").fingerprint == b.fingerprint
    assert store.custom_trusted() == []
    with pytest.raises(StoreError, match="no custom trusted certificate matches"):
        store.remove_trusted("Remove A")


def test_ambiguous_name_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.import_trusted(_write(tmp_path, "s.pem", pem_bundle(make_ca("Same"), make_ca("Same"))))
    with pytest.raises(StoreError, match="matches several"):
        store.remove_trusted("Same")


def test_corrupt_entry_is_reported_and_others_load(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a, b = make_ca("Corrupt A"), make_ca("Corrupt B")
    store.import_trusted(_write(tmp_path, "ab.pem", pem_bundle(a, b)))
    path = store.directory / "trusted.pem"
    text = path.read_bytes()
    first = text.index(b"-----BEGIN CERTIFICATE-----\n") + len(b"-----BEGIN CERTIFICATE-----\n")
    path.write_bytes(text[:first] + b"AAAA" + text[first + 4 :])
    assert [s.name for s in store.custom_trusted()] == ["Corrupt B"]
    assert len(store.problems) == 1
    assert "entry #1" in store.problems[0]


def test_store_anchors_feed_verify_chain(tmp_path: Path) -> None:
    store = _store(tmp_path)
    custom = make_ca("Feed Custom CA")
    store.import_trusted(_write(tmp_path, "ca.pem", custom.pem))
    leaf = make_leaf(custom, uris=("sip:example.com",))
    system_leaf = make_leaf(SYSTEM_ROOT, uris=("sip:example.com",))
    defaults = store.trusted("default")
    for accepted, chain, code in [
        ("custom", leaf, "ok"),
        ("default", leaf, "ca-type-not-accepted"),
        ("default", system_leaf, "ok"),
        ("custom", system_leaf, "ca-type-not-accepted"),
    ]:
        result = verify_chain(
            [chain.cert],
            name="example.com",
            trusted=store.trusted("custom"),
            default_trusted=defaults,
            policy=TrustPolicy(accepted_ca=accepted),  # type: ignore[arg-type]
            at=NOW,
        )
        assert result.code == code, (accepted, result.reason)


# -- device ----------------------------------------------------------------------------------


def _is_issued_by(cert: x509.Certificate, ca: x509.Certificate) -> None:
    cert.verify_directly_issued_by(ca)


def test_unique_device_certificate(tmp_path: Path) -> None:
    store = _store(tmp_path)
    identity = store.device_identity("default", MAC)
    assert identity.kind == "unique"
    cert = identity.certificate
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert cn == "sipua-001565aabbcc"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:dev:mac:001565aabbcc"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {
        x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
        x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert isinstance(identity.private_key, ec.EllipticCurvePrivateKey)
    assert identity.private_key.curve.name == "secp256r1"
    (ca,) = identity.chain
    _is_issued_by(cert, ca)
    assert cert.not_valid_before_utc < dt.datetime.now(dt.UTC) - dt.timedelta(minutes=50)
    path = store.directory / "device-001565aabbcc.pem"
    assert _mode(path) == 0o600
    assert _mode(store.directory / "device-ca.pem") == 0o600
    # Stable: the second call reads the stored certificate.
    assert store.device_identity("default", "00-15-65-aa-bb-cc").certificate == cert
    assert "private_key" not in repr(identity)
    assert "PRIVATE" not in repr(identity)


def test_device_certificates_verify_as_server_and_client(tmp_path: Path) -> None:
    store = _store(tmp_path)
    identity = store.device_identity("default", MAC)
    for purpose in ("server", "client"):
        result = verify_chain(
            [identity.certificate, *identity.chain],
            name=None,
            trusted=[store.device_ca().certificate],
            default_trusted=[],
            purpose=purpose,  # type: ignore[arg-type]
        )
        assert result.verified, result.reason


def test_generic_when_no_mac(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sipua.tls.stores.issuing.machine_mac", lambda: None)
    store = _store(tmp_path)
    identity = store.device_identity("default")
    assert identity.kind == "generic"
    assert identity.chain[0] == store.device_ca().certificate


def test_machine_mac_with_multicast_bit_is_no_mac(monkeypatch: pytest.MonkeyPatch) -> None:
    from sipua.tls.stores import issuing as device

    monkeypatch.setattr("uuid.getnode", lambda: 0x0100_0000_0000 | 0x1234)
    assert device.machine_mac() is None
    monkeypatch.setattr("uuid.getnode", lambda: 0x0015_65AA_BBCC)
    assert device.machine_mac() == "001565aabbcc"


def test_invalid_mac(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid MAC address"):
        _store(tmp_path).device_identity("default", "not-a-mac")


def test_device_certificate_renewed_near_expiry(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = store.device_identity("default", MAC)
    later = first.certificate.not_valid_after_utc - dt.timedelta(days=5)
    renewed = store.device_identity("default", MAC, now=later)
    assert renewed.certificate != first.certificate
    assert renewed.certificate.not_valid_after_utc > later


def test_device_ca_is_created_once(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.device_ca().fingerprint == store.device_ca().fingerprint
    assert CertStore(store.data_dir).device_ca().fingerprint == store.device_ca().fingerprint


def test_readable_key_file_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.device_identity("default", MAC)
    (store.directory / "device-ca.pem").chmod(0o644)
    with pytest.raises(StoreError, match="chmod 600"):
        store.device_identity("default", MAC)


def test_corrupt_device_file_is_reissued_and_reported(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = store.device_identity("default", MAC)
    path = store.directory / "device-001565aabbcc.pem"
    path.write_bytes(b"garbage")
    again = store.device_identity("default", MAC)
    assert again.certificate != first.certificate
    assert any("device-001565aabbcc.pem" in p for p in store.problems)


def test_corrupt_device_ca_is_an_error(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.device_ca()
    (store.directory / "device-ca.pem").write_bytes(b"garbage")
    with pytest.raises(StoreError, match=r"device CA file .* is corrupt"):
        store.device_ca()


def _device_files(tmp_path: Path, leaf: Issued, *, chain: Issued | None = None) -> Path:
    return _write(
        tmp_path, "device.pem", leaf.key_pem + pem_bundle(leaf, *([chain] if chain else []))
    )


def test_custom_device_key_in_same_file(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ca = make_ca("Custom Device CA")
    leaf = make_leaf(ca, cn="phone.example.com")
    stored = store.import_device(_device_files(tmp_path, leaf, chain=ca))
    assert stored.fingerprint == leaf.fingerprint
    identity = store.device_identity("custom")
    assert (identity.kind, identity.certificate, identity.chain) == (
        "custom",
        leaf.cert,
        (ca.cert,),
    )
    assert _mode(store.directory / "device-custom.pem") == 0o600


def test_custom_device_separate_key_and_replacement(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = make_leaf(None, cn="first.example.com")
    second = make_leaf(None, cn="second.example.com")
    store.import_device(
        _write(tmp_path, "first.cer", first.pem), _write(tmp_path, "first.key", first.key_pem)
    )
    store.import_device(
        _write(tmp_path, "second.pem", second.der), _write(tmp_path, "second.key", second.key_pem)
    )
    assert store.device_identity("custom").certificate == second.cert
    kinds = [s.kind for s in store.device_certificates()]
    assert kinds.count("custom") == 1


def test_custom_device_encrypted_key(tmp_path: Path) -> None:
    store = _store(tmp_path)
    leaf = make_leaf(None)
    cert = _write(tmp_path, "d.pem", leaf.pem)
    key = _write(tmp_path, "d.key", leaf.encrypted_key_pem(b"s3cret"))
    with pytest.raises(CertificateError, match="encrypted") as info:
        store.import_device(cert, key)
    assert "s3cret" not in str(info.value)
    store.import_device(cert, key, passphrase=b"s3cret")
    assert store.device_identity("custom").certificate == leaf.cert


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no-key", "holds no private key"),
        ("mismatch", "does not match"),
        ("wrong-extension", "unsupported file type"),
    ],
)
def test_custom_device_refusals(tmp_path: Path, setup: str, message: str) -> None:
    store = _store(tmp_path)
    leaf, other = make_leaf(None), make_leaf(None)
    if setup == "no-key":
        args = (_write(tmp_path, "d.pem", leaf.pem), None)
    elif setup == "mismatch":
        args = (_write(tmp_path, "d.pem", leaf.pem), _write(tmp_path, "o.key", other.key_pem))
    else:
        args = (_write(tmp_path, "d.crt", leaf.key_pem + leaf.pem), None)
    with pytest.raises(CertificateError, match=message):
        store.import_device(*args)
    assert not (store.directory / "device-custom.pem").exists()


def test_custom_choice_without_import(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no custom device certificate"):
        _store(tmp_path).device_identity("custom")


def test_remove_device(tmp_path: Path) -> None:
    store = _store(tmp_path)
    leaf = make_leaf(None, cn="gone.example.com")
    store.import_device(_device_files(tmp_path, leaf))
    removed = store.remove_device()
    assert removed is not None
    assert removed.name == "gone.example.com"
    with pytest.raises(StoreError, match="no custom device certificate"):
        store.remove_device()


def test_remove_device_removes_a_readable_or_corrupt_file(tmp_path: Path) -> None:
    # Exactly the files a user needs to remove: one whose key others could read, a corrupt one.
    store = _store(tmp_path)
    custom = store.directory / "device-custom.pem"
    store.import_device(_device_files(tmp_path, make_leaf(None, cn="leaked.example.com")))
    custom.chmod(0o644)
    removed = store.remove_device()
    assert removed is not None
    assert removed.name == "leaked.example.com"
    assert not custom.exists()
    store.import_device(_device_files(tmp_path, make_leaf(None, cn="corrupt.example.com")))
    custom.write_bytes(b"garbage")
    assert store.remove_device() is None
    assert not custom.exists()


def test_find_across_lists(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.device_identity("default", MAC)
    assert store.find("sipua-001565aabbcc").kind == "unique"
    assert store.find("Store System Root").kind == "default"
    with pytest.raises(StoreError, match="no certificate matches"):
        store.find("nothing")


def _overfull_trusted_file(tmp_path: Path) -> tuple[CertStore, list[Issued], Path]:
    """A trusted.pem edited by hand: 10 imported, an 11th appended, and an unreadable entry."""
    store = _store(tmp_path)
    cas = [make_ca(f"Overfull CA {i}") for i in range(11)]
    store.import_trusted(_write(tmp_path, "ten.pem", pem_bundle(*cas[:10])))
    path = store.directory / "trusted.pem"
    garbage = b"-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n"
    path.write_bytes(path.read_bytes() + cas[10].pem + garbage)
    return store, cas, path


def test_remove_trusted_keeps_every_other_entry(tmp_path: Path) -> None:
    store, cas, path = _overfull_trusted_file(tmp_path)
    assert len(store.custom_trusted()) == MAX_CUSTOM_TRUSTED
    assert any("only the first 10 are used" in p for p in store.problems)
    garbage_block = path.read_bytes()[path.read_bytes().rindex(b"-----BEGIN") :]
    store.remove_trusted(cas[0].fingerprint)
    text = path.read_bytes()
    assert text.count(b"-----BEGIN CERTIFICATE-----") == 11  # 12 entries, one removed
    assert garbage_block in text  # the unreadable entry is kept byte for byte
    remaining = {s.fingerprint for s in _store(tmp_path).custom_trusted()}
    assert remaining == {ca.fingerprint for ca in cas[1:]}
    # The 11th, beyond the limit, can be removed too.
    store.remove_trusted(cas[10].fingerprint)
    assert path.read_bytes().count(b"-----BEGIN CERTIFICATE-----") == 10


def test_import_refuses_to_rewrite_a_file_with_unreadable_entries(tmp_path: Path) -> None:
    store, _, path = _overfull_trusted_file(tmp_path)
    before = path.read_bytes()
    new = _write(tmp_path, "new.pem", make_ca("Overfull New").pem)
    with pytest.raises(StoreError, match=r"unreadable entries \(#12\); delete them"):
        store.import_trusted(new)
    assert path.read_bytes() == before


def test_import_refuses_when_the_file_is_over_the_limit(tmp_path: Path) -> None:
    store, cas, path = _overfull_trusted_file(tmp_path)
    store.remove_trusted(cas[0].fingerprint)  # 10 readable left + the unreadable one
    text = path.read_bytes()
    path.write_bytes(text[: text.rindex(b"-----BEGIN")])  # drop the unreadable entry
    with pytest.raises(StoreError, match="at most 10 are allowed"):
        store.import_trusted(_write(tmp_path, "new.pem", make_ca("Overfull New").pem))


@pytest.mark.parametrize("where", ["file", "directory"])
def test_trusted_file_writable_by_others_is_ignored(tmp_path: Path, where: str) -> None:
    store = _store(tmp_path)
    ca = make_ca("Writable CA")
    store.import_trusted(_write(tmp_path, "ca.pem", ca.pem))
    target = store.directory / "trusted.pem" if where == "file" else store.directory
    target.chmod(_mode(target) | 0o020)
    assert store.custom_trusted() == []
    assert ca.cert not in store.trusted("all")
    assert any(f"chmod go-w {target}" in p for p in store.problems), store.problems
    # Nothing is rewritten on top of it either.
    with pytest.raises(StoreError, match="chmod go-w"):
        store.import_trusted(_write(tmp_path, "ca2.pem", make_ca("Writable CA 2").pem))
    target.chmod(_mode(target) & ~0o022)
    assert [s.fingerprint for s in store.custom_trusted()] == [ca.fingerprint]


def test_trusted_file_of_another_user_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    store.import_trusted(_write(tmp_path, "ca.pem", make_ca("Foreign CA").pem))
    owner = (store.directory / "trusted.pem").stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    assert store.custom_trusted() == []
    assert any("chown" in p and "owned by user id" in p for p in store.problems), store.problems


# -- concurrent processes --------------------------------------------------------------------

#: Run by each racing process: wait at a barrier (so all of them hit the store at once), then
#: do one store operation and print its result.
_RACER = """
import sys, time
from pathlib import Path
from sipua.tls.trust.anchors import SystemBundle
from sipua.tls.stores.store import CertStore
barrier, index, data, op, arg = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), *sys.argv[4:6]
(barrier / f"ready-{index}").touch()
deadline = time.monotonic() + 60
while not (barrier / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.001)
store = CertStore(data, system=SystemBundle(path=None, certificates=()))
if op == "import":
    print(store.import_trusted(Path(arg))[0].fingerprint)
else:
    print(store.device_ca().fingerprint)
"""


def _race(tmp_path: Path, jobs: list[tuple[str, str]]) -> list[str]:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    data = tmp_path / "data"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(barrier), str(i), str(data), op, arg],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, (op, arg) in enumerate(jobs)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(barrier.glob("ready-*"))) < len(jobs) and time.monotonic() < deadline:
            time.sleep(0.01)
        (barrier / "go").touch()
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    return [out.strip() for out, _ in outputs]


def test_parallel_imports_are_all_kept(tmp_path: Path) -> None:
    cas = [make_ca(f"Parallel CA {i}") for i in range(8)]
    files = [_write(tmp_path, f"ca{i}.pem", ca.pem) for i, ca in enumerate(cas)]
    printed = _race(tmp_path, [("import", str(f)) for f in files])
    assert sorted(printed) == sorted(ca.fingerprint for ca in cas)
    stored = CertStore(tmp_path / "data", system=SystemBundle(path=None, certificates=()))
    assert sorted(s.fingerprint for s in stored.custom_trusted()) == sorted(printed)


def test_parallel_first_starts_create_one_device_ca(tmp_path: Path) -> None:
    printed = _race(tmp_path, [("device-ca", "")] * 4)
    assert len(set(printed)) == 1, printed
    stored = CertStore(tmp_path / "data", system=SystemBundle(path=None, certificates=()))
    assert stored.device_ca().fingerprint == printed[0]
