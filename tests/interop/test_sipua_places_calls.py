"""Calls sipua places (`sipua call`) over TLS through Kamailio, to a real baresip.

baresip registers as bob; sipua registers as alice and calls sip:bob@ through Kamailio. Each
outcome has its exit code: answered, audio both ways, and ended by either side (0), a callee
that does not exist (Kamailio's 404: 6), a callee that does not answer before the ring timeout
(CANCEL, 487: 6). With SRTP compulsory on both ends the audio is encrypted both ways. And sipua
calls sipua (bob answering with echo) under each SRTP mode, with DTMF and a recording, and a
compulsory side refuses a plain one (488: 6).
"""

from __future__ import annotations

import contextlib
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.peers import (
    Baresip,
    Kamailio,
    SipuaProcess,
    sipua_call_argv,
    sipua_outcome,
    sipua_register_argv,
)

pytestmark = pytest.mark.interop

EXIT_OK = 0
EXIT_CALL_FAILED = 6


def _bob(
    kam: Kamailio, work_dir: Path, *, answer: str = "auto", mediaenc: str | None = None
) -> Baresip:
    return Baresip(
        work_dir,
        user="bob",
        password=kam.users["bob"],
        proxy=(kam.ip, kam.tls_port),
        answer=answer,
        mediaenc=mediaenc,
    )


def _audio_both_ways(sipua: SipuaProcess) -> dict[str, object]:
    media = sipua.find("call-media")
    assert media is not None, sipua.tail()
    assert isinstance(media["packets_sent"], int)
    assert isinstance(media["packets_received"], int)
    assert media["packets_sent"] >= 25, media  # 20 ms packets for at least 0.5 s
    assert media["packets_received"] >= 25, media  # baresip's own audio came back to us
    return media


