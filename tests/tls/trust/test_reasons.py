"""`reasons.explain`: cryptography's refusals as sipua's reason codes, naming the certificate."""

from __future__ import annotations

import datetime as dt

from sipua.tls.trust.reasons import explain, strength_problems
from tests.support.certs import NOW, make_ca, make_leaf

ROOT = make_ca("Reasons Root")
INTER = make_ca("Reasons Inter", issuer=ROOT)
LEAF = make_leaf(INTER, uris=("sip:example.com",))
CHAIN = [LEAF.cert, INTER.cert]


def _explain(message: str, at: dt.datetime = NOW) -> tuple[str, str, str | None]:
    problem = explain(message, chain=CHAIN, anchors=[ROOT.cert], anchors_count=1, at=at)
    return problem.code, problem.reason, problem.subject


def test_unknown_library_text_is_refused_in_its_own_words() -> None:
    code, reason, _ = _explain("validation failed: something new went wrong")
    assert code == "invalid-chain"
    assert "something new went wrong" in reason
    assert "Reasons Inter" not in reason  # nothing invented


def test_the_certificate_the_library_names_is_the_one_reported() -> None:
    later = NOW + dt.timedelta(days=4000)  # every certificate has expired by then
    message = (
        "validation failed: cert is not valid at validation time "
        f"(encountered processing {INTER.cert!r})"
    )
    code, reason, subject = _explain(message, at=later)
    assert code == "expired"
    assert subject == INTER.cert.subject.rfc4514_string()
    assert "'CN=Reasons Inter" in reason


def test_a_refusal_of_sipuas_validators_keeps_its_code_and_sentence() -> None:
    message = (
        "validation failed: candidates exhausted: Python extension validator failed: Refusal: "
        "bad-usage: CA 'X' may not issue certificates for a TLS server (serverAuth); its "
        "extendedKeyUsage allows: emailProtection"
    )
    code, reason, _ = _explain(message)
    assert code == "bad-usage"
    assert reason.startswith("CA 'X' may not issue certificates")


def test_a_presented_root_nobody_trusts_is_named() -> None:
    stranger = make_ca("Reasons Stranger")
    leaf = make_leaf(stranger, uris=("sip:example.com",))
    problem = explain(
        "validation failed: candidates exhausted: chain construction exceeds max depth",
        chain=[leaf.cert, stranger.cert],
        anchors=[ROOT.cert],
        anchors_count=1,
        at=NOW,
    )
    assert problem.code == "untrusted-issuer"
    assert "ends in the root 'CN=Reasons Stranger" in problem.reason


def test_strength_of_an_anchored_path_ignores_the_anchors_self_signature() -> None:
    rsa_root = make_ca("Reasons SHA1 Root", key_kind="rsa-2048", signature_hash="sha1")
    leaf = make_leaf(rsa_root)
    assert strength_problems([leaf.cert, rsa_root.cert], anchored=True) == []
    unanchored = strength_problems([leaf.cert, rsa_root.cert], anchored=False)
    assert unanchored == []  # a certificate's signature on itself is never judged
    weak = make_leaf(rsa_root, key_kind="rsa-1024")
    assert [p.code for p in strength_problems([weak.cert], anchored=False)] == ["weak-key"]
