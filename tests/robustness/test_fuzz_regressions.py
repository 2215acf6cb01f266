"""Fuzz findings replayed, and the fuzz properties checked with hypothesis on every test run.

The properties live in `scripts/fuzz/oracles.py`, shared with the atheris harnesses, so a
reproducer saved under `corpus/<target>/` is replayed through exactly the check that flagged
it. A reproducer fails here until the bug it shows is fixed in `sipua/`; it stays afterwards
as a regression test. The hypothesis tests run the same oracles on inputs built from the canned
messages, with a small budget (the long runs are `scripts/fuzz/run`).
"""

from __future__ import annotations

import importlib.util
import random
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipua.sip import parse_message
from sipua.sip.digest import DigestSession
from sipua.tls.trust.policy import verify_chain
from tests.support import messages

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
RFC4475 = ROOT / "tests" / "corpus" / "rfc4475"


def _load_oracles() -> ModuleType:
    path = ROOT / "scripts" / "fuzz" / "oracles.py"
    spec = importlib.util.spec_from_file_location("sipua_fuzz_oracles", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


oracles = _load_oracles()
TARGETS: dict[str, Callable[[bytes], None]] = oracles.TARGETS


def _reproducers() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*/*") if p.is_file() and p.suffix != ".md")


def test_corpus_directories_name_fuzz_targets() -> None:
    # A reproducer in a misspelled directory would silently never be replayed.
    assert _reproducers(), "tests/robustness/corpus holds no reproducer"
    for path in CORPUS.iterdir():
        if path.is_dir():
            assert path.name in TARGETS, f"{path} is not named after a fuzz target"


@pytest.mark.parametrize("path", _reproducers(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_reproducer(path: Path) -> None:
    TARGETS[path.parent.name](path.read_bytes())


# --- the seed corpus holds the properties ------------------------------------------------------

SEED_MESSAGES = [*sorted(RFC4475.glob("*.dat"))]


@pytest.mark.parametrize("path", SEED_MESSAGES, ids=lambda p: p.stem)
def test_rfc4475_messages_hold_parser_and_framer_properties(path: Path) -> None:
    data = path.read_bytes()
    oracles.check_parse_message(data)
    oracles.check_stream_framer(bytes([4, 0, 1]) + data)
    oracles.check_stream_framer(bytes([0, 0, 2]) + data)  # 64-byte cap: FramingError path


@pytest.mark.parametrize("data", messages.MIX, ids=["register", "401", "invite", "200"])
def test_canned_messages_hold_every_message_property(data: bytes) -> None:
    oracles.check_parse_message(data)
    oracles.check_stream_framer(bytes([4, 0, 3]) + b"\r\n\r\n" + data + b"\r\n" + data)


def test_oracles_detect_a_broken_property() -> None:
    # The oracles must be able to fail: a framer input whose events do not cover the stream.
    with pytest.raises(oracles.PropertyViolation):
        oracles._require(False, "demonstration")
    with pytest.raises(oracles.PropertyViolation, match="characters"):
        oracles._check_error(ValueError("x" * (oracles.MAX_ERROR_CHARS + 1)), b"")
    # Our password in an error is a leak, unless the peer sent it and the error quotes it.
    leaked = ValueError(f"bad line {oracles.FUZZ_PASSWORD!r}")
    with pytest.raises(oracles.PropertyViolation, match="password"):
        oracles._check_error(leaked, b"v=0\r\n")
    oracles._check_error(leaked, f"{oracles.FUZZ_PASSWORD}\r\n".encode())


# --- hypothesis: the same properties on structured inputs ---------------------------------------

FUZZ_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    """A canned message with a few byte-level edits (splice, delete, duplicate a line)."""
    data = bytearray(draw(st.sampled_from(messages.MIX)))
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "duplicate"]))
        if action == "insert":
            token = draw(
                st.sampled_from([b"\r\n", b" ", b";", b",", b"<", b">", b'"', b"\\", b":", b"\x00"])
                | st.binary(max_size=8)
            )
            data[pos:pos] = token
        elif action == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            start = data.rfind(b"\r\n", 0, pos) + 2
            end = data.find(b"\r\n", pos)
            if end > start:
                data[end:end] = data[start - 2 : end]
    return bytes(data)


@FUZZ_SETTINGS
@given(mutated_messages())
def test_parse_message_properties(data: bytes) -> None:
    oracles.check_parse_message(data)


@FUZZ_SETTINGS
@given(
    cap=st.integers(0, 4),
    seed=st.integers(0, 0xFFFF),
    parts=st.lists(
        mutated_messages()
        | st.sampled_from([b"\r\n", b"\r\n\r\n", b"\r"])
        | st.binary(max_size=64),
        max_size=5,
    ),
)
def test_stream_framer_properties(cap: int, seed: int, parts: list[bytes]) -> None:
    oracles.check_stream_framer(bytes([cap]) + seed.to_bytes(2, "big") + b"".join(parts))


@FUZZ_SETTINGS
@given(
    st.sampled_from(
        ["sip:", "sips:", "tel:", "urn:", '"A" <sips:', "<sip:", "SIP/2.0/TLS "]
    ).flatmap(lambda prefix: st.text(max_size=40).map(lambda rest: prefix + rest))
    | st.text(max_size=60)
)
def test_uri_and_address_properties(text: str) -> None:
    oracles.check_sip_uri(text.encode("utf-8", "surrogatepass"))


@FUZZ_SETTINGS
@given(
    params=st.lists(
        st.tuples(
            st.sampled_from(["realm", "nonce", "qop", "algorithm", "opaque", "stale", "domain"]),
            st.text(max_size=12),
            st.booleans(),
        ),
        max_size=8,
    ),
    uri=st.sampled_from(["", "sips:example.com", "sip:bob@h;transport=tls"]),
)
def test_digest_challenge_properties(params: list[tuple[str, str, bool]], uri: str) -> None:
    rendered = []
    for name, value, quoted in params:
        text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' if quoted else value
        rendered.append(f"{name}={text}")
    value = "Digest " + ", ".join(rendered)
    if uri:
        value += "\x00" + uri
    oracles.check_digest_challenge(value.encode("utf-8", "surrogatepass"))


def _seeds_module() -> ModuleType:
    path = ROOT / "scripts" / "fuzz" / "seeds.py"
    sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("sipua_fuzz_seeds", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "target", ["http_response", "provisioned_files", "known_keys", "phone_config"]
)
def test_provisioning_targets_hold_on_their_seeds(target: str) -> None:
    for data in _seeds_module().SEEDS[target]():
        TARGETS[target](data)


@FUZZ_SETTINGS
@given(
    limit=st.integers(0, 7),
    seed=st.integers(0, 0xFFFF),
    status=st.sampled_from([b"200 OK", b"404 Not Found", b"301 Moved", b"100 Continue"]),
    headers=st.lists(
        st.sampled_from(
            [
                b"Content-Length: 5",
                b"Content-Length: 99999999",
                b"Transfer-Encoding: chunked",
                b"Content-Length: x",
                b"X: \x00",
            ]
        ),
        max_size=3,
    ),
    body=st.binary(max_size=300),
)
def test_http_response_properties(
    limit: int, seed: int, status: bytes, headers: list[bytes], body: bytes
) -> None:
    head = b"HTTP/1.1 " + status + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"
    oracles.check_http_response(bytes([limit]) + seed.to_bytes(2, "big") + head + body)


@FUZZ_SETTINGS
@given(
    st.lists(
        st.sampled_from(["example.test", "#", "", "a b c", "[::1]", "x" * 300])
        | st.text(max_size=20),
        max_size=4,
    ).flatmap(
        lambda names: st.lists(
            st.sampled_from(["sha256/" + "A" * 43 + "=", "sha256/x", "", "sha1/abc"]),
            min_size=len(names),
            max_size=len(names),
        ).map(lambda pins: "\n".join(f"{n} {p}" for n, p in zip(names, pins, strict=True)))
    )
)
def test_known_keys_properties(text: str) -> None:
    oracles.check_known_keys(text.encode("utf-8", "surrogatepass"))


@FUZZ_SETTINGS
@given(
    st.lists(
        st.sampled_from(
            [
                "account.1.user_name = 100",
                "account.1.password = hunter22",
                "account.1.sip_server.1.address = pbx.example.test",
                "account.1.sip_server.1.transport_type = 2",
                "account.1.sip_server.1.port = 5061",
                'account.1.label = "A B"',
                "static.security.cn_validation = 1",
                "static.security.ca_cert = 2",
                "static.trusted_certificates.delete = http://localhost/all",
                "# comment",
                "",
            ]
        )
        | st.text(max_size=30),
        max_size=8,
    )
)
def test_phone_config_properties(lines: list[str]) -> None:
    text = "#!version:1.0.0.1\n" + "\n".join(lines) + "\n"
    oracles.check_phone_config(text.encode("utf-8", "surrogatepass"))


# --- findings shown end to end, from wire bytes -------------------------------------------------


def test_challenge_with_non_utf8_realm_from_the_wire_is_answered() -> None:
    # The parser keeps non-UTF-8 bytes as surrogate escapes (RFC 3261 allows any octet in a
    # quoted-string's UTF8-NONASCII, and a broken server may send Latin-1); the digest must be
    # computed over the bytes the server sent instead of failing with UnicodeEncodeError
    # (fuzz finding digest_challenge/non-utf8-realm-crashes-digest-response).
    data = messages.UNAUTHORIZED_BYTES.replace(b'realm="example.com"', b'realm="ex\xe9mple.com"')
    challenge = parse_message(data)
    session = DigestSession(username="alice", rng=random.Random(1))
    session.handle_challenges(challenge.headers.get_fields("WWW-Authenticate"))
    (credentials,) = session.credentials(method="REGISTER", uri="sips:example.com", password="pw")
    assert credentials.realm == "ex\udce9mple.com"
    assert len(credentials.response) == 32


@pytest.mark.parametrize(
    "name",
    [
        "invalid-version-escapes-load-certificates",
        "duplicate-extension-escapes-identity-and-summary",
        "bad-subject-escapes-identity-and-summary",
    ],
)
@pytest.mark.parametrize("expected_name", ["example.com", None], ids=["server", "client"])
def test_malformed_peer_certificate_is_a_verdict_not_an_exception(
    name: str, expected_name: str | None
) -> None:
    # A peer's certificate is hostile input: verify_chain must answer with problems (the
    # handshake is then refused cleanly), never let cryptography's lazy-parsing errors out.
    data = (CORPUS / "certificates" / name).read_bytes()
    result = verify_chain([data], name=expected_name, default_trusted=[])
    assert result.problems


@FUZZ_SETTINGS
@given(st.lists(st.tuples(st.integers(0, 255), mutated_messages()), min_size=1, max_size=6))
def test_endpoint_properties(flow: list[tuple[int, bytes]]) -> None:
    oracles.check_endpoint(
        oracles.ENDPOINT_SEPARATOR.join(bytes([selector]) + data for selector, data in flow)
    )


def test_endpoint_seeds_hold_the_properties() -> None:
    import importlib

    sys.path.insert(0, str(ROOT / "scripts" / "fuzz"))
    try:
        seeds = importlib.import_module("seeds")
        for data in seeds.endpoint_seeds():
            oracles.check_endpoint(data)
    finally:
        sys.path.remove(str(ROOT / "scripts" / "fuzz"))


# --- media: RTP datagrams and the SRTP policy over SDP -------------------------------------------


@FUZZ_SETTINGS
@given(
    selector=st.integers(0, 255),
    datagram=st.binary(max_size=64).map(lambda b: b"\x80" + b)
    | st.binary(max_size=200)
    | st.sampled_from([b"\x80\xc8\x00\x06", b"\x81\xc9\x00\x07", b"\xbf\x00"]).flatmap(
        lambda head: st.binary(max_size=60).map(lambda rest: head + rest)
    ),
)
def test_rtp_packet_properties(selector: int, datagram: bytes) -> None:
    oracles.check_rtp_packet(bytes([selector]) + datagram)


_CRYPTO_LINES = [
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "QUJD" * 10,
    "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:" + "QUJD" * 10 + "|2^20|1:4",
    "a=crypto:2 AEAD_AES_256_GCM inline:" + "QUJD" * 14 + "QUI=",
    "a=crypto:3 F8_128_HMAC_SHA1_80 inline:QUJD",
    "a=crypto:x junk",
    "a=rtcp-mux",
    "a=ptime:20",
]


@FUZZ_SETTINGS
@given(
    selector=st.integers(0, 15),
    profile=st.sampled_from(["RTP/AVP", "RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVP"]),
    address=st.sampled_from(["192.0.2.5", "::1", "pbx.example", ""]),
    lines=st.lists(st.sampled_from(_CRYPTO_LINES) | st.text(max_size=30), max_size=5),
)
def test_sdp_crypto_properties(selector: int, profile: str, address: str, lines: list[str]) -> None:
    family = "IP6" if ":" in address else "IP4"
    body = f"v=0\r\nc=IN {family} {address}\r\nm=audio 4000 {profile} 0 8 101\r\n"
    body += "".join(line + "\r\n" for line in lines)
    oracles.check_sdp_crypto(bytes([selector]) + body.encode("utf-8", "surrogatepass"))
