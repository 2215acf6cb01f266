from __future__ import annotations

import hashlib
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipua.sip.digest import (
    MAX_REALMS,
    Challenge,
    ChallengeVerdict,
    DigestAlgorithm,
    DigestChallengeError,
    DigestSession,
    NoUsableChallenge,
    build_credentials,
    choose_challenges,
    digest_response,
    parse_challenge,
    redact_credentials,
)
from sipua.sip.errors import LocalProtocolError, ParseError

# --- RFC test vectors -----------------------------------------------------------------------

RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def test_rfc2617_section_3_5_md5_qop_auth() -> None:
    challenge = parse_challenge(RFC2617_CHALLENGE)
    creds = build_credentials(
        challenge,
        username="Mufasa",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
    )
    assert creds.response == "6629fae49393a05397450978507c4ef1"
    assert creds.header_value() == (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
        'response="6629fae49393a05397450978507c4ef1", cnonce="0a4f113b", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41", qop=auth, nc=00000001'
    )
    assert creds.header_name == "Authorization"


RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_section_3_9_1(algorithm: str, expected: str) -> None:
    challenge = parse_challenge(
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", '
        f'algorithm={algorithm}, nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
    )
    creds = build_credentials(
        challenge,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce=RFC7616_CNONCE,
    )
    assert creds.response == expected
    assert creds.algorithm == algorithm
    assert creds.qop == "auth"
    assert creds.nc == "00000001"
    assert creds.opaque == RFC7616_OPAQUE


def _sha512_256(text: str) -> str:
    return hashlib.new("sha512_256", text.encode()).hexdigest()


def test_sha512_256_matches_an_independent_computation() -> None:
    ha1 = _sha512_256("alice:sip.example.com:s3cret")
    ha2 = _sha512_256("REGISTER:sips:sip.example.com")
    expected = _sha512_256(f"{ha1}:n0nce:0000002a:c1:auth:{ha2}")
    got = digest_response(
        algorithm=DigestAlgorithm.SHA_512_256,
        username="alice",
        password="s3cret",
        realm="sip.example.com",
        nonce="n0nce",
        method="REGISTER",
        uri="sips:sip.example.com",
        qop="auth",
        nc="0000002a",
        cnonce="c1",
    )
    assert got == expected
    assert len(got) == 64


def test_sha512_256_is_not_truncated_sha512() -> None:
    # pyVoIP's bug: SHA-512 cut to 64 hex digits is a different function (other IVs).
    assert DigestAlgorithm.SHA_512_256.hash_hex(b"abc") == (
        "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
    )
    assert DigestAlgorithm.SHA_512_256.hash_hex(b"abc") != hashlib.sha512(b"abc").hexdigest()[:64]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_md5_sess_and_auth_int() -> None:
    body = b"v=0\r\n"
    ha1 = _md5(f"{_md5('bob:r:pw')}:n:cn")
    ha2 = _md5(f"INVITE:sips:carol@example.com:{_md5(body.decode())}")
    expected = _md5(f"{ha1}:n:00000001:cn:auth-int:{ha2}")
    challenge = parse_challenge('Digest realm="r", nonce="n", algorithm=md5-SESS, qop="auth-int"')
    creds = build_credentials(
        challenge,
        username="bob",
        password="pw",
        method="INVITE",
        uri="sips:carol@example.com",
        cnonce="cn",
        body=body,
    )
    assert creds.response == expected
    assert creds.qop == "auth-int"
    assert creds.algorithm == "MD5-sess"


def test_rfc2069_form_without_qop() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n"')
    creds = build_credentials(
        challenge, username="u", password="p", method="REGISTER", uri="sips:r", cnonce="ignored"
    )
    assert creds.response == _md5(f"{_md5('u:r:p')}:n:{_md5('REGISTER:sips:r')}")
    assert (creds.cnonce, creds.nc, creds.qop, creds.algorithm) == (None, None, None, None)
    assert creds.header_value() == (
        f'Digest username="u", realm="r", nonce="n", uri="sips:r", response="{creds.response}"'
    )


