"""`verify_chain`: one test (at least) per result code, and the path-building rules."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from sipua.tls import TrustPolicy, VerifyResult, verify_chain
from sipua.tls.trust.policy import MAX_CHAIN_LENGTH
from tests.support.certs import NOW, Issued, make_ca, make_leaf

NAME = "example.com"
ROOT = make_ca("Chain Test Root")
INTER = make_ca("Chain Test Intermediate", issuer=ROOT)
OTHER_ROOT = make_ca("Chain Test Other Root")


def _leaf(issuer: Issued | None = INTER, **kwargs: object) -> Issued:
    kwargs.setdefault("uris", ("sip:example.com",))
    return make_leaf(issuer, **kwargs)  # type: ignore[arg-type]


def verify(
    chain: list[Issued],
    *,
    trusted: tuple[Issued, ...] = (ROOT,),
    defaults: tuple[Issued, ...] = (),
    name: str | None = NAME,
    policy: TrustPolicy | None = None,
    purpose: str = "server",
    at: dt.datetime = NOW,
) -> VerifyResult:
    return verify_chain(
        [c.cert for c in chain],
        name=name,
        trusted=[t.cert for t in trusted],
        default_trusted=[d.cert for d in defaults],
        at=at,
        policy=policy,
        purpose=purpose,  # type: ignore[arg-type]
    )


def test_valid_chain_through_intermediate() -> None:
    result = verify([_leaf(), INTER])
    assert (result.ok, result.verified, result.code) == (True, True, "ok")
    assert result.anchor == "custom"
    assert [s.name for s in result.path] == [
        "sip.example.com",
        "Chain Test Intermediate",
        "Chain Test Root",
    ]
    assert result.identities == ("URI:sip:example.com",)
    assert result.expected == "example.com"


def test_accepts_pem_and_der_bytes() -> None:
    leaf = _leaf()
    result = verify_chain(
        [leaf.pem, INTER.der], name=NAME, trusted=[ROOT.pem], default_trusted=[], at=NOW
    )
    assert result.verified, result.reason


def test_intermediate_order_does_not_matter() -> None:
    inter2 = make_ca("Chain Test Intermediate 2", issuer=INTER)
    leaf = _leaf(inter2)
    assert verify([leaf, INTER, inter2]).verified


def test_leaf_signed_directly_by_root() -> None:
    assert verify([_leaf(ROOT)]).verified


def test_trusted_intermediate_is_an_anchor() -> None:
    assert verify([_leaf()], trusted=(INTER,)).verified


def test_missing_intermediate_is_untrusted_issuer() -> None:
    result = verify([_leaf()])
    assert result.code == "untrusted-issuer"
    assert "Chain Test Intermediate" in result.reason
    assert "intermediate" in result.reason


def test_unknown_root_is_untrusted_issuer() -> None:
    result = verify([_leaf(OTHER_ROOT)])
    assert (result.ok, result.verified, result.code) == (False, False, "untrusted-issuer")


def test_self_signed_leaf_not_trusted() -> None:
    leaf = _leaf(None)
    result = verify([leaf])
    assert result.code == "untrusted-issuer"
    assert "self-signed" in result.reason


def test_self_signed_leaf_pinned_in_trusted() -> None:
    leaf = _leaf(None)
    assert verify([leaf], trusted=(leaf,)).verified


def test_forged_signature_is_untrusted_issuer() -> None:
    impostor = make_ca("Chain Test Root")  # same name, different key
    leaf = _leaf(impostor)
    result = verify([leaf])
    assert result.code == "untrusted-issuer"
    assert "does not verify" in result.reason


@pytest.mark.parametrize(
    ("accepted", "trusted", "defaults", "code"),
    [
        ("all", (ROOT,), (), "ok"),
        ("all", (), (ROOT,), "ok"),
        ("custom", (ROOT,), (), "ok"),
        ("default", (), (ROOT,), "ok"),
        ("custom", (), (ROOT,), "ca-type-not-accepted"),
        ("default", (ROOT,), (), "ca-type-not-accepted"),
        ("default", (), (OTHER_ROOT,), "untrusted-issuer"),
        # A certificate in both sets counts as both.
        ("default", (ROOT,), (ROOT,), "ok"),
        ("custom", (ROOT,), (ROOT,), "ok"),
    ],
)
def test_accepted_ca_types(
    accepted: str, trusted: tuple[Issued, ...], defaults: tuple[Issued, ...], code: str
) -> None:
    policy = TrustPolicy(accepted_ca=accepted)  # type: ignore[arg-type]
    result = verify([_leaf(), INTER], trusted=trusted, defaults=defaults, policy=policy)
    assert result.code == code, result.reason


def test_ca_type_not_accepted_reason_names_both_sets() -> None:
    result = verify(
        [_leaf(), INTER], trusted=(), defaults=(ROOT,), policy=TrustPolicy(accepted_ca="custom")
    )
    assert "default" in result.reason
    assert "custom" in result.reason


def test_default_trusted_none_uses_os_bundle() -> None:
    # Our test root is not in the OS bundle, so the chain must be untrusted...
    leaf = _leaf(ROOT)
    result = verify_chain([leaf.cert], name=NAME, at=NOW)
    assert result.code == "untrusted-issuer"
    # ...and the OS bundle is really consulted: its count shows in the reason.
    assert "among 0 trusted" not in result.reason


@pytest.mark.parametrize(
    ("where", "flaw", "code"),
    [
        ("leaf", {"expired": True}, "expired"),
        ("leaf", {"not_yet_valid": True}, "not-yet-valid"),
        ("inter", {"expired": True}, "expired"),
        ("root", {"expired": True}, "expired"),
        ("inter", {"not_yet_valid": True}, "not-yet-valid"),
        ("leaf", {"key_kind": "rsa-1024"}, "weak-key"),
        ("leaf", {"key_kind": "ec-p192"}, "weak-key"),
        ("inter", {"key_kind": "rsa-1024"}, "weak-key"),
        ("root", {"key_kind": "rsa-1024"}, "weak-key"),
        ("inter", {"ca": False}, "invalid-chain"),
        ("inter", {"basic_constraints": False}, "invalid-chain"),
        ("inter", {"key_cert_sign": False}, "bad-usage"),
        ("leaf", {"eku": ("email",)}, "bad-usage"),
        ("leaf", {"critical_unknown": True}, "invalid-chain"),
    ],
)
def test_each_flaw_gives_its_code(where: str, flaw: dict[str, object], code: str) -> None:
    root = make_ca("Flaw Root", **flaw) if where == "root" else ROOT  # type: ignore[arg-type]
    inter = (
        make_ca("Flaw Inter", issuer=root, **flaw)  # type: ignore[arg-type]
        if where == "inter"
        else make_ca("Flaw Inter", issuer=root)
    )
    leaf = _leaf(inter, **(flaw if where == "leaf" else {}))
    result = verify([leaf, inter], trusted=(root,))
    assert result.code == code, result.reason
    assert (result.ok, result.verified) == (False, False)


def test_path_length_constraint() -> None:
    root = make_ca("Pathlen Root", path_length=0)
    inter = make_ca("Pathlen Inter", issuer=root)
    result = verify([_leaf(inter), inter], trusted=(root,))
    assert result.code == "invalid-chain"
    assert "allows 0 intermediate" in result.reason


@pytest.mark.xfail(
    strict=True,
    reason="cryptography 50's verifier counts a self-issued (key-rollover) CA against the "
    "pathLenConstraint above it, against RFC 5280 §6.1.4 (l); sipua no longer builds paths itself",
)
def test_path_length_does_not_count_self_issued_certificates() -> None:
    # RFC 5280 §6.1.4 (l): a key-rollover certificate (subject = issuer = the root's name,
    # signed by the old key) is self-issued and does not use up the root's pathLenConstraint.
    root = make_ca("Rollover Root", path_length=0)
    rollover = make_ca("Rollover Root", issuer=root, subject=root.cert.subject, path_length=0)
    result = verify([_leaf(rollover), rollover], trusted=(root,))
    assert (result.ok, result.code) == (True, "ok"), result.reason


def test_path_length_counts_a_real_intermediate_below_a_rollover() -> None:
    root = make_ca("Rollover Root 2", path_length=0)
    rollover = make_ca("Rollover Root 2", issuer=root, subject=root.cert.subject, path_length=0)
    inter = make_ca("Below Rollover", issuer=rollover)
    too_deep = verify([_leaf(inter), inter, rollover], trusted=(root,))
    assert too_deep.code == "invalid-chain"
    assert "pathLenConstraint" in too_deep.reason


@pytest.mark.parametrize("hash_name", ["sha1", "md5"])
def test_weak_signature(hash_name: str) -> None:
    root = make_ca("RSA Root", key_kind="rsa-2048")
    leaf = _leaf(root, signature_hash=hash_name)
    result = verify([leaf], trusted=(root,))
    assert result.code == "weak-signature"
    assert hash_name.upper() in result.reason


def test_weak_intermediate_signature() -> None:
    root = make_ca("RSA Root 2", key_kind="rsa-2048")
    inter = make_ca("SHA1 Inter", issuer=root, signature_hash="sha1")
    result = verify([_leaf(inter), inter], trusted=(root,))
    assert result.code == "weak-signature"
    assert "SHA1 Inter" in result.reason


def test_anchor_self_signature_hash_is_not_checked() -> None:
    root = make_ca("SHA1 Root", key_kind="rsa-2048", signature_hash="sha1")
    assert verify([_leaf(root)], trusted=(root,)).verified


@pytest.mark.parametrize(
    ("eku", "purpose", "code"),
    [
        (None, "server", "ok"),
        (None, "client", "ok"),
        (("server",), "server", "ok"),
        (("server",), "client", "bad-usage"),
        (("client",), "client", "ok"),
        (("client",), "server", "bad-usage"),
        (("sip-domain",), "server", "ok"),
        (("sip-domain",), "client", "ok"),
        (("any",), "server", "ok"),
        (("code-signing",), "client", "bad-usage"),
    ],
)
def test_eku_per_rfc_5924(eku: tuple[str, ...] | None, purpose: str, code: str) -> None:
    leaf = _leaf(eku=eku)
    result = verify([leaf, INTER], purpose=purpose)
    assert result.code == code, result.reason


def test_name_mismatch() -> None:
    result = verify([_leaf(), INTER], name="example.net")
    assert result.code == "name-mismatch"
    assert "example.net" in result.reason
    assert "URI:sip:example.com" in result.reason


def test_name_none_skips_identity_check() -> None:
    leaf = _leaf(cn=None, uris=(), eku=("client",))
    result = verify([leaf, INTER], name=None, purpose="client")
    assert result.verified
    assert result.expected is None


def test_cn_validation_off_skips_identity_check() -> None:
    result = verify([_leaf(), INTER], name="example.net", policy=TrustPolicy(cn_validation=False))
    assert result.verified


def test_wildcards_follow_policy() -> None:
    leaf = _leaf(uris=(), dns=("*.example.com",))
    assert verify([leaf, INTER], name="sip.example.com").code == "name-mismatch"
    allowed = TrustPolicy(allow_wildcards=True)
    assert verify([leaf, INTER], name="sip.example.com", policy=allowed).verified


def test_untrusted_but_accepted_when_only_trusted_off() -> None:
    policy = TrustPolicy(only_trusted=False)
    result = verify([_leaf(OTHER_ROOT)], policy=policy)
    assert (result.ok, result.verified, result.code) == (True, False, "untrusted-issuer")
    assert str(result).startswith("accepted without verification (untrusted-issuer)")


@pytest.mark.parametrize(
    ("changes", "code"),
    [({"key_kind": "rsa-1024"}, "weak-key"), ({"signature_hash": "sha1"}, "weak-signature")],
)
def test_weak_crypto_is_refused_even_when_only_trusted_off(
    changes: dict[str, str], code: str
) -> None:
    # "Only accept trusted" off waives trust, not strength (OpenSSL security level's rule).
    untrusted_rsa_root = make_ca("Untrusted RSA Root", key_kind="rsa-2048")
    leaf = _leaf(untrusted_rsa_root, **changes)
    result = verify([leaf], policy=TrustPolicy(only_trusted=False))
    assert code in [p.code for p in result.problems]
    assert (result.ok, result.verified) == (False, False)
    legacy = TrustPolicy(only_trusted=False, allow_weak_crypto=True)
    assert verify([leaf], policy=legacy).ok


def test_name_mismatch_is_not_waived_by_only_trusted_off() -> None:
    # Project decision: CN validation, when on, is mandatory; the two switches are independent.
    policy = TrustPolicy(only_trusted=False)
    result = verify([_leaf(), INTER], name="example.net", policy=policy)
    assert (result.ok, result.verified, result.code) == (False, False, "name-mismatch")
    assert str(result).startswith("rejected (name-mismatch)")
    untrusted = verify([_leaf(OTHER_ROOT)], name="example.net", policy=policy)
    assert not untrusted.ok
    unchecked = TrustPolicy(only_trusted=False, cn_validation=False)
    assert verify([_leaf(OTHER_ROOT)], name="example.net", policy=unchecked).ok


def test_only_trusted_on_ok_equals_verified() -> None:
    for chain in ([_leaf(), INTER], [_leaf(OTHER_ROOT)], [_leaf(expired=True), INTER]):
        result = verify(chain)
        assert result.ok == result.verified


def test_all_problems_are_listed() -> None:
    leaf = _leaf(expired=True, key_kind="rsa-1024")
    result = verify([leaf, INTER], name="example.net")
    assert [p.code for p in result.problems] == ["expired", "weak-key", "name-mismatch"]


def test_garbage_chain_is_invalid_chain() -> None:
    result = verify_chain([b"not a certificate"], name=NAME, default_trusted=[], at=NOW)
    assert result.code == "invalid-chain"
    assert not result.ok


def test_empty_chain_is_invalid_chain() -> None:
    assert verify_chain([], name=NAME, default_trusted=[], at=NOW).code == "invalid-chain"


def test_overlong_chain_is_invalid_chain() -> None:
    leaf = _leaf()
    result = verify([leaf] + [INTER] * MAX_CHAIN_LENGTH)
    assert result.code == "invalid-chain"


def test_naive_time_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_chain([_leaf().cert], name=NAME, at=dt.datetime(2030, 1, 1))


def test_unknown_purpose_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="purpose"):
        verify([_leaf()], purpose="email")


def test_validity_checked_at_the_given_time() -> None:
    leaf = _leaf()
    later = NOW + dt.timedelta(days=400)
    assert verify([leaf, INTER], at=later).code == "expired"
    earlier = NOW - dt.timedelta(days=1)
    assert verify([leaf, INTER], at=earlier).code == "not-yet-valid"


def test_chain_with_a_loop_terminates() -> None:
    # Two CAs that cross-sign each other, neither trusted: the search must end.
    a = make_ca("Loop A")
    b = make_ca("Loop B", issuer=a)
    a_by_b = make_ca("Loop A", issuer=b)
    result = verify([_leaf(b), b, a_by_b, a])
    assert result.code == "untrusted-issuer"


# -- name constraints and critical extensions (RFC 5280 §4.2, §4.2.1.10) ---------------------


def _constrained_ca(
    cn: str,
    *,
    permitted: list[x509.GeneralName] | None = None,
    excluded: list[x509.GeneralName] | None = None,
    critical: bool = True,
) -> Issued:
    constraints = x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded)
    return make_ca(cn, issuer=ROOT, extensions=[(constraints, critical)])


PERMIT_EXAMPLE_ORG = _constrained_ca(
    "Constrained To example.org",
    permitted=[
        x509.DNSName("example.org"),
        x509.UniformResourceIdentifier(".example.org"),
        x509.IPAddress(ipaddress.ip_network("192.0.2.0/24")),
    ],
)


@pytest.mark.parametrize(
    ("leaf_args", "name", "code"),
    [
        ({"dns": ("victim.com",)}, "victim.com", "invalid-chain"),
        ({"dns": ("example.org",)}, "example.org", "ok"),
        ({"dns": ("sip.example.org",)}, "sip.example.org", "ok"),
        ({"dns": ("sip.example.org", "victim.com")}, "sip.example.org", "invalid-chain"),
        ({"dns": ("notexample.org",)}, "notexample.org", "invalid-chain"),
        ({"uris": ("sip:victim.com",)}, "victim.com", "invalid-chain"),
        # A URI constraint is one form cryptography does not process; RFC 5280 §4.2.1.10
        # says to process a critical constraint or reject, and sipua rejects.
        ({"uris": ("sip:sip.example.org:5061;transport=tls",)}, "sip.example.org", "invalid-chain"),
        ({"ips": ("198.51.100.7",)}, "198.51.100.7", "invalid-chain"),
        ({"ips": ("192.0.2.7",)}, "192.0.2.7", "ok"),
        # No subjectAltName: the CN is the identity, so it is constrained too.
        ({"cn": "victim.com", "san": False}, "victim.com", "invalid-chain"),
        ({"cn": "sip.example.org", "san": False}, "sip.example.org", "ok"),
    ],
)
def test_name_constraints_permitted_subtrees(
    leaf_args: dict[str, object], name: str, code: str
) -> None:
    leaf_args.setdefault("uris", ())
    leaf = _leaf(PERMIT_EXAMPLE_ORG, **leaf_args)
    result = verify([leaf, PERMIT_EXAMPLE_ORG], name=name)
    assert result.code == code, result.reason
    if code != "ok":
        assert not result.ok
        assert "name constraints of CA 'CN=Constrained To example.org" in result.reason


def test_name_constraints_excluded_subtrees() -> None:
    ca = _constrained_ca(
        "Excludes evil.example",
        excluded=[x509.DNSName("evil.example"), x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))],
    )
    bad = verify([_leaf(ca, uris=(), dns=("sip.evil.example",)), ca], name="sip.evil.example")
    assert bad.code == "invalid-chain"
    assert "name constraints of CA 'CN=Excludes evil.example" in bad.reason
    assert "excludes" in bad.reason
    assert verify([_leaf(ca, uris=(), ips=("10.1.2.3",)), ca], name="10.1.2.3").code == (
        "invalid-chain"
    )
    assert verify([_leaf(ca), ca]).code == "ok"


def test_name_constraints_apply_even_when_not_critical() -> None:
    ca = _constrained_ca("Lax NC", permitted=[x509.DNSName("example.org")], critical=False)
    result = verify([_leaf(ca, uris=(), dns=("victim.com",)), ca], name="victim.com")
    assert result.code == "invalid-chain"


def test_name_constraints_of_the_anchor_apply() -> None:
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("example.org")], excluded_subtrees=None
    )
    root = make_ca("Constrained Root", extensions=[(constraints, True)])
    result = verify([_leaf(root, uris=(), dns=("victim.com",))], trusted=(root,), name="victim.com")
    assert result.code == "invalid-chain"


def test_directory_name_constraints_are_refused() -> None:
    # cryptography does not process directoryName constraints; a critical one must then be
    # refused (RFC 5280 §4.2.1.10), whether or not the names would lie inside it.
    allowed = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sipua tests")])
    ca = _constrained_ca("DirName NC", permitted=[x509.DirectoryName(allowed)])
    result = verify([_leaf(ca), ca])
    assert result.code == "invalid-chain"
    assert "cannot check" in result.reason
    other = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Someone Else")])
    ca2 = _constrained_ca("DirName NC 2", permitted=[x509.DirectoryName(other)])
    assert verify([_leaf(ca2), ca2]).code == "invalid-chain"


@pytest.mark.parametrize(
    "extension",
    [
        x509.PolicyConstraints(require_explicit_policy=0, inhibit_policy_mapping=None),
        x509.InhibitAnyPolicy(0),
        x509.TLSFeature([x509.TLSFeatureType.status_request]),
    ],
    ids=["policyConstraints", "inhibitAnyPolicy", "tlsFeature"],
)
def test_critical_extension_sipua_does_not_process_is_refused(
    extension: x509.ExtensionType,
) -> None:
    # cryptography parses these, but parsing is not processing (RFC 5280 §4.2).
    inter = make_ca(
        f"Critical {type(extension).__name__}", issuer=ROOT, extensions=[(extension, True)]
    )
    result = verify([_leaf(inter), inter])
    assert (result.ok, result.code) == (False, "invalid-chain")
    assert extension.oid.dotted_string in result.reason
    assert "does not process" in result.reason
    relaxed = make_ca(
        f"Non-critical {type(extension).__name__}", issuer=ROOT, extensions=[(extension, False)]
    )
    assert verify([_leaf(relaxed), relaxed]).code == "ok"


# -- issuer name matching (RFC 5280 §7.1) ----------------------------------------------------


def _cn_name(value: str, string_type: _ASN1Type) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value, _type=string_type)])


@pytest.mark.xfail(
    strict=True,
    reason="cryptography 50 matches issuer names byte for byte, not with RFC 5280 §7.1's "
    "case and space folding; sipua no longer builds paths itself",
)
@pytest.mark.parametrize(
    ("issuer_value", "string_type"),
    [
        ("Example Root", _ASN1Type.UTF8String),  # only the string type differs
        ("example root", _ASN1Type.UTF8String),  # and the case
        ("  EXAMPLE   Root ", _ASN1Type.PrintableString),  # case and spaces
    ],
)
def test_issuer_name_matched_the_rfc_5280_way(issuer_value: str, string_type: _ASN1Type) -> None:
    root = make_ca(subject=_cn_name("Example Root", _ASN1Type.PrintableString))
    leaf = _leaf(root, issuer_name=_cn_name(issuer_value, string_type))
    result = verify([leaf], trusted=(root,))
    assert (result.ok, result.code) == (True, "ok"), result.reason


@pytest.mark.xfail(
    strict=True, reason="as test_issuer_name_matched_the_rfc_5280_way: byte-wise name matching"
)
def test_issuer_name_of_a_presented_intermediate_matched_the_rfc_5280_way() -> None:
    inter_subject = _cn_name("Example Intermediate", _ASN1Type.PrintableString)
    inter = make_ca("Example Intermediate", issuer=ROOT, subject=inter_subject)
    leaf = _leaf(inter, issuer_name=_cn_name("example  INTERMEDIATE", _ASN1Type.UTF8String))
    assert verify([leaf, inter]).code == "ok"


def test_different_issuer_name_is_still_untrusted() -> None:
    root = make_ca(subject=_cn_name("Example Root", _ASN1Type.PrintableString))
    leaf = _leaf(root, issuer_name=_cn_name("Example Root 2", _ASN1Type.UTF8String))
    assert verify([leaf], trusted=(root,)).code == "untrusted-issuer"


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        ),
        False,
    )
    flags.update(allowed)
    return x509.KeyUsage(**flags, encipher_only=False, decipher_only=False)


@pytest.mark.parametrize(
    ("allowed", "code"),
    [
        ({"crl_sign": True}, "bad-usage"),
        ({"key_cert_sign": True, "crl_sign": True}, "bad-usage"),
        ({"content_commitment": True, "data_encipherment": True}, "bad-usage"),
        ({"digital_signature": True}, "ok"),
        ({"key_encipherment": True}, "ok"),
        ({"key_agreement": True}, "ok"),
    ],
)
def test_leaf_key_usage_must_allow_tls(allowed: dict[str, bool], code: str) -> None:
    leaf = _leaf(extensions=[(_key_usage(**allowed), True)])
    result = verify([leaf, INTER])
    assert result.code == code, result.reason
    if code == "bad-usage":
        assert not result.ok
        assert "keyUsage allows none of digitalSignature" in result.reason


def test_critical_certificate_policies_are_accepted() -> None:
    # With any-policy as the initial policy set and no explicit policy required (RFC 5280
    # §6.1.1), a critical certificatePolicies extension cannot fail the path.
    policies = x509.CertificatePolicies(
        [x509.PolicyInformation(x509.ObjectIdentifier("2.23.140.1.2.1"), None)]
    )
    inter = make_ca("Critical Policies", issuer=ROOT, extensions=[(policies, True)])
    assert verify([_leaf(inter), inter]).code == "ok"


# -- what the hand-written verifier got wrong, and cryptography's verifier gets right --------


def test_wildcard_does_not_escape_a_name_constraint() -> None:
    # "*.example.org" stands for names outside a CA permitted only "sub.example.org"; the old
    # verifier let it through (RFC 5280 §4.2.1.10), and with wildcards allowed it verified.
    ca = _constrained_ca("Sub Only", permitted=[x509.DNSName("sub.example.org")])
    leaf = _leaf(ca, uris=(), dns=("*.example.org",))
    policy = TrustPolicy(allow_wildcards=True)
    result = verify([leaf, ca], name="sub.example.org", policy=policy)
    assert (result.ok, result.code) == (False, "invalid-chain"), result.reason
    assert "name constraints of CA 'CN=Sub Only" in result.reason


def test_leaf_without_authority_key_identifier_is_refused() -> None:
    # RFC 5280 §4.2.1.1: every certificate but a self-signed one carries the issuer's key id.
    result = verify([_leaf(key_ids=("ski",)), INTER])
    assert (result.ok, result.code) == (False, "invalid-chain")
    assert "authorityKeyIdentifier" in result.reason


def test_intermediate_without_subject_key_identifier_is_refused() -> None:
    # RFC 5280 §4.2.1.2: every CA certificate carries its own key id.
    inter = make_ca("No SKI Inter", issuer=ROOT, key_ids=("aki",))
    result = verify([_leaf(inter), inter])
    assert (result.ok, result.code) == (False, "invalid-chain")
    assert "subjectKeyIdentifier" in result.reason
    assert "No SKI Inter" in result.reason


def test_self_signed_root_needs_no_authority_key_identifier() -> None:
    root = make_ca("No AKI Root", key_ids=("ski",))
    assert verify([_leaf(root)], trusted=(root,)).verified


def test_root_without_subject_key_identifier_still_anchors() -> None:
    # A trust anchor is an input to path validation (RFC 5280 §6.1.1 d); roots of the OS
    # bundle without the extension still anchor real servers' chains.
    root = make_ca("No SKI Root", key_ids=("aki",))
    result = verify([_leaf(root)], trusted=(root,))
    assert result.ok, result.reason


def test_ca_with_an_empty_subject_is_refused() -> None:
    # RFC 5280 §4.1.2.6: a CA's subject is a non-empty name.
    root = make_ca(subject=x509.Name([]))
    result = verify([_leaf(root)], trusted=(root,))
    assert (result.ok, result.code) == (False, "invalid-chain"), result.reason


def test_leaf_asserting_key_cert_sign_without_ca_is_refused() -> None:
    # RFC 5280 §4.2.1.9: keyCertSign needs cA.
    usage = _key_usage(digital_signature=True, key_cert_sign=True)
    result = verify([_leaf(extensions=[(usage, True)]), INTER])
    assert (result.ok, result.code) == (False, "invalid-chain")
    assert "keyCertSign without basicConstraints cA" in result.reason


def test_ca_restricted_to_other_purposes_cannot_vouch_for_tls() -> None:
    eku = x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION])
    inter = make_ca("Mail Only CA", issuer=ROOT, extensions=[(eku, False)])
    result = verify([_leaf(inter), inter])
    assert (result.ok, result.code) == (False, "bad-usage")
    assert "Mail Only CA" in result.reason
    sip = x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.3.6.1.5.5.7.3.20")])
    sip_ca = make_ca("SIP Only CA", issuer=ROOT, extensions=[(sip, False)])
    assert verify([_leaf(sip_ca), sip_ca]).verified


def test_empty_subject_needs_a_critical_subject_alt_name() -> None:
    # RFC 5280 §4.2.1.6: the names are then in subjectAltName alone, marked critical.
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier("sip:example.com")])
    lax = _leaf(subject=x509.Name([]), san=False, extensions=[(san, False)])
    assert verify([lax, INTER]).code == "invalid-chain"
    strict = _leaf(subject=x509.Name([]), san=False, extensions=[(san, True)])
    assert verify([strict, INTER]).verified


def test_self_signed_ca_certificate_trusted_as_itself() -> None:
    # `openssl req -x509` makes CA:TRUE certificates; a registrar presenting one that the user
    # trusts works, as any trusted certificate is its own anchor.
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier("sip:example.com")])
    registrar = make_ca("example.com", extensions=[(san, False)])
    result = verify([registrar], trusted=(registrar,))
    assert result.verified, result.reason
    assert result.anchor == "custom"


def test_ca_certificate_as_leaf_is_valid() -> None:
    # RFC 5280 says nothing against a CA certificate in the leaf position (the web PKI does).
    san = x509.SubjectAlternativeName([x509.DNSName("example.com")])
    inter = make_ca("Also A Server", issuer=ROOT, extensions=[(san, False)])
    assert verify([inter]).verified


def test_cn_identity_is_name_constrained_by_sipua() -> None:
    # cryptography constrains subjectAltName only; sipua constrains the CN it uses as identity.
    excluded = _constrained_ca("Excludes victim", excluded=[x509.DNSName("victim.com")])
    cn_only = _leaf(excluded, uris=(), cn="sip.victim.com", san=False)
    bad = verify([cn_only, excluded], name="sip.victim.com")
    assert bad.code == "invalid-chain"
    assert "CN 'sip.victim.com'" in bad.reason
    ip_ca = _constrained_ca(
        "IP NC", permitted=[x509.IPAddress(ipaddress.ip_network("192.0.2.0/24"))]
    )
    inside = _leaf(ip_ca, uris=(), cn="192.0.2.9", san=False)
    assert verify([inside, ip_ca], name="192.0.2.9", policy=TrustPolicy(cn_validation=False)).ok
