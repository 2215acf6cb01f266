"""`sipua.tls.certs`: loading certificates and keys, and summaries."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from sipua.errors import CertificateError
from sipua.tls.certs import (
    CertSummary,
    key_matches,
    load_certificate_file,
    load_certificates,
    load_private_key,
)
from tests.support.certs import NOW, make_ca, make_leaf, pem_bundle

ROOT = make_ca("Certs Test Root")
LEAF = make_leaf(ROOT, dns=("sip.example.com",), uris=("sip:example.com",), ips=("192.0.2.1",))


def test_pem_single_and_bundle() -> None:
    assert load_certificates(LEAF.pem, source="x") == [LEAF.cert]
    assert load_certificates(pem_bundle(LEAF, ROOT), source="x") == [LEAF.cert, ROOT.cert]


def test_pem_with_text_around_blocks() -> None:
    data = b"Bag Attributes\n" + LEAF.pem + b"trailing words\n"
    assert load_certificates(data, source="x") == [LEAF.cert]


def test_der_detected_by_content() -> None:
    assert load_certificates(LEAF.der, source="x") == [LEAF.cert]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"  \n", "is empty"),
        (b"hello world", "is not a certificate"),
        (b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n", "holds no certificate"),
        (LEAF.key_pem, "holds a private key, not a certificate"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate #1"),
    ],
)
def test_refusals_name_the_source(data: bytes, message: str) -> None:
    with pytest.raises(CertificateError, match=message) as info:
        load_certificates(data, source="upload.pem")
    assert "upload.pem" in str(info.value)


def test_der_private_key_is_recognised() -> None:
    from cryptography.hazmat.primitives import serialization

    der = LEAF.key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(CertificateError, match="private key"):
        load_certificates(der, source="k.der")


@pytest.mark.parametrize("suffix", [".pem", ".cer", ".crt", ".der", ".PEM"])
def test_file_extensions_accepted(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"ca{suffix}"
    path.write_bytes(ROOT.der if suffix == ".der" else ROOT.pem)
    assert load_certificate_file(path) == [ROOT.cert]


def test_file_extension_refused(tmp_path: Path) -> None:
    path = tmp_path / "ca.txt"
    path.write_bytes(ROOT.pem)
    with pytest.raises(CertificateError, match=r"unsupported file type '\.txt'"):
        load_certificate_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="no such file"):
        load_certificate_file(tmp_path / "nope.pem")


def test_private_key_plain_and_encrypted() -> None:
    assert key_matches(LEAF.cert, load_private_key(LEAF.key_pem, source="k"))
    encrypted = LEAF.encrypted_key_pem(b"pw")
    with pytest.raises(CertificateError, match="encrypted; give its passphrase"):
        load_private_key(encrypted, source="k")
    with pytest.raises(CertificateError, match="wrong passphrase"):
        load_private_key(encrypted, source="k", passphrase=b"nope")
    assert key_matches(LEAF.cert, load_private_key(encrypted, source="k", passphrase=b"pw"))
    assert not key_matches(ROOT.cert, load_private_key(LEAF.key_pem, source="k"))


def test_an_empty_passphrase_is_no_passphrase() -> None:
    encrypted_der = LEAF.key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    for encrypted in (LEAF.encrypted_key_pem(b"pw"), encrypted_der):
        with pytest.raises(CertificateError) as refused:
            load_private_key(encrypted, source="k", passphrase=b"")
        assert (
            str(refused.value)
            == "k: the private key is encrypted, and the passphrase given is empty"
        )
    # An unencrypted key with an empty passphrase loads: there is nothing to decrypt.
    plain = load_private_key(LEAF.key_pem, source="k", passphrase=b"")
    assert key_matches(LEAF.cert, plain)
    with pytest.raises(CertificateError, match="k: the private key is not encrypted"):
        load_private_key(LEAF.key_pem, source="k", passphrase=b"pw")


def test_private_key_missing() -> None:
    with pytest.raises(CertificateError, match="holds no private key"):
        load_private_key(LEAF.pem, source="k")


def test_summary() -> None:
    summary = CertSummary.of(LEAF.cert)
    assert summary.name == "sip.example.com"
    assert summary.issuer == "CN=Certs Test Root,O=sipua tests"
    assert summary.fingerprint == LEAF.fingerprint
    assert len(summary.fingerprint) == 64
    assert summary.key == "EC secp256r1 (256 bits)"
    assert summary.signature_hash == "sha256"
    assert summary.subject_alt_names == (
        "DNS:sip.example.com",
        "URI:sip:example.com",
        "IP:192.0.2.1",
    )
    assert not summary.is_ca
    assert CertSummary.of(ROOT.cert).self_signed
    assert summary.not_before < NOW < summary.not_after
    assert summary.as_json()["fingerprint_sha256"] == LEAF.fingerprint
