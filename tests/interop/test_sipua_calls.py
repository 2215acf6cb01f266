"""Inbound calls to sipua from real peers, through Kamailio, on both delivery paths.

- SIPp has no TLS here: it calls over UDP or TCP to Kamailio, which delivers the INVITE to
  sipua over TLS. baresip calls over TLS end to end.
- Default Kamailio mode: the INVITE comes over sipua's registration connection (RFC 5626 flow
  reuse). `route_to_contact`: Kamailio opens a new TLS connection to the listener address in
  sipua's Contact, verifying sipua's device certificate against the device CA exported with
  `sipua cert export-ca`.
- Each call ends once from each side: the caller's BYE, sipua's BYE (`--hangup-after`), and a
  CANCEL before sipua answers (487).
- Media: baresip calls with SRTP compulsory (SDES over TLS) and sipua answers with echo; both
  sides' counters (sipua's `call-media` event, baresip's rtcpsummary) show audio both ways.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.interop.peers import (
    LOCALHOST,
    Baresip,
    Kamailio,
    SipuaProcess,
    TestPki,
    export_device_ca,
    free_tcp_port,
    run_sipp,
    sipua_register_argv,
)

pytestmark = pytest.mark.interop

FAST_ANSWER: Mapping[str, str] = {"SIPUA_AUTO_ANSWER_DELAY": "0.1"}


@contextlib.contextmanager
def registered_sipua(
    kam: Kamailio,
    data_dir: Path,
    *,
    env: Mapping[str, str] = FAST_ANSWER,
    listen: bool = False,
    extra: Sequence[str] = (),
) -> Iterator[SipuaProcess]:
    """sipua registered as alice at `kam`; stopped with SIGINT (and checked) at the end."""
    address = (LOCALHOST, free_tcp_port()) if listen else None
    argv = sipua_register_argv(kam, data_dir, listen=address, extra=extra)
    with SipuaProcess(argv, env=env) as sipua:
        sipua.wait_for("registered")
        yield sipua
        assert sipua.interrupt() == 0, sipua.tail()


def _sipp_call(
    kam: Kamailio, work_dir: Path, scenario: str = "uac-call.xml", transport: str = "u1"
) -> str:
    port = kam.udp_port if transport == "u1" else kam.tcp_port
    result = run_sipp(
        scenario,
        work_dir,
        (kam.ip, port),
        transport=transport,
        service="alice",
        hold_ms=200,
        timeout_s=12,
    )
    assert result.ok, result.describe()
    return result.messages


@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["udp", "tcp"])
def test_sipp_call_over_the_registration_connection_caller_hangs_up(
    kamailio: Kamailio, tmp_path: Path, transport: str
) -> None:
    with registered_sipua(kamailio, tmp_path / "data") as sipua:
        flow = sipua.wait_for("registered")["peer"]
        messages = _sipp_call(kamailio, tmp_path / "sipp", transport=transport)
        incoming = sipua.wait_for("call-incoming")
        # Delivered over the registration flow: the same registrar connection.
        assert incoming["peer"] == flow
        assert incoming["callee"].endswith("alice@example.test")
        sipua.wait_for("call-answered", call_id=incoming["call_id"])
        ended = sipua.wait_for("call-ended", call_id=incoming["call_id"])
        assert ended["reason"] == "remote-bye", ended
    assert "Content-Type: application/sdp" in messages.split("SIP/2.0 200 OK", 1)[1]


def test_sipp_call_sipua_hangs_up(kamailio: Kamailio, tmp_path: Path) -> None:
    with registered_sipua(kamailio, tmp_path / "data", extra=["--hangup-after", "0.5"]) as sipua:
        messages = _sipp_call(kamailio, tmp_path / "sipp", scenario="uac-call-callee-bye.xml")
        ended = sipua.wait_for("call-ended")
        assert ended["reason"] == "local-bye", ended
    assert "BYE sip:sipp@" in messages


def test_sipp_cancel_before_answer_gets_487(kamailio: Kamailio, tmp_path: Path) -> None:
    slow = {"SIPUA_AUTO_ANSWER_DELAY": "10"}
    with registered_sipua(kamailio, tmp_path / "data", env=slow) as sipua:
        messages = _sipp_call(kamailio, tmp_path / "sipp", scenario="uac-cancel.xml")
        incoming = sipua.wait_for("call-incoming")
        ended = sipua.wait_for("call-ended", call_id=incoming["call_id"])
        assert ended["reason"] == "cancelled", ended
        assert ended["status"] == 487
        assert sipua.find("call-answered") is None
    assert "SIP/2.0 487" in messages


def test_baresip_calls_over_tls_each_side_hangs_up(kamailio: Kamailio, tmp_path: Path) -> None:
    with (
        registered_sipua(kamailio, tmp_path / "data", extra=["--hangup-after", "1.5"]) as sipua,
        Baresip(
            tmp_path / "bob",
            user="bob",
            password=kamailio.users["bob"],
            proxy=(kamailio.ip, kamailio.tls_port),
        ) as baresip,
    ):
        baresip.wait_registered()

        # baresip hangs up first (before sipua's timer).
        baresip.dial(f"sip:alice@{kamailio.domain}")
        baresip.wait_for_event("CALL_ESTABLISHED", timeout_s=8)
        first = sipua.wait_for("call-answered")
        baresip.hangup()
        ended = sipua.wait_for("call-ended", call_id=first["call_id"])
        assert ended["reason"] == "remote-bye", ended
        baresip.wait_for_event("CALL_CLOSED", timeout_s=5)

        # Then sipua ends the call (--hangup-after).
        baresip.dial(f"sip:alice@{kamailio.domain}")
        baresip.wait_for_event("CALL_ESTABLISHED", timeout_s=8)
        second = sipua.wait_for("call-answered", since=sipua.events.index(ended) + 1)
        ended = sipua.wait_for("call-ended", call_id=second["call_id"])
        assert ended["reason"] == "local-bye", ended
        closed = baresip.wait_for_event("CALL_CLOSED", timeout_s=5)
        # baresip's words for "the other side sent BYE" (ECONNRESET).
        assert closed.get("param") == "Connection reset by peer", closed


def test_route_to_contact_delivers_over_a_new_verified_tls_connection(
    tmp_path: Path, test_pki: TestPki
) -> None:
    data = tmp_path / "data"
    device_ca = export_device_ca(data, tmp_path / "sipua-device-ca.pem")
    with Kamailio(
        tmp_path / "kamailio", pki=test_pki, route_to_contact=True, device_ca=device_ca
    ) as kam:
        with registered_sipua(kam, data, listen=True) as sipua:
            flow = sipua.wait_for("registered")["peer"]
            _sipp_call(kam, tmp_path / "sipp")
            incoming = sipua.wait_for("call-incoming")
            # Not the registration flow: Kamailio connected to sipua's listener.
            assert incoming["peer"] != flow
            inbound = sipua.wait_for("lock-changed", scope="connection", peer=incoming["peer"])
            assert inbound["state"] in ("locked", "locked-unverified"), inbound
            ended = sipua.wait_for("call-ended", call_id=incoming["call_id"])
            assert ended["reason"] == "remote-bye", ended
        log = kam.log_tail(400)
    assert "certificate verify failed" not in log


def test_route_to_contact_fails_when_kamailio_does_not_trust_the_device_ca(
    tmp_path: Path, test_pki: TestPki
) -> None:
    # Kamailio trusts the test PKI's device CA, not this sipua's: it refuses sipua's listener
    # certificate, and the call never reaches sipua.
    with Kamailio(tmp_path / "kamailio", pki=test_pki, route_to_contact=True) as kam:
        with registered_sipua(kam, tmp_path / "data", listen=True) as sipua:
            result = run_sipp(
                "uac-call.xml",
                tmp_path / "sipp",
                (kam.ip, kam.udp_port),
                service="alice",
                timeout_s=6,
            )
            assert not result.ok
            assert sipua.find("call-incoming") is None, sipua.tail()
        log = kam.log_tail(400)
    assert "certificate verify failed" in log, log


def test_baresip_calls_with_srtp_compulsory_and_hears_its_audio_echoed(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    # SRTP compulsory on both ends (baresip: mediaenc=srtp-mand, RTP/SAVP with SDES keys); sipua
    # answers with echo. Both sides' counters show audio flowing both ways, encrypted.
    extra = ["--srtp", "compulsory", "--answer-media", "echo", "--log-format", "json"]
    with (
        registered_sipua(kamailio, tmp_path / "data", extra=extra) as sipua,
        Baresip(
            tmp_path / "bob",
            user="bob",
            password=kamailio.users["bob"],
            proxy=(kamailio.ip, kamailio.tls_port),
            mediaenc="srtp-mand",
        ) as baresip,
    ):
        baresip.wait_registered()
        baresip.dial(f"sip:alice@{kamailio.domain}")
        baresip.wait_for_event("CALL_ESTABLISHED", timeout_s=8)
        time.sleep(3.0)  # past the first RTCP reports (2.5 s), which rtcpsummary needs
        baresip.hangup()
        baresip.wait_for_event("CALL_CLOSED", timeout_s=5)
        media = sipua.wait_for("call-media")
        time.sleep(0.5)  # rtcpsummary writes when the call is freed
        log = baresip.log_tail(400)
    assert media["encrypted"] is True, media
    assert media["srtp"] in {"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"}, media
    assert media["packets_received"] >= 100, media  # 3 s of baresip's 50 packets/s
    assert media["packets_sent"] >= 100, media
    assert (media["packets_lost"], media["srtp_auth_failures"]) == (0, 0), media
    # baresip's side (rtcpsummary at the end of the call): it received sipua's echo, and its
    # RTCP saw no loss.
    summary = re.search(r"PR=(\d+);PS=(\d+);PL=(\d+),(\d+);", log)
    assert summary is not None, log
    assert int(summary[1]) >= 100, summary[0]
    assert (summary[3], summary[4]) == ("0", "0"), summary[0]