def test_sipua_calls_baresip_which_answers_then_sipua_hangs_up(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    with _bob(kamailio, tmp_path / "bob") as baresip:
        baresip.wait_registered()
        target = f"sips:bob@{kamailio.domain}"
        argv = sipua_call_argv(kamailio, tmp_path / "data", target, extra=["--duration", "1"])
        with SipuaProcess(argv) as sipua:
            code = sipua.wait()
        assert code == EXIT_OK, sipua.tail()
        established = sipua.find("call-established")
        assert established is not None, sipua.tail()
        ended = sipua.wait_for("call-ended", call_id=established["call_id"], timeout_s=1)
        assert ended["reason"] == "local-bye", ended
        baresip.wait_for_event("CALL_ESTABLISHED", timeout_s=5)
        baresip.wait_for_event("CALL_CLOSED", timeout_s=5)
        outcome = sipua_outcome("\n".join(sipua.lines))
        assert (outcome["result"], outcome["exit_code"]) == ("call ended", 0)
        assert outcome["lock"] == "unlocked"  # the flow was closed after unregistering
        media = _audio_both_ways(sipua)
        assert outcome["media"]["packets_received"] == media["packets_received"]


def test_baresip_hangs_up_the_call_sipua_placed(kamailio: Kamailio, tmp_path: Path) -> None:
    with _bob(kamailio, tmp_path / "bob") as baresip:
        baresip.wait_registered()
        # A sip: target: baresip 1.0 has no sips: support, and for a sips: request Kamailio
        # record-routes with a sips: URI, on which baresip cannot send its BYE.
        target = f"sip:bob@{kamailio.domain}"
        argv = sipua_call_argv(kamailio, tmp_path / "data", target, extra=["--duration", "60"])
        with SipuaProcess(argv) as sipua:
            sipua.wait_for("call-established", timeout_s=10)
            baresip.wait_for_event("CALL_ESTABLISHED", timeout_s=5)
            baresip.hangup()
            code = sipua.wait()
        assert code == EXIT_OK, sipua.tail()
        ended = sipua.find("call-ended")
        assert ended is not None
        assert ended["reason"] == "remote-bye", ended


def test_calling_nobody_is_refused_with_exit_6(kamailio: Kamailio, tmp_path: Path) -> None:
    target = f"sips:nobody@{kamailio.domain}"
    with SipuaProcess(sipua_call_argv(kamailio, tmp_path / "data", target)) as sipua:
        code = sipua.wait()
    assert code == EXIT_CALL_FAILED, sipua.tail()
    ended = sipua.find("call-ended")
    assert ended is not None, sipua.tail()
    assert (ended["reason"], ended["status"]) == ("refused", 404)
    errors = [line for line in sipua.lines if line.startswith("sipua: error:")]
    assert errors, sipua.tail()
    assert f"the call to {target} was refused: 404 Not Found" in errors[-1]


def test_an_unanswered_call_is_cancelled_after_the_ring_timeout(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    with _bob(kamailio, tmp_path / "bob", answer="manual") as baresip:
        baresip.wait_registered()
        target = f"sips:bob@{kamailio.domain}"
        argv = sipua_call_argv(kamailio, tmp_path / "data", target, extra=["--ring-timeout", "1"])
        with SipuaProcess(argv) as sipua:
            code = sipua.wait()
        assert code == EXIT_CALL_FAILED, sipua.tail()
        progress = sipua.find("call-progress")
        assert progress is not None, sipua.tail()
        assert progress["status"] == 180
        ended = sipua.find("call-ended")
        assert ended is not None
        assert (ended["reason"], ended["status"]) == ("cancelled", 487), ended
        baresip.wait_for_event("CALL_CLOSED", timeout_s=5)


def test_sipua_calls_baresip_with_srtp_compulsory_both_ways(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    with _bob(kamailio, tmp_path / "bob", mediaenc="srtp-mand") as baresip:
        baresip.wait_registered()
        target = f"sip:bob@{kamailio.domain}"
        extra = ["--duration", "2", "--srtp", "compulsory"]
        with SipuaProcess(
            sipua_call_argv(kamailio, tmp_path / "data", target, extra=extra)
        ) as sipua:
            code = sipua.wait()
        assert code == EXIT_OK, sipua.tail()
        media = _audio_both_ways(sipua)
        assert media["encrypted"] is True, media
        assert media["srtp"] in {"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"}, media
        assert (media["packets_lost"], media["srtp_auth_failures"]) == (0, 0), media
        baresip.wait_for_event("CALL_CLOSED", timeout_s=5)


@contextlib.contextmanager
def _sipua_bob(kam: Kamailio, data_dir: Path, srtp: str) -> Iterator[SipuaProcess]:
    """sipua registered as bob, answering with echo under `srtp`; SIGINT at the end."""
    extra = ["--srtp", srtp, "--answer-media", "echo"]
    argv = sipua_register_argv(kam, data_dir, user="bob", extra=extra)
    with SipuaProcess(argv, env={"SIPUA_AUTO_ANSWER_DELAY": "0.1"}) as bob:
        bob.wait_for("registered")
        yield bob
        assert bob.interrupt() == 0, bob.tail()


@pytest.mark.parametrize(
    ("caller", "callee", "encrypted"),
    [
        ("optional", "optional", True),
        ("disabled", "optional", False),
        ("compulsory", "compulsory", True),
    ],
)
def test_sipua_calls_sipua_with_each_srtp_mode(
    kamailio: Kamailio, tmp_path: Path, caller: str, callee: str, encrypted: bool
) -> None:
    record = tmp_path / "heard.wav"
    target = f"sips:bob@{kamailio.domain}"
    extra = ["--duration", "2", "--srtp", caller, "--dtmf", "19#", "--record", str(record)]
    with _sipua_bob(kamailio, tmp_path / "bob", callee) as bob:
        argv = sipua_call_argv(kamailio, tmp_path / "alice", target, extra=extra)
        with SipuaProcess(argv) as alice:
            code = alice.wait()
        assert code == EXIT_OK, alice.tail()
        media = _audio_both_ways(alice)  # our tone, echoed back by the other sipua
        assert media["encrypted"] is encrypted, media
        answered = bob.wait_for("call-media", timeout_s=5)
        assert answered["encrypted"] is encrypted, answered
        assert answered["digits_received"] == "19#", answered
    with wave.open(str(record), "rb") as heard:
        assert heard.getframerate() == 8000
        assert heard.getnframes() >= 8000  # at least a second of the echo


@pytest.mark.parametrize(
    ("caller", "callee"), [("compulsory", "disabled"), ("disabled", "compulsory")]
)
def test_a_compulsory_side_refuses_a_plain_one(
    kamailio: Kamailio, tmp_path: Path, caller: str, callee: str
) -> None:
    target = f"sips:bob@{kamailio.domain}"
    with _sipua_bob(kamailio, tmp_path / "bob", callee):
        argv = sipua_call_argv(kamailio, tmp_path / "alice", target, extra=["--srtp", caller])
        with SipuaProcess(argv) as alice:
            code = alice.wait()
    assert code == EXIT_CALL_FAILED, alice.tail()
    ended = alice.find("call-ended")
    assert ended is not None, alice.tail()
    assert (ended["reason"], ended["status"]) == ("refused", 488), ended
