"""pjsua (PJSIP's reference UA, pjproject 2.17 built from source) calls sipua over TLS.

- Directly: pjsua connects to sipua's TLS listener (no registrar in the path) and calls it.
- Through Kamailio: pjsua registers over TLS to the project's Kamailio and calls sipua's address
  of record; Kamailio delivers the INVITE over sipua's registration connection.

Each call is answered by sipua and ended once from each side: pjsua's BYE (`--duration`) and
sipua's BYE (`--hangup-after`). And sipua calls pjsua (`sipua call`) through Kamailio, where pjsua
is registered as bob and answers at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.interop.peers import (
    LOCALHOST,
    Kamailio,
    SipuaProcess,
    free_tcp_port,
    sipua_call_argv,
    sipua_register_argv,
)
from tests.interop.pjsua import CALL_CONFIRMED, CALL_DISCONNECTED, REGISTERED, Pjsua

pytestmark = pytest.mark.interop

FAST_ANSWER = {"SIPUA_AUTO_ANSWER_DELAY": "0.1"}


@contextlib.contextmanager
def listening_sipua(
    kam: Kamailio, data_dir: Path, extra: Sequence[str] = ()
) -> Iterator[tuple[SipuaProcess, int]]:
    """sipua registered as alice at `kam`, listening on a free port; yields (process, port)."""
    port = free_tcp_port()
    argv = sipua_register_argv(kam, data_dir, listen=(LOCALHOST, port), extra=extra)
    with SipuaProcess(argv, env=FAST_ANSWER) as sipua:
        sipua.wait_for("registered")
        yield sipua, port
        assert sipua.interrupt() == 0, sipua.tail()


def test_pjsua_calls_sipua_directly_over_tls_and_hangs_up(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    with listening_sipua(kamailio, tmp_path / "data") as (sipua, port):
        target = f"sips:alice@{LOCALHOST}:{port}"
        with Pjsua(tmp_path / "pjsua", call=target, duration_s=1) as pjsua:
            incoming = sipua.wait_for("call-incoming")
            registration = sipua.wait_for("registered")["peer"]
            assert incoming["peer"] != registration  # pjsua's own connection to the listener
            inbound = sipua.wait_for("lock-changed", scope="connection", peer=incoming["peer"])
            # pjsua shows no client certificate: the connection is not verified.
            assert inbound["state"] == "locked-unverified", inbound
            sipua.wait_for("call-answered", call_id=incoming["call_id"])
            sipua.wait_for("call-confirmed", call_id=incoming["call_id"])
            pjsua.wait_log(CALL_CONFIRMED)
            ended = sipua.wait_for("call-ended", call_id=incoming["call_id"])
            assert ended["reason"] == "remote-bye", ended
            pjsua.wait_log(CALL_DISCONNECTED)


def test_pjsua_calls_sipua_directly_and_sipua_hangs_up(kamailio: Kamailio, tmp_path: Path) -> None:
    with (
        listening_sipua(kamailio, tmp_path / "data", extra=["--hangup-after", "1"]) as (
            sipua,
            port,
        ),
        Pjsua(tmp_path / "pjsua", call=f"sips:alice@{LOCALHOST}:{port}") as pjsua,
    ):
        incoming = sipua.wait_for("call-incoming")
        sipua.wait_for("call-confirmed", call_id=incoming["call_id"])
        ended = sipua.wait_for("call-ended", call_id=incoming["call_id"])
        assert ended["reason"] == "local-bye", ended
        disconnected = pjsua.wait_log(CALL_DISCONNECTED)
        assert disconnected.group(1) == "200", pjsua.log_tail()  # our BYE, answered 200


def test_pjsua_registers_at_kamailio_over_tls_and_calls_sipua(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    with (
        listening_sipua(kamailio, tmp_path / "data") as (sipua, _),
        Pjsua(
            tmp_path / "pjsua",
            user="bob",
            domain=kamailio.domain,
            registrar=(kamailio.ip, kamailio.tls_port),
            password=kamailio.users["bob"],
            ca_file=kamailio.ca_pem,
            duration_s=1,
        ) as pjsua,
    ):
        pjsua.wait_log(REGISTERED)
        pjsua.command(f"m\nsips:alice@{kamailio.domain}")
        incoming = sipua.wait_for("call-incoming")
        # Kamailio reuses sipua's registration connection (RFC 5626 flow).
        assert incoming["peer"] == sipua.wait_for("registered")["peer"]
        sipua.wait_for("call-confirmed", call_id=incoming["call_id"])
        pjsua.wait_log(CALL_CONFIRMED)
        ended = sipua.wait_for("call-ended", call_id=incoming["call_id"])
        assert ended["reason"] == "remote-bye", ended


def test_sipua_calls_pjsua_through_kamailio(kamailio: Kamailio, tmp_path: Path) -> None:
    with Pjsua(
        tmp_path / "pjsua",
        user="bob",
        domain=kamailio.domain,
        registrar=(kamailio.ip, kamailio.tls_port),
        password=kamailio.users["bob"],
        ca_file=kamailio.ca_pem,
        auto_answer=True,
    ) as pjsua:
        pjsua.wait_log(REGISTERED)
        target = f"sips:bob@{kamailio.domain}"
        argv = sipua_call_argv(kamailio, tmp_path / "data", target, extra=["--duration", "1"])
        with SipuaProcess(argv) as sipua:
            code = sipua.wait()
        assert code == 0, sipua.tail()
        assert sipua.find("call-established") is not None, sipua.tail()
        ended = sipua.find("call-ended")
        assert ended is not None
        assert ended["reason"] == "local-bye", ended
        pjsua.wait_log(CALL_CONFIRMED)
        pjsua.wait_log(CALL_DISCONNECTED)