def test_register_uses_the_request_uri_as_digest_uri() -> None:
    # A REGISTER to sips:example.com: the digest uri is the Request-URI (RFC 3261 §22.4),
    # not the AOR in To and not a transport-decorated variant.
    challenge = parse_challenge(
        'Digest realm="example.com", nonce="abc123", algorithm=SHA-256, qop="auth"'
    )
    creds = build_credentials(
        challenge,
        username="alice",
        password="pa55",
        method="REGISTER",
        uri="sips:example.com",
        cnonce="deadbeef",
    )
    sha = DigestAlgorithm.SHA_256.hash_hex
    ha1 = sha(b"alice:example.com:pa55")
    ha2 = sha(b"REGISTER:sips:example.com")
    assert creds.response == sha(f"{ha1}:abc123:00000001:deadbeef:auth:{ha2}".encode())
    assert 'uri="sips:example.com"' in creds.header_value()


# --- parsing --------------------------------------------------------------------------------


def test_parse_all_the_fields() -> None:
    challenge = parse_challenge(
        ' digest  REALM = "a \\"quoted\\" realm" , Nonce="n1",opaque="o", STALE=TRUE,'
        ' Algorithm=sha-256, qop="AUTH , auth-int", domain="sips:a.example sips:b.example",'
        " x-vendor=thing",
        header="Proxy-Authenticate",
    )
    assert challenge.scheme == "digest"
    assert challenge.realm == 'a "quoted" realm'
    assert challenge.nonce == "n1"
    assert challenge.opaque == "o"
    assert challenge.stale is True
    assert challenge.algorithm is DigestAlgorithm.SHA_256
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.domain == ("sips:a.example", "sips:b.example")
    assert ("x-vendor", "thing") in challenge.params
    assert challenge.proxy is True
    assert challenge.usable


def test_defaults_when_optional_params_are_missing() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n", stale=false')
    assert challenge.algorithm is DigestAlgorithm.MD5
    assert (challenge.opaque, challenge.stale, challenge.qop, challenge.proxy) == (
        None,
        False,
        (),
        False,
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "expected an auth scheme"),
        ("Digest", "has no realm"),
        ('Digest realm="r"', "has no nonce"),
        ('Digest nonce="n"', "has no realm"),
        ('Digest realm="r", nonce="n', "is not closed"),
        ('Digest realm="r", nonce="n\\', "is not closed"),
        ('Digest realm="r" nonce="n"', "expected ','"),
        ('Digest realm="r", nonce', "has no '='"),
        ('Digest realm="r", nonce=', "empty value"),
        ('Digest realm="r", nonce="a", nonce="b"', "appears twice"),
        ('Digest realm="r", ="x"', "expected a parameter name"),
        (
            "Digest " + "".join(f"p{i}=v," for i in range(70)) + 'realm="r", nonce="n"',
            "more than 64 parameters",
        ),
        ('Digest realm="' + "x" * 9000 + '", nonce="n"', "more than 8192"),
    ],
)
def test_malformed_challenges_name_header_and_problem(value: str, problem: str) -> None:
    with pytest.raises(DigestChallengeError, match=re.escape(problem)) as info:
        parse_challenge(value, header="WWW-Authenticate")
    assert str(info.value).startswith("WWW-Authenticate: ")
    assert isinstance(info.value, ParseError)


def test_non_digest_challenges_parse_but_are_not_usable() -> None:
    challenge = parse_challenge('Basic realm="r"')
    assert challenge.scheme == "Basic"
    assert not challenge.usable


# --- choosing -------------------------------------------------------------------------------


def _c(value: str) -> Challenge:
    return parse_challenge(value)


def test_strongest_supported_algorithm_wins_and_unknown_ones_are_skipped() -> None:
    offered = [
        _c('Digest realm="r", nonce="1", algorithm=MD5, qop="auth"'),
        _c('Digest realm="r", nonce="2", algorithm=AKAv1-MD5, qop="auth"'),
        _c('Digest realm="r", nonce="3", algorithm=SHA-512-256, qop="auth"'),
        _c('Digest realm="r", nonce="4", algorithm=SHA-256, qop="auth"'),
    ]
    (chosen,) = choose_challenges(offered)
    assert chosen.nonce == "3"


