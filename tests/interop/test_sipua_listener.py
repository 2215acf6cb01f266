"""Peers connect straight to sipua's TLS listener and see the device certificate policy picks.

`openssl s_client` shows the certificate sipua presents: the unique one (subject carries the
MAC from `--mac`), the generic one (`--device-cert generic`), or the custom one imported with
`sipua cert import-device` (`--device-cert custom`); each verifies against what a registrar
would trust. With `verify_client = "require"` a peer without a certificate is refused. baresip
calls sipua directly over TLS, no registrar in the path.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.interop.peers import (
    LOCALHOST,
    Baresip,
    Kamailio,
    SipuaProcess,
    export_device_ca,
    free_tcp_port,
    import_device_certificate,
    sipua_register_argv,
)

pytestmark = pytest.mark.interop

MAC = "00:15:65:aa:bb:cc"


@contextlib.contextmanager
def listening_sipua(
    kam: Kamailio,
    data_dir: Path,
    *,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[SipuaProcess, int]]:
    """sipua registered at `kam` with its listener on a free port; yields (process, port)."""
    port = free_tcp_port()
    argv = sipua_register_argv(kam, data_dir, listen=(LOCALHOST, port), extra=extra)
    with SipuaProcess(argv, env={"SIPUA_AUTO_ANSWER_DELAY": "0.1", **(env or {})}) as sipua:
        sipua.wait_for("registered")
        yield sipua, port
        assert sipua.interrupt() == 0, sipua.tail()


def s_client(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """`openssl s_client` to sipua's listener; stdin closed at once, so it ends after the
    handshake (and whatever the server says next)."""
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"{LOCALHOST}:{port}", *args],
        input="",
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def _subject(out: str) -> str:
    for line in out.splitlines():
        if line.startswith("subject="):
            return line.removeprefix("subject=")
    raise AssertionError(f"no server certificate in s_client's output:\n{out}")


def test_unique_device_certificate_carries_the_mac(kamailio: Kamailio, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with listening_sipua(kamailio, data, extra=["--mac", MAC]) as (_, port):
        device_ca = export_device_ca(data, tmp_path / "device-ca.pem")
        proc = s_client(port, "-CAfile", str(device_ca), "-verify_return_error")
    assert proc.returncode == 0, proc.stderr
    assert _subject(proc.stdout) == "O = sipua, CN = sipua-001565aabbcc"
    assert "Verify return code: 0 (ok)" in proc.stdout  # issued by the exported device CA


def test_generic_device_certificate_on_request(kamailio: Kamailio, tmp_path: Path) -> None:
    # The store picks the unique certificate whenever a MAC address is known (this machine's
    # own when --mac is not given); "generic" asks for the shared one explicitly.
    data = tmp_path / "data"
    with listening_sipua(kamailio, data, extra=["--device-cert", "generic", "--mac", MAC]) as (
        _,
        port,
    ):
        device_ca = export_device_ca(data, tmp_path / "device-ca.pem")
        proc = s_client(port, "-CAfile", str(device_ca), "-verify_return_error")
    assert proc.returncode == 0, proc.stderr
    assert _subject(proc.stdout) == "O = sipua, CN = sipua generic device"


def test_custom_device_certificate_after_import(kamailio: Kamailio, tmp_path: Path) -> None:
    data = tmp_path / "data"
    pki = kamailio.pki
    import_device_certificate(data, pki.cert("device"), pki.key("device"))
    with listening_sipua(kamailio, data, extra=["--device-cert", "custom", "--mac", MAC]) as (
        _,
        port,
    ):
        proc = s_client(port, "-CAfile", str(pki.device_ca), "-verify_return_error")
    assert proc.returncode == 0, proc.stderr
    assert _subject(proc.stdout) == "O = sipua test PKI, CN = device.example.test"


def test_client_certificate_required(kamailio: Kamailio, tmp_path: Path) -> None:
    pki = kamailio.pki
    with listening_sipua(kamailio, tmp_path / "data", env={"SIPUA_VERIFY_CLIENT": "require"}) as (
        sipua,
        port,
    ):
        # TLS 1.3: the client finishes its side first; the refusal is an alert on the next read,
        # so s_client must keep reading after its (empty) stdin ends: -ign_eof.
        refused = s_client(port, "-ign_eof")
        assert "alert certificate required" in refused.stderr, refused.stderr
        failed = sipua.wait_for("lock-changed", scope="connection", state="unlocked")
        assert "did not return a certificate" in failed["reason"], failed

        # A client certificate from a CA sipua trusts (the registrar CA, --trusted-cert) is
        # accepted and verified: that connection is locked.
        accepted = s_client(port, "-cert", str(pki.cert("server")), "-key", str(pki.key("server")))
        assert accepted.returncode == 0, accepted.stderr
        assert "alert" not in accepted.stderr, accepted.stderr
        sipua.wait_for("lock-changed", scope="connection", state="locked")


def test_baresip_calls_sipua_directly_over_tls(kamailio: Kamailio, tmp_path: Path) -> None:
    # baresip 1.0 has no sips: support: it cannot send the ACK to the sips: Contact of sipua's
    # 200 (its log says "Function not implemented"), so a direct call stops after the answer.
    # Through Kamailio (test_sipua_calls.py) the whole call works. What is checked here is what
    # a direct TLS peer gets: the listener's handshake, the INVITE answered, the lock per
    # connection.
    with (
        listening_sipua(kamailio, tmp_path / "data") as (sipua, port),
        # baresip's outbound proxy is sipua itself: its REGISTER gets 405, its INVITE an answer.
        Baresip(
            tmp_path / "bob", user="bob", password="unused", proxy=(LOCALHOST, port)
        ) as baresip,
    ):
        baresip.dial(f"sip:alice@{kamailio.domain}")
        incoming = sipua.wait_for("call-incoming")
        registration = sipua.wait_for("registered")["peer"]
        assert incoming["peer"] != registration  # baresip's own connection to the listener
        inbound = sipua.wait_for("lock-changed", scope="connection", peer=incoming["peer"])
        # baresip shows no client certificate: the connection is not verified.
        assert inbound["state"] == "locked-unverified", inbound
        sipua.wait_for("call-answered", call_id=incoming["call_id"])
        assert "405 Method Not Allowed" in baresip.log_tail()
