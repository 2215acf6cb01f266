"""The interop infrastructure proves itself: Kamailio, SIPp, baresip and openssl together.

These tests run sipua not at all; they show that the registrar, the scenarios and the runners
behave as the sipua interop tests will assume.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.interop.peers import Baresip, Kamailio, Sipp, TestPki, run_sipp

pytestmark = pytest.mark.interop


def _order(text: str, *needles: str) -> list[int]:
    """Positions of `needles` in `text` (-1 for absent), to check they came in order."""
    return [text.find(n) for n in needles]


def _crlf_ping(kam: Kamailio, port: int, cert: str | None) -> bytes:
    """Connects over TLS (showing `cert` from the test PKI, if any), sends a CRLFCRLF ping
    (RFC 5626 §4.4.1) and returns what comes back."""
    ctx = ssl.create_default_context(cafile=str(kam.ca_pem))
    if cert is not None:
        ctx.load_cert_chain(kam.pki.cert(cert), kam.pki.key(cert))
    with (
        socket.create_connection((kam.ip, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=kam.domain) as tls,
    ):
        tls.sendall(b"\r\n\r\n")
        return tls.recv(16)


def test_sipp_registers_over_tcp_with_digest(kamailio: Kamailio, tmp_path: Path) -> None:
    result = run_sipp(
        "register.xml",
        tmp_path,
        (kamailio.ip, kamailio.tcp_port),
        transport="t1",
        service="alice",
        auth=("alice", kamailio.users["alice"]),
    )
    assert result.ok, result.describe()
    challenge, accepted = _order(result.messages, "SIP/2.0 401", "SIP/2.0 200")
    assert 0 <= challenge < accepted, result.describe()


def test_wrong_password_is_forbidden(kamailio: Kamailio, tmp_path: Path) -> None:
    result = run_sipp(
        "register.xml",
        tmp_path,
        (kamailio.ip, kamailio.tcp_port),
        transport="t1",
        service="alice",
        auth=("alice", "not-the-password"),
        timeout_s=10,
    )
    assert not result.ok
    assert "SIP/2.0 403" in result.messages, result.describe()


def test_openssl_sees_the_registrar_certificate(kamailio: Kamailio) -> None:
    proc = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"{kamailio.ip}:{kamailio.tls_port}",
            "-servername",
            kamailio.domain,
            "-CAfile",
            str(kamailio.ca_pem),
            "-verify_return_error",
            "-verify_hostname",
            kamailio.domain,
            "-brief",
        ],
        input=b"",
        capture_output=True,
        timeout=10,
        check=False,
    )
    out = proc.stderr.decode() + proc.stdout.decode()
    assert proc.returncode == 0, out
    assert "Verification: OK" in out, out
    assert "CN = example.test" in out, out


def test_tls_port_answers_crlf_keepalive_with_crlf(kamailio: Kamailio) -> None:
    # RFC 5626 §4.4.1 ping/pong, as sipua's keepalive expects from its registrar.
    assert _crlf_ping(kamailio, kamailio.tls_port, cert=None) == b"\r\n"


def test_mtls_port_refuses_a_client_without_certificate(kamailio: Kamailio) -> None:
    # In TLS 1.3 the client's handshake completes before the server has checked the (absent)
    # certificate; the refusal arrives as an alert on the first read.
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
        _crlf_ping(kamailio, kamailio.mtls_port, cert=None)


def test_mtls_port_refuses_a_certificate_from_another_ca(kamailio: Kamailio) -> None:
    with pytest.raises(ssl.SSLError, match="UNKNOWN_CA"):
        _crlf_ping(kamailio, kamailio.mtls_port, cert="stranger")


def test_mtls_port_accepts_a_device_certificate(kamailio: Kamailio) -> None:
    assert _crlf_ping(kamailio, kamailio.mtls_port, cert="device") == b"\r\n"


def test_baresip_registers_over_tls(kamailio: Kamailio, tmp_path: Path) -> None:
    with Baresip(
        tmp_path, user="bob", password=kamailio.users["bob"], proxy=(kamailio.ip, kamailio.tls_port)
    ) as baresip:
        baresip.wait_registered()
        assert "{0/TLS/v4} 200 OK" in baresip.log_tail()


def test_sipp_calls_baresip_over_its_registration_connection(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    with Baresip(
        tmp_path / "bob",
        user="bob",
        password=kamailio.users["bob"],
        proxy=(kamailio.ip, kamailio.tls_port),
    ) as baresip:
        baresip.wait_registered()
        result = run_sipp(
            "uac-call.xml",
            tmp_path / "sipp",
            (kamailio.ip, kamailio.udp_port),
            service="bob",
            hold_ms=200,
        )
        assert result.ok, result.describe()
        baresip.wait_for_event("CALL_ESTABLISHED", timeout_s=5)
        baresip.wait_for_event("CALL_CLOSED", timeout_s=5)
    # The call left Kamailio on TLS (double Record-Route: UDP side and TLS side), and the ACK
    # and BYE came back through it.
    assert f"<sip:{kamailio.ip}:{kamailio.tls_port};transport=tls;r2=on;lr>" in result.messages
    assert "BYE sip:bob" in result.messages


def test_sipp_cancels_a_ringing_baresip(kamailio: Kamailio, tmp_path: Path) -> None:
    with Baresip(
        tmp_path / "bob",
        user="bob",
        password=kamailio.users["bob"],
        proxy=(kamailio.ip, kamailio.tls_port),
        answer="manual",
    ) as baresip:
        baresip.wait_registered()
        result = run_sipp(
            "uac-cancel.xml", tmp_path / "sipp", (kamailio.ip, kamailio.udp_port), service="bob"
        )
        assert result.ok, result.describe()
        baresip.wait_for_event("CALL_CLOSED", timeout_s=5)
    assert "SIP/2.0 487" in result.messages


def test_sipp_uas_is_reached_through_its_registration(kamailio: Kamailio, tmp_path: Path) -> None:
    with Sipp("uas.xml", tmp_path / "uas", timeout_s=15) as uas:
        registered = run_sipp(
            "register.xml",
            tmp_path / "reg",
            (kamailio.ip, kamailio.udp_port),
            service="carol",
            auth=("carol", kamailio.users["carol"]),
            keys={"contact_port": str(uas.local_port), "expires": "60"},
        )
        assert registered.ok, registered.describe()
        call = run_sipp(
            "uac-call.xml",
            tmp_path / "uac",
            (kamailio.ip, kamailio.udp_port),
            service="carol",
            hold_ms=100,
        )
        assert call.ok, call.describe()
        answered = uas.wait()
    assert answered.ok, answered.describe()


def test_restart_keeps_the_ports(tmp_path: Path, test_pki: TestPki) -> None:
    with Kamailio(tmp_path / "kamailio", pki=test_pki) as kam:
        before = kam.ports
        first_pid = kam.pid
        kam.restart()
        assert kam.ports == before
        assert kam.pid not in (None, first_pid)
        result = run_sipp(
            "register.xml",
            tmp_path / "sipp",
            (kam.ip, kam.tcp_port),
            transport="t1",
            service="alice",
            auth=("alice", kam.users["alice"]),
        )
        assert result.ok, result.describe()
        with socket.create_connection((kam.ip, kam.tls_port), timeout=5):
            pass
    assert kam.pid is None


def test_route_to_contact_opens_a_verified_tls_connection(
    tmp_path: Path, test_pki: TestPki
) -> None:
    # SIPUA_ROUTE_TO_CONTACT: Kamailio connects to the Contact (baresip's TLS listener) with
    # its client profile, which verifies the UA's certificate against the device CA.
    stranger = tmp_path / "stranger-bundle.pem"
    stranger.write_bytes(
        test_pki.cert("stranger").read_bytes() + test_pki.key("stranger").read_bytes()
    )
    with Kamailio(tmp_path / "kamailio", pki=test_pki, route_to_contact=True) as kam:
        outcomes = {}
        for name, bundle in (
            ("device", test_pki.directory / "device-bundle.pem"),
            ("stranger", stranger),
        ):
            with Baresip(
                tmp_path / name,
                user="bob",
                password=kam.users["bob"],
                proxy=(kam.ip, kam.tls_port),
                certificate=bundle,
            ) as baresip:
                baresip.wait_registered()
                outcomes[name] = run_sipp(
                    "uac-call.xml",
                    tmp_path / f"sipp-{name}",
                    (kam.ip, kam.udp_port),
                    service="bob",
                    hold_ms=100,
                    timeout_s=5,
                )
        log = kam.log_tail(200)
    assert outcomes["device"].ok, outcomes["device"].describe()
    assert not outcomes["stranger"].ok
    assert "certificate verify failed" in log, log
