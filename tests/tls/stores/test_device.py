"""`DeviceStore`: the device CA, the unique, generic and custom device certificates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from sipua.errors import CertificateError, ConfigError, StoreError
from sipua.tls import verify_chain
from sipua.tls.stores import issuing
from sipua.tls.stores.store import CertStore
from tests.support.certs import Issued, make_ca, make_leaf, pem_bundle
from tests.tls.stores.common import MAC, mode_of, store_at, write_file

# -- device ----------------------------------------------------------------------------------


def _is_issued_by(cert: x509.Certificate, ca: x509.Certificate) -> None:
    cert.verify_directly_issued_by(ca)


def test_unique_device_certificate(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    identity = store.devices.identity("default", MAC)
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
    assert mode_of(path) == 0o600
    assert mode_of(store.directory / "device-ca.pem") == 0o600
    # Stable: the second call reads the stored certificate.
    assert store.devices.identity("default", "00-15-65-aa-bb-cc").certificate == cert
    assert "private_key" not in repr(identity)
    assert "PRIVATE" not in repr(identity)


def test_device_certificates_verify_as_server_and_client(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    identity = store.devices.identity("default", MAC)
    for purpose in ("server", "client"):
        result = verify_chain(
            [identity.certificate, *identity.chain],
            name=None,
            trusted=[store.devices.ca().certificate],
            default_trusted=[],
            purpose=purpose,  # type: ignore[arg-type]
        )
        assert result.verified, result.reason


def test_generic_when_no_mac(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sipua.tls.stores.issuing.machine_mac", lambda: None)
    store = store_at(tmp_path)
    identity = store.devices.identity("default")
    assert identity.kind == "generic"
    assert identity.chain[0] == store.devices.ca().certificate


def test_machine_mac_with_multicast_bit_is_no_mac(monkeypatch: pytest.MonkeyPatch) -> None:
    from sipua.tls.stores import issuing as device

    monkeypatch.setattr("uuid.getnode", lambda: 0x0100_0000_0000 | 0x1234)
    assert device.machine_mac() is None
    monkeypatch.setattr("uuid.getnode", lambda: 0x0015_65AA_BBCC)
    assert device.machine_mac() == "001565aabbcc"


def test_invalid_mac(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid MAC address"):
        store_at(tmp_path).devices.identity("default", "not-a-mac")


def test_device_certificate_renewed_near_expiry(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    first = store.devices.identity("default", MAC)
    later = first.certificate.not_valid_after_utc - dt.timedelta(days=5)
    renewed = store.devices.identity("default", MAC, now=later)
    assert renewed.certificate != first.certificate
    assert renewed.certificate.not_valid_after_utc > later


@pytest.mark.parametrize("choice", ["default", "generic"])
def test_a_device_certificate_that_ends_with_its_ca_is_issued_once_and_kept(
    tmp_path: Path, choice: str
) -> None:
    store = store_at(tmp_path)
    ca_end = store.devices.ca().certificate.not_valid_after_utc
    near = ca_end - dt.timedelta(days=10)
    first = store.devices.identity(choice, MAC, now=near)  # type: ignore[arg-type]
    assert first.certificate.not_valid_after_utc == ca_end  # capped at the CA's end
    for later in (near, near + dt.timedelta(hours=1), ca_end - dt.timedelta(days=1)):
        again = store.devices.identity(choice, MAC, now=later)  # type: ignore[arg-type]
        assert again.certificate == first.certificate  # no new key at every check
    assert store.problems == []


def test_a_certificate_ending_before_its_ca_is_renewed_up_to_the_ca_end(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    ca_end = store.devices.ca().certificate.not_valid_after_utc
    # Issued years later, when a full term still fits: it ends 20 days before the CA.
    issued_at = ca_end - dt.timedelta(days=issuing.DEVICE_CERT_DAYS + 20)
    early = store.devices.identity("generic", now=issued_at)
    assert early.certificate.not_valid_after_utc == ca_end - dt.timedelta(days=20)
    # Within 30 days of its end: renewed once, up to the CA's end, then kept.
    renew_at = ca_end - dt.timedelta(days=25)
    renewed = store.devices.identity("generic", now=renew_at)
    assert renewed.certificate != early.certificate
    assert renewed.certificate.not_valid_after_utc == ca_end
    kept = store.devices.identity("generic", now=renew_at + dt.timedelta(days=1))
    assert kept.certificate == renewed.certificate


@pytest.mark.parametrize("choice", ["default", "generic"])
def test_an_ended_device_ca_is_a_certificate_error_saying_what_to_do(
    tmp_path: Path, choice: str
) -> None:
    store = store_at(tmp_path)
    ca = store.devices.ca()
    after = ca.certificate.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(CertificateError) as ended:
        store.devices.identity(choice, MAC, now=after)  # type: ignore[arg-type]
    message = str(ended.value)
    assert f"the device CA {ca.name!r} ended on" in message
    assert f"remove {store.devices.ca_path}" in message
    assert "sipua cert export-ca" in message
    # Nothing was written: the same CA is still there for `sipua cert export-ca` and `list`.
    assert store.devices.ca().fingerprint == ca.fingerprint


def test_device_ca_is_created_once(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    assert store.devices.ca().fingerprint == store.devices.ca().fingerprint
    assert CertStore(store.data_dir).devices.ca().fingerprint == store.devices.ca().fingerprint


def test_readable_key_file_is_refused(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.devices.identity("default", MAC)
    (store.directory / "device-ca.pem").chmod(0o644)
    with pytest.raises(StoreError, match="chmod 600"):
        store.devices.identity("default", MAC)


def test_corrupt_device_file_is_reissued_and_reported(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    first = store.devices.identity("default", MAC)
    path = store.directory / "device-001565aabbcc.pem"
    path.write_bytes(b"garbage")
    again = store.devices.identity("default", MAC)
    assert again.certificate != first.certificate
    assert any("device-001565aabbcc.pem" in p for p in store.problems)


def test_corrupt_device_ca_is_an_error(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.devices.ca()
    (store.directory / "device-ca.pem").write_bytes(b"garbage")
    with pytest.raises(StoreError, match=r"device CA file .* is corrupt"):
        store.devices.ca()


def _truncated_in_the_certificate(path: Path) -> None:
    # What a crash of a non-atomic copy or a full disk leaves: the key whole, the certificate cut.
    data = path.read_bytes()
    cut = data.index(b"-----BEGIN CERTIFICATE-----") + 40
    path.write_bytes(data[:cut])


def test_a_truncated_device_file_is_reported_as_the_corrupt_store_file_it_is(
    tmp_path: Path,
) -> None:
    store = store_at(tmp_path)
    store.devices.identity("generic")
    store.devices.import_files(_device_files(tmp_path, make_leaf(None, cn="cut.example.com")))
    for name in ("device-ca.pem", "device-generic.pem", "device-custom.pem"):
        _truncated_in_the_certificate(store.directory / name)
    fresh = store_at(tmp_path)
    assert fresh.devices.certificates() == []
    ca, custom, generic = (
        fresh.directory / n for n in ("device-ca.pem", "device-custom.pem", "device-generic.pem")
    )
    assert fresh.problems == [
        f"the device CA file {ca} is corrupt; remove it to create a new device CA (registrars "
        "that trust the old one must then trust the new one: `sipua cert export-ca`)",
        f"the custom device certificate file {custom} is corrupt; import the certificate "
        "again, or remove it with `sipua cert remove-device`",
        f"the device certificate file {generic} is corrupt; sipua issues a new one when it is "
        "next used",
    ]
    assert not any("private key" in p for p in fresh.problems)
    with pytest.raises(StoreError) as refused:
        fresh.devices.identity("custom")
    assert str(refused.value) == fresh.problems[1]


def test_a_device_file_whose_key_is_not_its_certificates_is_corrupt(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.devices.identity("generic")
    path = store.directory / "device-generic.pem"
    other = make_leaf(None)
    data = path.read_bytes()
    path.write_bytes(other.key_pem + data[data.index(b"-----BEGIN CERTIFICATE-----") :])
    assert store.devices.certificates()[0].kind == "device-ca"
    assert store.problems == [
        f"the device certificate file {path} is corrupt (its key does not match its "
        "certificate); sipua issues a new one when it is next used"
    ]


def _device_files(tmp_path: Path, leaf: Issued, *, chain: Issued | None = None) -> Path:
    return write_file(
        tmp_path, "device.pem", leaf.key_pem + pem_bundle(leaf, *([chain] if chain else []))
    )


def test_custom_device_key_in_same_file(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    ca = make_ca("Custom Device CA")
    leaf = make_leaf(ca, cn="phone.example.com")
    stored = store.devices.import_files(_device_files(tmp_path, leaf, chain=ca))
    assert stored.fingerprint == leaf.fingerprint
    identity = store.devices.identity("custom")
    assert (identity.kind, identity.certificate, identity.chain) == (
        "custom",
        leaf.cert,
        (ca.cert,),
    )
    assert mode_of(store.directory / "device-custom.pem") == 0o600


def test_custom_device_separate_key_and_replacement(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    first = make_leaf(None, cn="first.example.com")
    second = make_leaf(None, cn="second.example.com")
    store.devices.import_files(
        write_file(tmp_path, "first.cer", first.pem),
        write_file(tmp_path, "first.key", first.key_pem),
    )
    store.devices.import_files(
        write_file(tmp_path, "second.pem", second.der),
        write_file(tmp_path, "second.key", second.key_pem),
    )
    assert store.devices.identity("custom").certificate == second.cert
    kinds = [s.kind for s in store.devices.certificates()]
    assert kinds.count("custom") == 1


def test_custom_device_encrypted_key(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    leaf = make_leaf(None)
    cert = write_file(tmp_path, "d.pem", leaf.pem)
    key = write_file(tmp_path, "d.key", leaf.encrypted_key_pem(b"s3cret"))
    with pytest.raises(CertificateError, match="encrypted") as info:
        store.devices.import_files(cert, key)
    assert "s3cret" not in str(info.value)
    store.devices.import_files(cert, key, passphrase=b"s3cret")
    assert store.devices.identity("custom").certificate == leaf.cert


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no-key", "holds no private key"),
        ("mismatch", "does not match"),
        ("wrong-extension", "unsupported file type"),
    ],
)
def test_custom_device_refusals(tmp_path: Path, setup: str, message: str) -> None:
    store = store_at(tmp_path)
    leaf, other = make_leaf(None), make_leaf(None)
    if setup == "no-key":
        args = (write_file(tmp_path, "d.pem", leaf.pem), None)
    elif setup == "mismatch":
        args = (
            write_file(tmp_path, "d.pem", leaf.pem),
            write_file(tmp_path, "o.key", other.key_pem),
        )
    else:
        args = (write_file(tmp_path, "d.crt", leaf.key_pem + leaf.pem), None)
    with pytest.raises(CertificateError, match=message):
        store.devices.import_files(*args)
    assert not (store.directory / "device-custom.pem").exists()


def test_custom_choice_without_import(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no custom device certificate"):
        store_at(tmp_path).devices.identity("custom")


def test_remove_device(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    leaf = make_leaf(None, cn="gone.example.com")
    store.devices.import_files(_device_files(tmp_path, leaf))
    removed = store.devices.remove()
    assert removed is not None
    assert removed.name == "gone.example.com"
    with pytest.raises(StoreError, match="no custom device certificate"):
        store.devices.remove()


def test_remove_device_removes_a_readable_or_corrupt_file(tmp_path: Path) -> None:
    # Exactly the files a user needs to remove: one whose key others could read, a corrupt one.
    store = store_at(tmp_path)
    custom = store.directory / "device-custom.pem"
    store.devices.import_files(_device_files(tmp_path, make_leaf(None, cn="leaked.example.com")))
    custom.chmod(0o644)
    removed = store.devices.remove()
    assert removed is not None
    assert removed.name == "leaked.example.com"
    assert not custom.exists()
    store.devices.import_files(_device_files(tmp_path, make_leaf(None, cn="corrupt.example.com")))
    custom.write_bytes(b"garbage")
    assert store.devices.remove() is None
    assert not custom.exists()