def test_unknown_first_challenge_does_not_abort() -> None:
    # baresip returns ENOSYS on the first unknown algorithm; RFC 8760 §2.4 says skip it.
    offered = [
        _c('Digest realm="r", nonce="1", algorithm=SHA3-256, qop="auth"'),
        _c('Digest realm="r", nonce="2", algorithm=MD5, qop="auth"'),
    ]
    assert [c.nonce for c in choose_challenges(offered)] == ["2"]


def test_sess_ranks_beside_its_base_algorithm() -> None:
    ranks = sorted(DigestAlgorithm, key=lambda a: a.strength)
    assert [a.value for a in ranks] == [
        "MD5",
        "MD5-sess",
        "SHA-256",
        "SHA-256-sess",
        "SHA-512-256",
        "SHA-512-256-sess",
    ]


def test_one_challenge_per_realm() -> None:
    offered = [
        _c('Digest realm="proxy", nonce="p", qop="auth"'),
        _c('Digest realm="registrar", nonce="r1", algorithm=MD5'),
        _c('Digest realm="registrar", nonce="r2", algorithm=SHA-256'),
    ]
    assert [(c.realm, c.nonce) for c in choose_challenges(offered)] == [
        ("proxy", "p"),
        ("registrar", "r2"),
    ]


def test_first_of_equally_strong_challenges_wins() -> None:
    offered = [_c('Digest realm="r", nonce="1"'), _c('Digest realm="r", nonce="2"')]
    assert [c.nonce for c in choose_challenges(offered)] == ["1"]


def test_nothing_usable_names_what_was_offered() -> None:
    offered = [
        _c('Digest realm="r", nonce="1", algorithm=AKAv1-MD5'),
        _c('Digest realm="r", nonce="2", qop="auth-conf"'),
        _c('Basic realm="r"'),
    ]
    with pytest.raises(NoUsableChallenge) as info:
        choose_challenges(offered)
    message = str(info.value)
    assert "Digest algorithm=AKAv1-MD5" in message
    assert "qop=auth-conf" in message
    assert "scheme Basic" in message
    assert "SHA-256" in message


def test_building_for_an_unusable_challenge_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="not supported"):
        build_credentials(
            _c('Digest realm="r", nonce="1", algorithm=AKAv1-MD5'),
            username="u",
            password="p",
            method="REGISTER",
            uri="sips:r",
            cnonce="c",
        )


@pytest.mark.parametrize("count", [0, 2**32])
def test_nonce_count_range(count: int) -> None:
    with pytest.raises(LocalProtocolError, match="out of range"):
        build_credentials(
            _c('Digest realm="r", nonce="1", qop="auth"'),
            username="u",
            password="p",
            method="REGISTER",
            uri="sips:r",
            cnonce="c",
            nonce_count=count,
        )


def test_digest_response_argument_checks() -> None:
    def run(qop: str | None, nc: str | None, cnonce: str | None) -> str:
        return digest_response(
            algorithm=DigestAlgorithm.MD5,
            username="u",
            password="p",
            realm="r",
            nonce="n",
            method="A",
            uri="u",
            qop=qop,
            nc=nc,
            cnonce=cnonce,
        )

    with pytest.raises(LocalProtocolError, match="needs a cnonce"):
        run("auth", "00000001", None)
    with pytest.raises(LocalProtocolError, match="nonce count"):
        run("auth", None, "c")
    with pytest.raises(LocalProtocolError, match="not supported"):
        run("x", "00000001", "c")


# --- the session ----------------------------------------------------------------------------

CHALLENGE_1 = 'Digest realm="sip.example.com", nonce="n1", algorithm=SHA-256, qop="auth"'
CHALLENGE_2 = 'Digest realm="sip.example.com", nonce="n2", algorithm=SHA-256, qop="auth"'
CHALLENGE_2_STALE = CHALLENGE_2 + ", stale=true"


def _session() -> DigestSession:
    return DigestSession(username="alice", rng=random.Random(5))


def _answer(session: DigestSession) -> str:
    (creds,) = session.credentials(method="REGISTER", uri="sips:sip.example.com", password="pw")
    return creds.header_value()


