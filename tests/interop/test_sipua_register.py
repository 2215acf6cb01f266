"""sipua registers with a real Kamailio over TLS: digest, refresh, unregister, lock, recovery.

sipua runs as a child process (`python -m sipua register --log-format json`); the tests wait for
its JSON events. Whether Kamailio really holds the binding is checked from the outside: a SIPp
call to the account reaches sipua while it is registered and gets 404 once it unregistered.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.peers import (
    Kamailio,
    SipuaProcess,
    TestPki,
    run_sipp,
    sipua_register_argv,
)

pytestmark = pytest.mark.interop

# Kamailio's min_expires is 10 s; sipua refreshes well before the end of the lifetime.
SHORT_EXPIRES = "10"
FAST_ANSWER = {"SIPUA_AUTO_ANSWER_DELAY": "0.1"}


def test_register_refresh_call_and_unregister(kamailio: Kamailio, tmp_path: Path) -> None:
    argv = sipua_register_argv(
        kamailio, tmp_path / "data", extra=["--expires", SHORT_EXPIRES, "--keepalive", "5"]
    )
    with SipuaProcess(argv, env=FAST_ANSWER) as sipua:
        locked = sipua.wait_for("lock-changed", state="locked", scope="account")
        assert locked["peer"] == f"{kamailio.ip}:{kamailio.tls_port}"
        first = sipua.wait_for("registered", refreshed=False)
        assert first["lock"] == "locked"
        assert first["expires"] == int(SHORT_EXPIRES)
        # Digest: the first REGISTER was challenged; the registered event only follows a 200.
        refreshed = sipua.wait_for("registered", timeout_s=15, refreshed=True)
        assert refreshed["expires"] == int(SHORT_EXPIRES)

        # Kamailio's location table has sipua's binding: a call reaches it.
        call = run_sipp(
            "uac-call.xml",
            tmp_path / "sipp",
            (kamailio.ip, kamailio.udp_port),
            service="alice",
            hold_ms=100,
            timeout_s=10,
        )
        assert call.ok, call.describe() + "\n--- sipua ---\n" + sipua.tail()
        sipua.wait_for("call-answered")
        sipua.wait_for("call-ended", reason="remote-bye")

        code = sipua.interrupt()
        assert code == 0, sipua.tail()
        unregistered = sipua.find("unregistered")
        assert unregistered is not None, sipua.tail()
        assert unregistered["status"] == 200
        *_, closed, outcome = sipua.events
        assert closed["event"] == "lock-changed"
        assert closed["state"] == "unlocked", sipua.tail()
        # The last line is the outcome, as with --once.
        assert outcome["event"] == "outcome"
        assert (outcome["result"], outcome["lock"], outcome["exit_code"]) == (
            "unregistered",
            "unlocked",
            0,
        )

    # The binding is gone: Kamailio answers a new call itself.
    gone = run_sipp(
        "uac-call.xml",
        tmp_path / "sipp-after",
        (kamailio.ip, kamailio.udp_port),
        service="alice",
        timeout_s=6,
    )
    assert not gone.ok
    assert "SIP/2.0 404" in gone.messages, gone.describe()


def test_wrong_password_exits_4_with_the_refusal(kamailio: Kamailio, tmp_path: Path) -> None:
    argv = sipua_register_argv(kamailio, tmp_path / "data", extra=["--once"])
    password_file = Path(argv[argv.index("--password-file") + 1])
    password_file.write_text("not-the-password\n")
    with SipuaProcess(argv) as sipua:
        code = sipua.wait()
    assert code == 4, sipua.tail()
    failed = sipua.find("registration-failed")
    assert failed is not None, sipua.tail()
    assert failed["status"] == 403
    assert "sipua: error: registration refused (403)" in sipua.output
    # Kamailio refuses a wrong password with 403: sipua says what most likely happened.
    assert "the password (or the user name 'alice') is most likely wrong" in sipua.output


def test_kamailio_restart_drops_the_lock_then_sipua_registers_again(
    tmp_path: Path, test_pki: TestPki
) -> None:
    with Kamailio(tmp_path / "kamailio", pki=test_pki) as kam:
        # A short keep-alive notices the dead flow quickly even if no FIN arrives.
        argv = sipua_register_argv(kam, tmp_path / "data", extra=["--keepalive", "2"])
        with SipuaProcess(argv, env=FAST_ANSWER) as sipua:
            sipua.wait_for("registered")
            before = sipua.mark()
            kam.restart()
            dropped = sipua.wait_for(
                "lock-changed", timeout_s=15, since=before, scope="account", state="unlocked"
            )
            assert dropped["reason"], dropped
            # The first reconnect is immediate and finds Kamailio still starting; the next one
            # waits RFC 5626 §4.5's back-off (base 30 s, so 15 to 30 s).
            relocked = sipua.wait_for(
                "lock-changed", timeout_s=45, since=before, scope="account", state="locked"
            )
            again = sipua.wait_for("registered", timeout_s=5, since=before)
            assert sipua.events.index(relocked) < sipua.events.index(again)
            assert sipua.events.index(dropped) < sipua.events.index(relocked)
            # The new Kamailio knows the binding: a call reaches sipua.
            call = run_sipp(
                "uac-call.xml",
                tmp_path / "sipp",
                (kam.ip, kam.udp_port),
                service="alice",
                hold_ms=100,
                timeout_s=10,
            )
            assert call.ok, call.describe() + "\n--- sipua ---\n" + sipua.tail()
            assert sipua.interrupt() == 0, sipua.tail()
