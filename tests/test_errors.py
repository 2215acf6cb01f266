from __future__ import annotations

from sipua.errors import MAX_MESSAGE_CHARS, CertificateError, PeerNotTrusted, SipuaError


def test_messages_are_kept_whole_when_short() -> None:
    assert str(CertificateError("ca.pem is empty")) == "ca.pem is empty"


def test_long_messages_keep_head_and_advice() -> None:
    quoted = "x" * 50_000
    error = CertificateError(f"ca.pem: not a certificate ({quoted}); import the CA instead")
    assert len(str(error)) == MAX_MESSAGE_CHARS
    assert str(error).startswith("ca.pem: not a certificate (")
    assert str(error).endswith("import the CA instead")


def test_subclasses_with_fields_are_bounded_too() -> None:
    error = PeerNotTrusted("y" * 5000, code="untrusted-issuer")
    assert len(str(error)) == MAX_MESSAGE_CHARS
    assert error.code == "untrusted-issuer"


def test_errors_without_a_message() -> None:
    assert str(SipuaError()) == ""