def test_first_challenge_is_a_retry_and_nc_counts_per_nonce() -> None:
    session = _session()
    assert session.credentials(method="REGISTER", uri="sips:x", password="pw") == []
    assert session.handle_challenges([CHALLENGE_1]) is ChallengeVerdict.RETRY
    assert "nc=00000001" in _answer(session)
    assert "nc=00000002" in _answer(session)
    assert session.realms == ("sip.example.com",)


def test_non_stale_challenge_after_answering_means_rejected() -> None:
    session = _session()
    session.handle_challenges([CHALLENGE_1])
    _answer(session)
    assert session.handle_challenges([CHALLENGE_2]) is ChallengeVerdict.REJECTED


def test_same_nonce_again_after_answering_is_also_rejected() -> None:
    session = _session()
    session.handle_challenges([CHALLENGE_1])
    _answer(session)
    assert session.handle_challenges([CHALLENGE_1]) is ChallengeVerdict.REJECTED


def test_stale_challenge_is_a_retry_with_the_new_nonce_and_nc_restarts() -> None:
    session = _session()
    session.handle_challenges([CHALLENGE_1])
    _answer(session)
    _answer(session)
    assert session.handle_challenges([CHALLENGE_2_STALE]) is ChallengeVerdict.RETRY_STALE
    value = _answer(session)
    assert 'nonce="n2"' in value
    assert "nc=00000001" in value


def test_an_expired_nonce_after_success_is_a_retry() -> None:
    # Some servers let an accepted nonce expire without stale=true.
    session = _session()
    session.handle_challenges([CHALLENGE_1])
    _answer(session)
    session.mark_accepted()
    assert session.handle_challenges([CHALLENGE_2]) is ChallengeVerdict.RETRY
    _answer(session)
    assert session.handle_challenges([CHALLENGE_1]) is ChallengeVerdict.REJECTED


def test_a_challenge_before_answering_is_never_a_rejection() -> None:
    session = _session()
    session.handle_challenges([CHALLENGE_1])
    assert session.handle_challenges([CHALLENGE_2]) is ChallengeVerdict.RETRY


def test_cnonce_comes_from_the_injected_rng() -> None:
    first = _session()
    second = _session()
    first.handle_challenges([CHALLENGE_1])
    second.handle_challenges([CHALLENGE_1])
    assert _answer(first) == _answer(second)
    cnonce = re.search(r'cnonce="([0-9a-f]+)"', _answer(first))
    assert cnonce is not None
    assert len(cnonce.group(1)) == 32


def test_proxy_challenges_give_proxy_authorization() -> None:
    session = _session()
    session.handle_challenges(['Digest realm="proxy", nonce="p"'], header="Proxy-Authenticate")
    (creds,) = session.credentials(method="INVITE", uri="sips:bob@example.com", password="pw")
    assert creds.header_name == "Proxy-Authorization"


def test_other_schemes_are_ignored_even_when_unparseable() -> None:
    session = _session()
    verdict = session.handle_challenges(["Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1", CHALLENGE_1])
    assert verdict is ChallengeVerdict.RETRY
    with pytest.raises(NoUsableChallenge, match="no challenge at all"):
        _session().handle_challenges(["Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1"])


def test_reset_forgets_challenges() -> None:
    session = _session()
    session.handle_challenges([CHALLENGE_1])
    session.reset()
    assert session.realms == ()


# --- secrets never leak ---------------------------------------------------------------------


