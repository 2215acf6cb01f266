"""Logging: JSON lines, console lines with the lock symbol, and secrets that never get out."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from sipua.logs import (
    LOCK_STATES,
    REDACTED,
    configure_logging,
    get_logger,
    is_secret_key,
    redact_text,
    redact_value,
)
from sipua.settings.secret import Secret

PASSWORD = "Sup3r-S3cret-pw"
RESPONSE = "6629fae49393a05397450978507c4ef1"
PEM_KEY = (
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg"
    "K3yPr1vATeKeyMaterial\n-----END PRIVATE KEY-----\n"
)
REGISTER = (
    "REGISTER sips:example.test SIP/2.0\r\n"
    "Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK776asdhds\r\n"
    'Authorization: Digest username="alice", realm="example.test", nonce="dcd98b71",\r\n'
    f' uri="sips:example.test", response="{RESPONSE}", algorithm=MD5\r\n'
    "Content-Length: 0\r\n\r\n"
)


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_is_one_object_per_line_with_event_timestamp_level() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    log = get_logger()
    log.info("registered", account="alice", expires=600)
    log.warning("lock-changed", account="alice", state="unlocked", reason="connection lost\nnow")
    first, second = json_lines(out)
    assert len(out.getvalue().splitlines()) == 2
    assert first["event"] == "registered"
    assert first["level"] == "info"
    assert str(first["timestamp"]).endswith("Z")
    assert (first["account"], first["expires"]) == ("alice", 600)
    assert (second["state"], second["reason"], second["level"]) == (
        "unlocked",
        "connection lost\nnow",
        "warning",
    )


def test_level_filter_skips_processors_entirely() -> None:
    class Explodes:
        def __repr__(self) -> str:
            raise AssertionError("a filtered event must not be rendered")

    out = io.StringIO()
    configure_logging("json", "info", out)
    log = get_logger()
    log.debug("noise", value=Explodes())
    assert out.getvalue() == ""
    configure_logging("json", "debug", out)
    get_logger().debug("noise", n=1)
    assert json_lines(out)[0]["event"] == "noise"


def test_unknown_format_or_level() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        configure_logging("xml", "info", io.StringIO())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("json", "loud", io.StringIO())


# --- redaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_secret_reaches_the_output(fmt: str) -> None:
    out = io.StringIO()
    configure_logging(fmt, "debug", out, colors=False)  # type: ignore[arg-type]
    log = get_logger()
    log.info("config", password=PASSWORD, sip_password=PASSWORD, client_secret=PASSWORD)
    log.info("account", credentials={"user": "alice", "pw": Secret(PASSWORD)})
    log.info("nested", items=[("x", Secret(PASSWORD))], headers={"Private_Key": PASSWORD})
    log.info(f"trace {REGISTER}")
    log.debug("sip-sent", message=REGISTER, raw=REGISTER.encode())
    log.info("key", pem=PEM_KEY, truncated=PEM_KEY[:80])
    log.info("object", thing=type("Obj", (), {"__repr__": lambda self: f"Obj({REGISTER!r})"})())
    try:
        raise RuntimeError(f"failed on {REGISTER}")
    except RuntimeError:
        log.exception("crash")
    text = out.getvalue()
    for secret in (PASSWORD, RESPONSE, "KeyMaterial"):
        assert secret not in text
    unescaped = text.replace('\\"', '"')  # JSON escapes the quotes of header values
    assert f'response="{REDACTED}"' in unescaped
    assert "-----BEGIN PRIVATE KEY-----<redacted>-----END PRIVATE KEY-----" in text
    # What is not secret stays readable.
    assert 'username="alice"' in unescaped
    assert "z9hG4bK776asdhds" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('Authorization: Digest username="a", response="abc"', f'response="{REDACTED}"'),
        ("Proxy-Authorization: Digest username=a,response=abc", f'response="{REDACTED}"'),
        ('authorization: DIGEST RESPONSE = "abc" , nc=1', f'RESPONSE = "{REDACTED}" , nc=1'),
        ('Authentication-Info: rspauth="abc", qop=auth', f'rspauth="{REDACTED}"'),
        ('Digest response="abc', f'response="{REDACTED}"'),  # an unterminated quote
    ],
)
def test_redact_text_digest(text: str, expected: str) -> None:
    redacted = redact_text(text)
    assert expected in redacted
    assert "abc" not in redacted


def test_redact_text_leaves_other_text_alone() -> None:
    text = "SIP/2.0 200 OK; response=200 in a plain message"
    assert redact_text(text) is text


@pytest.mark.parametrize("label", ["", "RSA ", "EC ", "ENCRYPTED ", "OPENSSH "])
def test_redact_pem_private_keys(label: str) -> None:
    block = f"-----BEGIN {label}PRIVATE KEY-----\nAAAAsecretBBBB\n-----END {label}PRIVATE KEY-----"
    redacted = redact_text(f"before\n{block}\nafter")
    assert "secret" not in redacted
    assert redacted.startswith("before\n")
    assert redacted.endswith("\nafter")


SDES_KEY = "WVNfUFRJQ0JfcG9saWN5X2tleV9zYWx0X2hlcmU"


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_sdes_keys_never_reach_the_output(fmt: str) -> None:
    # An INVITE's SDP carries the SRTP master key (RFC 4568): redacted like a password, in a
    # --trace of the message, as text or as bytes, while the suite and lifetime stay readable.
    invite = (
        "INVITE sips:bob@example.test SIP/2.0\r\nContent-Type: application/sdp\r\n\r\n"
        "v=0\r\nm=audio 4000 RTP/SAVP 0\r\n"
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{SDES_KEY}|2^20|1:4\r\n"
        f"a=crypto:2 AEAD_AES_256_GCM INLINE:{SDES_KEY}==\r\n"
    )
    out = io.StringIO()
    configure_logging(fmt, "debug", out, colors=False)  # type: ignore[arg-type]
    get_logger().debug("sip-sent", message=invite, raw=invite.encode())
    text = out.getvalue()
    assert SDES_KEY[:12] not in text
    assert f"AES_CM_128_HMAC_SHA1_80 inline:{REDACTED}|2^20|1:4" in text
    assert f"INLINE:{REDACTED}" in text


def test_redact_value_bounds_depth() -> None:
    loop: list[object] = []
    loop.append(loop)
    assert "nested too deep" in str(redact_value(loop))


def test_redact_bytes_keeps_bytes() -> None:
    assert redact_value(b"plain") == b"plain"
    redacted = redact_value(REGISTER.encode())
    assert isinstance(redacted, bytes)
    assert RESPONSE.encode() not in redacted


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("Password", True),
        ("private_key", True),
        ("client_secret", True),
        ("auth_token", True),
        ("password_file", False),
        ("password_env", False),
        ("private_key_path", False),
        ("account", False),
    ],
)
def test_is_secret_key(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


@given(st.text(min_size=1, max_size=40).map(lambda s: f"ZZ-{s}-ZZ"))
def test_property_secrets_never_rendered(secret: str) -> None:
    out = io.StringIO()
    configure_logging("json", "info", out)
    log = get_logger()
    log.info("event", password=secret, wrapped=Secret(secret), deep={"a": [Secret(secret)]})
    rendered = out.getvalue()
    assert secret not in rendered
    assert json.dumps(secret)[1:-1] not in rendered


# --- console -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "symbol"),
    [("locked", "🔒"), ("locked-unverified", "⚠"), ("unlocked", "🔓"), ("negotiating", "…")],
)
def test_console_lock_line(state: str, symbol: str) -> None:
    assert state in LOCK_STATES
    out = io.StringIO()
    configure_logging("console", "info", out)
    get_logger().info("lock-changed", account="alice", state=state, reason="why", tls="1.3")
    line = out.getvalue()
    assert f"[alice] {symbol} " in line
    assert "(why)" in line
    assert "tls=1.3" in line
    assert "\x1b[" not in line  # not a terminal: no colour


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ("registered", "✔ registered"),
        ("registration-failed", "✘ registration failed"),
        ("unregistered", "○ unregistered"),
        ("call-incoming", "☎ incoming call"),
        ("call-answered", "☎ call answered"),
        ("call-ended", "☎ call ended"),
    ],
)
def test_console_ua_events(event: str, words: str) -> None:
    out = io.StringIO()
    configure_logging("console", "info", out)
    get_logger().info(event, account="alice", call_id="c1")
    assert f"[alice] {words}" in out.getvalue()
    assert "call_id=c1" in out.getvalue()


def test_console_lock_line_without_reason_has_no_empty_parentheses() -> None:
    out = io.StringIO()
    configure_logging("console", "info", out)
    get_logger().info("lock-changed", account="alice", state="locked", reason="")
    assert "()" not in out.getvalue()
    assert "[alice] 🔒 locked" in out.getvalue()


def test_console_explains_a_failure_once() -> None:
    # The lock line names the failed check; the failure line after it explains.
    out = io.StringIO()
    configure_logging("console", "info", out)
    why = "the server example.test is not trusted: no trusted CA issued it (its issuer is X)"
    log = get_logger()
    log.info(
        "lock-changed",
        account="alice",
        state="unlocked",
        reason=f"verification-failed: untrusted-issuer ({why})",
        check="verification-failed: untrusted-issuer",
    )
    log.warning("registration-failed", account="alice", error="PeerNotTrusted", reason=why)
    lock, failed = out.getvalue().splitlines()
    assert "🔓 unlocked (verification-failed: untrusted-issuer)" in lock
    assert "check=" not in lock
    assert why not in lock
    assert f"✘ registration failed ({why}) error=PeerNotTrusted" in failed


def test_console_without_failure_explanations_leaves_them_to_the_error_line() -> None:
    out = io.StringIO()
    configure_logging("console", "info", out, explain_failures=False)
    get_logger().warning("registration-failed", account="alice", error="X", reason="because")
    assert "because" not in out.getvalue()
    assert "[alice] ✘ registration failed error=X" in out.getvalue()
    # The lock of a working but unverified connection is explained on its own line.
    get_logger().info(
        "lock-changed", account="alice", state="locked-unverified", reason="c (r)", check="c"
    )
    assert "⚠ locked, peer not verified (c (r))" in out.getvalue()


def test_console_colour_on_a_terminal_unless_no_color() -> None:
    tty = FakeTty()
    configure_logging("console", "info", tty, env={})
    get_logger().info("lock-changed", account="a", state="locked")
    assert "\x1b[32m🔒 locked\x1b[0m" in tty.getvalue()
    plain = FakeTty()
    configure_logging("console", "info", plain, env={"NO_COLOR": "1"})
    get_logger().info("lock-changed", account="a", state="locked")
    assert "\x1b[" not in plain.getvalue()


def test_console_other_events_use_structlog_lines() -> None:
    out = io.StringIO()
    configure_logging("console", "info", out)
    get_logger().info("connection-opened", peer="127.0.0.1:5061")
    assert "connection-opened" in out.getvalue()
    assert "peer=127.0.0.1:5061" in out.getvalue()


# --- context helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        'Authorization: Digest username="a", uri="sip:x, response=", response="{d}"',
        'Authorization: Digest username="a", uri="urn:response=", response="{d}"',
        'Authentication-Info: qop=auth, rspauth="{d}", cnonce="c"',
    ],
)
def test_trace_never_shows_a_digest_proof_behind_a_quoted_decoy(line: str) -> None:
    digest = "0123456789abcdef0123456789abcdef"
    trace = f"REGISTER sips:example.test SIP/2.0\r\n{line.format(d=digest)}\r\n\r\n"
    redacted = redact_text(trace)
    assert digest not in redacted
    assert redacted.startswith("REGISTER sips:example.test SIP/2.0\r\n")
