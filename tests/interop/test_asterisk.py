"""sipua against a real Asterisk 22 (PJSIP over TLS, built from source by scripts/build-peers).

- `register --once` with digest authentication over TLS 1.3; a wrong password (Asterisk
  challenges again: 401, exit 4); pjproject's default TLS method (TLS 1.0 only), refused (exit 3).
- Mutual TLS: with sipua's exported device CA in Asterisk's `ca_list_file` (locked, exit 0); with
  a device certificate Asterisk does not trust, pjsip closes the connection after the TLS 1.3
  handshake without an alert, which sipua reports as a probable client-certificate refusal
  (exit 3) without ever showing the lock as held.
- Calls from Asterisk (`channel originate`) in both delivery modes: rewrite_contact=yes (alice:
  over the registration connection) and rewrite_contact=no (bob: a new TLS connection to
  sipua's listener), answered by sipua and ended from each side.
- SIGINT unregisters: `pjsip show contacts` is empty afterwards.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.interop.asterisk import Asterisk
from tests.interop.peers import (
    LOCALHOST,
    SipuaProcess,
    TestPki,
    export_device_ca,
    free_tcp_port,
    import_device_certificate,
    run_sipua,
    sipua_outcome,
    sipua_register_argv,
)

pytestmark = pytest.mark.interop

EXIT_OK = 0
EXIT_TLS = 3
EXIT_REFUSED = 4
FAST_ANSWER = {"SIPUA_AUTO_ANSWER_DELAY": "0.1"}


@pytest.fixture(scope="module")
def asterisk(tmp_path_factory: pytest.TempPathFactory, test_pki: TestPki) -> Iterator[Asterisk]:
    """An Asterisk registrar shared by the tests of this module."""
    with Asterisk(tmp_path_factory.mktemp("asterisk"), pki=test_pki) as ast:
        yield ast


@pytest.fixture(autouse=True)
def _no_binding_left(asterisk: Asterisk) -> Iterator[None]:
    """Every test leaves Asterisk without registrations and channels (sipua cleaned up)."""
    yield
    assert asterisk.wait_contacts(0) == []
    assert asterisk.channels() == []


def _error_line(sipua: SipuaProcess) -> str:
    """sipua's last `sipua: error:` line (what a CI log shows)."""
    errors = [line for line in sipua.lines if line.startswith("sipua: error:")]
    assert errors, sipua.tail()
    return errors[-1]