def test_password_and_response_are_not_in_reprs_or_errors() -> None:
    session = _session()
    session.handle_challenges([CHALLENGE_1])
    (creds,) = session.credentials(method="REGISTER", uri="sips:x", password="hunter2-secret")
    assert "hunter2" not in repr(session)
    assert creds.response not in repr(creds)
    assert "hunter2" not in repr(creds)
    with pytest.raises(LocalProtocolError) as info:
        digest_response(
            algorithm=DigestAlgorithm.MD5_SESS,
            username="u",
            password="hunter2-secret",
            realm="r",
            nonce="n",
            method="REGISTER",
            uri="sips:x",
            qop=None,
        )
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            'Digest username="a", response="0123abcd", nc=00000001',
            'Digest username="a", response="<redacted>", nc=00000001',
        ),
        ('Digest RESPONSE = "x\\"y", realm="r"', 'Digest RESPONSE = "<redacted>", realm="r"'),
        ("Digest response=bare,realm=r", 'Digest response="<redacted>",realm=r'),
        ('Digest rspauth="keep", x-response="keep"', 'Digest rspauth="keep", x-response="keep"'),
    ],
)
def test_redact_credentials(value: str, expected: str) -> None:
    assert redact_credentials(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        'Digest username="a", uri="urn:response=", response="0123456789abcdef0123456789abcdef"',
        'Digest username="a", uri="sip:x, response=", response="0123456789abcdef0123456789abcdef"',
        'Digest username="a, response="0123456789abcdef0123456789abcdef"',
        "Digest RESPONSE = 0123456789abcdef0123456789abcdef, nc=00000001",
    ],
)
def test_redact_credentials_never_shows_the_digest(value: str) -> None:
    redacted = redact_credentials(value)
    assert "0123456789abcdef0123456789abcdef" not in redacted
    assert redacted.startswith("Digest")


def test_redact_credentials_of_empty_text_is_empty() -> None:
    assert redact_credentials("") == ""


def test_proxy_and_registrar_sharing_a_realm_are_answered_separately() -> None:
    # A 407 from the proxy, then a 401 from the registrar, both realm "example.test": two
    # challenges to answer, not credentials rejected.
    session = _session()
    proxy = 'Digest realm="example.test", nonce="p1", qop="auth"'
    registrar = 'Digest realm="example.test", nonce="w1", qop="auth"'
    assert session.handle_challenges([proxy], header="Proxy-Authenticate") is (
        ChallengeVerdict.RETRY
    )
    session.credentials(method="REGISTER", uri="sips:example.test", password="pw")
    assert session.handle_challenges([registrar]) is ChallengeVerdict.RETRY
    creds = session.credentials(method="REGISTER", uri="sips:example.test", password="pw")
    by_header = {c.header_name: c.header_value() for c in creds}
    assert set(by_header) == {"Proxy-Authorization", "Authorization"}
    assert 'nonce="p1"' in by_header["Proxy-Authorization"]
    assert 'nonce="w1"' in by_header["Authorization"]


def test_realms_are_bounded() -> None:
    session = _session()
    for i in range(50):
        session.handle_challenges([f'Digest realm="r{i}", nonce="n{i}", qop="auth"'])
    creds = session.credentials(method="REGISTER", uri="sips:example.test", password="pw")
    assert len(creds) == MAX_REALMS
    assert 'realm="r49"' in creds[-1].header_value()  # the newest are kept


_CHALLENGE_PIECES = ["realm", "nonce", "qop", "=", ",", " ", "\t", "\r\n", '"', "\\", "x", "MD5"]


@given(st.lists(st.sampled_from(_CHALLENGE_PIECES), max_size=30).map("".join))
def test_fast_challenge_parameters_agree_with_the_general_loop(value: str) -> None:
    from sipua.sip.digest import DigestChallengeError, _parse_params_fast, _parse_params_slow

    fast = _parse_params_fast(value, 0)
    if fast is None:
        return  # the general loop judges it
    try:
        slow = _parse_params_slow(value, 0, "WWW-Authenticate")
    except DigestChallengeError as exc:  # pragma: no cover - a disagreement is the failure
        raise AssertionError(f"fast path took {value!r}, general loop refused: {exc}") from exc
    assert fast == slow


@pytest.mark.parametrize(
    "value",
    [
        'realm="example.test", nonce="abc", qop="auth", algorithm=MD5',
        'realm=x , nonce = "y" ,stale=TRUE',
        'realm="x", nonce="y", opaque=""',
    ],
)
def test_common_challenges_take_the_fast_path(value: str) -> None:
    from sipua.sip.digest import _parse_params_fast, _parse_params_slow

    assert _parse_params_fast(value, 0) == _parse_params_slow(value, 0, "WWW-Authenticate")
