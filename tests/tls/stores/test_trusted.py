"""`TrustedStore`: custom trusted certificates on disk, their limits and their safety."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sipua.errors import CertificateError, StoreError
from sipua.tls import TrustPolicy, verify_chain
from sipua.tls.stores.store import CertStore
from sipua.tls.stores.trusted import MAX_CUSTOM_TRUSTED
from tests.support.certs import NOW, Issued, make_ca, make_leaf, pem_bundle
from tests.tls.stores.common import SYSTEM_ROOT, mode_of, store_at, write_file

# -- trusted ---------------------------------------------------------------------------------


def test_import_list_and_trusted_sets(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    ca = make_ca("Store Custom CA")
    imported = store.trusted.import_file(write_file(tmp_path, "ca.crt", ca.der))
    assert [s.fingerprint for s in imported] == [ca.fingerprint]
    assert [s.name for s in store.trusted.custom()] == ["Store Custom CA"]
    assert store.trusted.anchors("custom") == [ca.cert]
    assert store.trusted.anchors("default") == [SYSTEM_ROOT.cert]
    assert store.trusted.anchors("all") == [SYSTEM_ROOT.cert, ca.cert]
    assert [s.type for s in store.trusted.default()] == ["default"]
    assert mode_of(store.directory) == 0o700
    with pytest.raises(ValueError, match="accepted_ca"):
        store.trusted.anchors("everything")  # type: ignore[arg-type]


def test_pem_bundle_imports_each_certificate(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    a, b = make_ca("Bundle A"), make_ca("Bundle B")
    store.trusted.import_file(write_file(tmp_path, "two.pem", pem_bundle(a, b)))
    assert [s.name for s in store.trusted.custom()] == ["Bundle A", "Bundle B"]


def test_eleventh_custom_certificate_is_refused(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    cas = [make_ca(f"Limit CA {i}") for i in range(MAX_CUSTOM_TRUSTED + 1)]
    store.trusted.import_file(write_file(tmp_path, "ten.pem", pem_bundle(*cas[:-1])))
    with pytest.raises(StoreError, match="at most 10"):
        store.trusted.import_file(write_file(tmp_path, "eleven.pem", cas[-1].pem))
    assert len(store.trusted.custom()) == MAX_CUSTOM_TRUSTED


def test_bundle_over_the_limit_imports_nothing(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    cas = [make_ca(f"Over CA {i}") for i in range(MAX_CUSTOM_TRUSTED + 1)]
    with pytest.raises(StoreError, match="would make 11"):
        store.trusted.import_file(write_file(tmp_path, "many.pem", pem_bundle(*cas)))
    assert store.trusted.custom() == []


def test_duplicate_is_refused(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    ca = make_ca("Dup CA")
    store.trusted.import_file(write_file(tmp_path, "ca.pem", ca.pem))
    with pytest.raises(StoreError, match="already trusted"):
        store.trusted.import_file(write_file(tmp_path, "ca.der", ca.der))
    with pytest.raises(StoreError, match="already trusted"):
        store.trusted.import_file(write_file(tmp_path, "twice.pem", pem_bundle(make_ca("New"), ca)))
    assert len(store.trusted.custom()) == 1


def test_a_certificate_repeated_in_one_file_is_imported_once(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    ca = make_ca("Twice CA")
    imported = store.trusted.import_file(write_file(tmp_path, "dup.pem", pem_bundle(ca, ca)))
    assert [s.fingerprint for s in imported] == [ca.fingerprint]
    assert [s.fingerprint for s in store.trusted.custom()] == [ca.fingerprint]
    assert store.problems == [
        f"{tmp_path / 'dup.pem'} holds certificate 'Twice CA' (SHA-256 {ca.fingerprint[:16]}...) "
        "more than once; it is imported once"
    ]


def test_the_limit_counts_distinct_certificates(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    cas = [make_ca(f"Distinct CA {i}") for i in range(MAX_CUSTOM_TRUSTED)]
    bundle = pem_bundle(*cas, cas[0], cas[-1])
    assert len(store.trusted.import_file(write_file(tmp_path, "ten.pem", bundle))) == 10
    assert len(store.trusted.custom()) == MAX_CUSTOM_TRUSTED


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
    store = store_at(tmp_path)
    with pytest.raises(error, match=message):
        store.trusted.import_file(write_file(tmp_path, name, data))
    assert store.trusted.custom() == []


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="no such file"):
        store_at(tmp_path).trusted.import_file(tmp_path / "missing.pem")


def test_remove_by_fingerprint_prefix_and_name(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    a, b = make_ca("Remove A"), make_ca("Remove B")
    store.trusted.import_file(write_file(tmp_path, "ab.pem", pem_bundle(a, b)))
    assert store.trusted.remove(a.fingerprint[:10].upper()).name == "Remove A"
    assert store.trusted.remove("remove b").fingerprint == b.fingerprint
    assert store.trusted.custom() == []
    with pytest.raises(StoreError, match="no custom trusted certificate matches"):
        store.trusted.remove("Remove A")


def test_ambiguous_name_is_refused(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.trusted.import_file(
        write_file(tmp_path, "s.pem", pem_bundle(make_ca("Same"), make_ca("Same")))
    )
    with pytest.raises(StoreError, match="matches several"):
        store.trusted.remove("Same")


def test_corrupt_entry_is_reported_and_others_load(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    a, b = make_ca("Corrupt A"), make_ca("Corrupt B")
    store.trusted.import_file(write_file(tmp_path, "ab.pem", pem_bundle(a, b)))
    path = store.directory / "trusted.pem"
    text = path.read_bytes()
    first = text.index(b"-----BEGIN CERTIFICATE-----\n") + len(b"-----BEGIN CERTIFICATE-----\n")
    path.write_bytes(text[:first] + b"AAAA" + text[first + 4 :])
    assert [s.name for s in store.trusted.custom()] == ["Corrupt B"]
    assert len(store.problems) == 1
    assert "entry #1" in store.problems[0]


def test_store_anchors_feed_verify_chain(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    custom = make_ca("Feed Custom CA")
    store.trusted.import_file(write_file(tmp_path, "ca.pem", custom.pem))
    leaf = make_leaf(custom, uris=("sip:example.com",))
    system_leaf = make_leaf(SYSTEM_ROOT, uris=("sip:example.com",))
    defaults = store.trusted.anchors("default")
    for accepted, chain, code in [
        ("custom", leaf, "ok"),
        ("default", leaf, "ca-type-not-accepted"),
        ("default", system_leaf, "ok"),
        ("custom", system_leaf, "ca-type-not-accepted"),
    ]:
        result = verify_chain(
            [chain.cert],
            name="example.com",
            trusted=store.trusted.anchors("custom"),
            default_trusted=defaults,
            policy=TrustPolicy(accepted_ca=accepted),  # type: ignore[arg-type]
            at=NOW,
        )
        assert result.code == code, (accepted, result.reason)


def _overfull_trusted_file(tmp_path: Path) -> tuple[CertStore, list[Issued], Path]:
    """A trusted.pem edited by hand: 10 imported, an 11th appended, and an unreadable entry."""
    store = store_at(tmp_path)
    cas = [make_ca(f"Overfull CA {i}") for i in range(11)]
    store.trusted.import_file(write_file(tmp_path, "ten.pem", pem_bundle(*cas[:10])))
    path = store.directory / "trusted.pem"
    garbage = b"-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n"
    path.write_bytes(path.read_bytes() + cas[10].pem + garbage)
    return store, cas, path


def test_remove_trusted_keeps_every_other_entry(tmp_path: Path) -> None:
    store, cas, path = _overfull_trusted_file(tmp_path)
    assert len(store.trusted.custom()) == MAX_CUSTOM_TRUSTED
    assert any("only the first 10 are used" in p for p in store.problems)
    garbage_block = path.read_bytes()[path.read_bytes().rindex(b"-----BEGIN") :]
    store.trusted.remove(cas[0].fingerprint)
    text = path.read_bytes()
    assert text.count(b"-----BEGIN CERTIFICATE-----") == 11  # 12 entries, one removed
    assert garbage_block in text  # the unreadable entry is kept byte for byte
    remaining = {s.fingerprint for s in store_at(tmp_path).trusted.custom()}
    assert remaining == {ca.fingerprint for ca in cas[1:]}
    # The 11th, beyond the limit, can be removed too.
    store.trusted.remove(cas[10].fingerprint)
    assert path.read_bytes().count(b"-----BEGIN CERTIFICATE-----") == 10


def test_import_refuses_to_rewrite_a_file_with_unreadable_entries(tmp_path: Path) -> None:
    store, _, path = _overfull_trusted_file(tmp_path)
    before = path.read_bytes()
    new = write_file(tmp_path, "new.pem", make_ca("Overfull New").pem)
    with pytest.raises(StoreError, match=r"unreadable entries \(#12\); delete them"):
        store.trusted.import_file(new)
    assert path.read_bytes() == before


def test_import_refuses_when_the_file_is_over_the_limit(tmp_path: Path) -> None:
    store, cas, path = _overfull_trusted_file(tmp_path)
    store.trusted.remove(cas[0].fingerprint)  # 10 readable left + the unreadable one
    text = path.read_bytes()
    path.write_bytes(text[: text.rindex(b"-----BEGIN")])  # drop the unreadable entry
    with pytest.raises(StoreError, match="at most 10 are allowed"):
        store.trusted.import_file(write_file(tmp_path, "new.pem", make_ca("Overfull New").pem))


@pytest.mark.parametrize("where", ["file", "directory"])
def test_trusted_file_writable_by_others_is_ignored(tmp_path: Path, where: str) -> None:
    store = store_at(tmp_path)
    ca = make_ca("Writable CA")
    store.trusted.import_file(write_file(tmp_path, "ca.pem", ca.pem))
    target = store.directory / "trusted.pem" if where == "file" else store.directory
    target.chmod(mode_of(target) | 0o020)
    assert store.trusted.custom() == []
    assert ca.cert not in store.trusted.anchors("all")
    assert any(f"chmod go-w {target}" in p for p in store.problems), store.problems
    # Nothing is rewritten on top of it either.
    with pytest.raises(StoreError, match="chmod go-w"):
        store.trusted.import_file(write_file(tmp_path, "ca2.pem", make_ca("Writable CA 2").pem))
    target.chmod(mode_of(target) & ~0o022)
    assert [s.fingerprint for s in store.trusted.custom()] == [ca.fingerprint]


def test_trusted_file_of_another_user_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_at(tmp_path)
    store.trusted.import_file(write_file(tmp_path, "ca.pem", make_ca("Foreign CA").pem))
    owner = (store.directory / "trusted.pem").stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    assert store.trusted.custom() == []
    assert any("chown" in p and "owned by user id" in p for p in store.problems), store.problems


# -- strict reading (a running user agent's reload) ------------------------------------------


def _corrupt_first_entry(path: Path) -> None:
    text = path.read_bytes()
    first = text.index(b"-----BEGIN CERTIFICATE-----\n") + len(b"-----BEGIN CERTIFICATE-----\n")
    path.write_bytes(text[:first] + b"AAAA" + text[first + 4 :])


@pytest.mark.parametrize("damage", ["not-pem", "der", "one-entry"])
def test_strict_reading_refuses_a_file_with_unreadable_content(tmp_path: Path, damage: str) -> None:
    store = store_at(tmp_path)
    a, b = make_ca("Strict A"), make_ca("Strict B")
    store.trusted.import_file(write_file(tmp_path, "ab.pem", pem_bundle(a, b)))
    path = store.directory / "trusted.pem"
    if damage == "not-pem":
        path.write_bytes(b"this is not a certificate\n")
    elif damage == "der":
        path.write_bytes(b"\x30\x82\x01\x00" + b"\0" * 50)
    else:
        _corrupt_first_entry(path)
    with pytest.raises(StoreError) as refused:
        store.trusted.custom(strict=True)
    message = str(refused.value)
    assert message.startswith(f"{path} has unreadable content (")
    assert "sipua cert import-trusted FILE" in message
    if damage == "one-entry":
        assert "entry #1" in message
    else:
        assert "it holds no PEM certificate" in message
    # Read leniently (at start, `sipua cert list`) what can be read is still used.
    expected = ["Strict B"] if damage == "one-entry" else []
    assert [s.name for s in store.trusted.custom()] == expected


@pytest.mark.parametrize("where", ["file", "directory"])
def test_strict_reading_refuses_a_file_others_can_write(tmp_path: Path, where: str) -> None:
    store = store_at(tmp_path)
    store.trusted.import_file(write_file(tmp_path, "ca.pem", make_ca("Strict Writable").pem))
    target = store.directory / "trusted.pem" if where == "file" else store.directory
    target.chmod(mode_of(target) | 0o002)
    with pytest.raises(StoreError, match=f"chmod go-w {target}"):
        store.trusted.custom(strict=True)
    target.chmod(mode_of(target) & ~0o022)
    assert [s.name for s in store.trusted.custom(strict=True)] == ["Strict Writable"]


def test_strict_reading_accepts_a_missing_or_emptied_file(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    assert store.trusted.custom(strict=True) == []
    store.trusted.import_file(write_file(tmp_path, "ca.pem", make_ca("Strict Removed").pem))
    store.trusted.remove("Strict Removed")  # the file is left empty: no certificate, no damage
    assert store.trusted.custom(strict=True) == []
    assert store.problems == []