def _wait_no_channels(ast: Asterisk, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while ast.channels():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _once(
    ast: Asterisk, data_dir: Path, *, port: int | None = None, extra: Sequence[str] = ()
) -> tuple[int, dict[str, Any], str]:
    argv = sipua_register_argv(ast, data_dir, port=port, extra=["--once", *extra])
    proc = run_sipua(argv)
    return proc.returncode, sipua_outcome(proc.stdout), proc.stderr


def test_register_once_with_digest_over_tls13(asterisk: Asterisk, tmp_path: Path) -> None:
    argv = sipua_register_argv(asterisk, tmp_path / "data", extra=["--once"])
    with SipuaProcess(argv) as sipua:
        code = sipua.wait()
    assert code == EXIT_OK, sipua.tail()
    tls = sipua.find("tls-established")
    assert tls is not None, sipua.tail()
    assert tls["version"] == "TLSv1.3"  # method = sslv23: OpenSSL's choice
    assert tls["verified"] is True
    # pjsip asks every TLS client for a certificate, even with verify_client = no: sipua's lock
    # waits for Asterisk's first answer (its 401) on every Asterisk port.
    assert tls["client_certificate_requested"] is True
    registered = sipua.find("registered")
    assert registered is not None, sipua.tail()
    assert registered["lock"] == "locked"
    assert sipua.wait_for("unregistered", timeout_s=1)["status"] == 200


def test_wrong_password_exits_4_naming_the_password(asterisk: Asterisk, tmp_path: Path) -> None:
    argv = sipua_register_argv(asterisk, tmp_path / "data", extra=["--once"])
    Path(argv[argv.index("--password-file") + 1]).write_text("not-the-password\n")
    with SipuaProcess(argv) as sipua:
        code = sipua.wait()
    assert code == EXIT_REFUSED, sipua.tail()
    failed = sipua.find("registration-failed")
    assert failed is not None, sipua.tail()
    # Asterisk answers wrong credentials with a new challenge, not a 403.
    assert failed["status"] == 401, failed
    assert "password" in _error_line(sipua), sipua.tail()


def test_pjproject_default_tls_method_is_refused_naming_the_version(
    asterisk: Asterisk, tmp_path: Path
) -> None:
    # No `method` on the transport: pjproject offers TLS 1.0 only; sipua's floor is TLS 1.2.
    code, outcome, stderr = _once(asterisk, tmp_path / "data", port=asterisk.tls_default_port)
    assert code == EXIT_TLS, stderr
    assert outcome["lock"] == "unlocked"
    assert outcome["lock_reason"].startswith("handshake-failed"), outcome
    last = stderr.strip().splitlines()[-1]
    assert "protocol version" in last, stderr
    assert "share no TLS version" in last, stderr


def test_mutual_tls_trusted_device_ca_and_refused_stranger(
    tmp_path: Path, test_pki: TestPki
) -> None:
    data = tmp_path / "data"
    device_ca = export_device_ca(data, tmp_path / "sipua-device-ca.pem")
    with Asterisk(tmp_path / "asterisk", pki=test_pki, device_ca=device_ca) as ast:
        code, outcome, stderr = _once(ast, data, port=ast.mtls_port)
        assert code == EXIT_OK, f"{stderr}\n--- asterisk ---\n{ast.log_tail()}"
        assert outcome["lock"] == "locked", outcome
        assert ast.wait_contacts(0) == []

        # A device certificate from a CA Asterisk does not trust. pjsip checks it after the
        # TLS 1.3 handshake and closes the socket without an alert, before any SIP answer.
        import_device_certificate(data, test_pki.cert("stranger"), test_pki.key("stranger"))
        # pjsip says why it closed only in its debug log.
        ast.cli("logger add channel pjsip-debug.log debug")
        ast.cli("core set debug 5")
        ast.cli("pjproject set log level 5")
        argv = sipua_register_argv(
            ast, data, port=ast.mtls_port, extra=["--once", "--device-cert", "custom"]
        )
        with SipuaProcess(argv) as sipua:
            code = sipua.wait()
        assert code == EXIT_TLS, sipua.tail()
        tls = sipua.find("tls-established")
        assert tls is not None, sipua.tail()
        assert tls["client_certificate_requested"] is True, tls
        states = [e["state"] for e in sipua.events if e["event"] == "lock-changed"]
        assert "locked" not in states, sipua.tail()  # never shown as held
        assert states[-1] == "unlocked", states
        lock = [e for e in sipua.events if e["event"] == "lock-changed"][-1]
        assert lock["reason"].startswith("handshake-failed: client-certificate"), lock
        assert "probably refused the certificate" in _error_line(sipua), sipua.tail()
        assert ast.contacts() == []
        # Asterisk's side of the story: it refused the certificate, and said so only in its
        # debug log ("TLS transport destroyed with reason 171173: SSL certificate verification
        # error (PJSIP_TLS_ECERTVERIF)").
        debug = (ast.run_dir / "log" / "pjsip-debug.log").read_text(errors="replace")
        assert "PJSIP_TLS_ECERTVERIF" in debug, debug[-3000:]


@contextlib.contextmanager
def registered_sipua(
    ast: Asterisk, data_dir: Path, user: str, *, listen: bool, extra: Sequence[str] = ()
) -> Iterator[SipuaProcess]:
    """sipua registered as `user`; interrupted at the end, and Asterisk's binding checked gone."""
    address = (LOCALHOST, free_tcp_port()) if listen else None
    argv = sipua_register_argv(ast, data_dir, user=user, listen=address, extra=extra)
    with SipuaProcess(argv, env=FAST_ANSWER) as sipua:
        sipua.wait_for("registered")
        [contact] = ast.wait_contacts(1)
        assert contact.startswith(f"{user}/"), contact
        yield sipua
        assert sipua.interrupt() == 0, sipua.tail()
        assert sipua.wait_for("unregistered", timeout_s=1)["status"] == 200
    assert ast.wait_contacts(0) == []


@pytest.mark.parametrize(
    ("user", "listen", "new_connection"),
    [("alice", False, False), ("bob", True, True)],
    ids=["rewrite-contact-yes", "rewrite-contact-no"],
)
def test_call_from_asterisk_answered_and_ended_by_asterisk(
    asterisk: Asterisk, tmp_path: Path, user: str, listen: bool, new_connection: bool
) -> None:
    with registered_sipua(asterisk, tmp_path / "data", user, listen=listen) as sipua:
        registration = sipua.wait_for("registered")["peer"]
        # Asterisk calls, runs Wait(1) once sipua answered, then hangs up: its BYE.
        asterisk.cli(f"channel originate PJSIP/{user} application Wait 1")
        incoming = sipua.wait_for("call-incoming")
        assert (incoming["peer"] != registration) is new_connection, (incoming, registration)
        sipua.wait_for("call-answered", call_id=incoming["call_id"])
        sipua.wait_for("call-confirmed", call_id=incoming["call_id"])
        ended = sipua.wait_for("call-ended", timeout_s=15, call_id=incoming["call_id"])
        assert ended["reason"] == "remote-bye", ended


@pytest.mark.parametrize(
    ("user", "listen", "new_connection"),
    [("alice", False, False), ("bob", True, True)],
    ids=["rewrite-contact-yes", "rewrite-contact-no"],
)
def test_call_from_asterisk_answered_and_ended_by_sipua(
    asterisk: Asterisk, tmp_path: Path, user: str, listen: bool, new_connection: bool
) -> None:
    with registered_sipua(
        asterisk, tmp_path / "data", user, listen=listen, extra=["--hangup-after", "1"]
    ) as sipua:
        registration = sipua.wait_for("registered")["peer"]
        asterisk.cli(f"channel originate PJSIP/{user} application Echo")
        incoming = sipua.wait_for("call-incoming")
        assert (incoming["peer"] != registration) is new_connection, (incoming, registration)
        sipua.wait_for("call-confirmed", call_id=incoming["call_id"])
        ended = sipua.wait_for("call-ended", timeout_s=15, call_id=incoming["call_id"])
        assert ended["reason"] == "local-bye", ended
        # Asterisk took sipua's BYE: its channel is gone.
        assert _wait_no_channels(asterisk), asterisk.channels()


def test_sigint_unregisters_and_asterisk_forgets_the_contact(
    asterisk: Asterisk, tmp_path: Path
) -> None:
    argv = sipua_register_argv(asterisk, tmp_path / "data", user="carol")
    with SipuaProcess(argv, env=FAST_ANSWER) as sipua:
        sipua.wait_for("registered")
        [contact] = asterisk.wait_contacts(1)
        assert contact.startswith("carol/sips:carol@"), contact
        assert sipua.interrupt() == 0, sipua.tail()
    assert sipua.wait_for("unregistered", timeout_s=1)["status"] == 200
    assert asterisk.contacts() == []


def test_sipua_calls_echo_with_digest_and_hangs_up(asterisk: Asterisk, tmp_path: Path) -> None:
    # Asterisk challenges the INVITE (401) as it did the REGISTER: the call is placed again
    # with the account's credentials, answered by Echo(), and ended by sipua's BYE.
    from tests.interop.peers import sipua_call_argv

    target = f"sips:echo@{asterisk.domain}"
    extra = ["--duration", "1", "--trace"]
    argv = sipua_call_argv(asterisk, tmp_path / "data", target, extra=extra)
    with SipuaProcess(argv) as sipua:
        code = sipua.wait()
    assert code == EXIT_OK, sipua.tail()
    invites = [
        event["message"]
        for event in sipua.events
        if event["event"] == "sip-trace"
        and event["direction"] == "sent"
        and event["message"].startswith("INVITE ")
    ]
    assert len(invites) == 2, sipua.tail()
    assert "Authorization: Digest" not in invites[0]
    assert "Authorization: Digest" in invites[1]
    established = sipua.find("call-established")
    assert established is not None, sipua.tail()
    ended = sipua.find("call-ended")
    assert ended is not None
    assert ended["reason"] == "local-bye", ended
    media = sipua.find("call-media")
    assert media is not None, sipua.tail()
    assert media["packets_received"] >= 25, media  # our tone, echoed back by Echo()
    assert _wait_no_channels(asterisk), asterisk.channels()


def test_sipua_calls_echo_over_sdes_srtp_and_gets_its_tone_back(
    asterisk: Asterisk, tmp_path: Path
) -> None:
    # carol's endpoint has media_encryption = sdes: Asterisk takes SDES keys over TLS only.
    from tests.interop.peers import sipua_call_argv

    target = f"sips:echo@{asterisk.domain}"
    extra = ["--duration", "2", "--srtp", "compulsory"]
    argv = sipua_call_argv(asterisk, tmp_path / "data", target, user="carol", extra=extra)
    with SipuaProcess(argv) as sipua:
        code = sipua.wait()
    assert code == EXIT_OK, sipua.tail()
    media = sipua.find("call-media")
    assert media is not None, sipua.tail()
    assert media["encrypted"] is True, media
    assert media["srtp"] in {"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"}, media
    assert media["packets_received"] >= 50, media  # 2 s of our tone, echoed back
    assert (media["packets_lost"], media["srtp_auth_failures"]) == (0, 0), media
    assert _wait_no_channels(asterisk), asterisk.channels()
