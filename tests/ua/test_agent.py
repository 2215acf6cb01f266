"""End-to-end: sipua's user agent against the test registrar over real loopback TLS sockets."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import trio

from sipua.errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectFailed,
    PeerNotTrusted,
    RegistrationError,
    TransportError,
)
from sipua.settings.model import AccountSettings, ListenSettings, Settings, TlsSettings
from sipua.settings.secret import Secret
from sipua.sip.errors import ParseError
from sipua.ua.agent import UserAgent
from tests.support.registrar import Pki, TestRegistrar


def settings(
    tmp_path: Path,
    registrar: TestRegistrar,
    *,
    password: str = "s3cret",
    expires: int = 600,
    only_trusted: bool = True,
    trust: bool = True,
    listen: bool = False,
    keepalive: float | None = None,
    answer: str = "accept",
    answer_delay: float = 0.05,
) -> Settings:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(registrar.pki.ca.pem)
    return Settings(
        accounts=(
            AccountSettings(
                name="alice",
                aor="sips:alice@example.test",
                username="alice",
                password=Secret(password),
                proxy=f"127.0.0.1:{registrar.port}",
                expires=expires,
                keepalive_interval=keepalive,
                # The 180 comes before the answer; tests that CANCEL a ringing call ring longer.
                auto_answer_delay=answer_delay,
                answer=answer,  # type: ignore[arg-type]
            ),
        ),
        tls=TlsSettings(
            trusted_certs=(ca,) if trust else (), only_trusted=only_trusted, ca_type="custom"
        ),
        listen=ListenSettings(enabled=listen, port=0),
        data_dir=tmp_path / "data",
    )


async def wait_until(predicate: Callable[[], bool], within: float) -> None:
    with trio.fail_after(within):
        while not predicate():  # noqa: ASYNC110  # polls state that other tasks own
            await trio.sleep(0.05)


def events(ua: UserAgent, name: str) -> list[dict[str, Any]]:
    return [fields for event, fields in ua.events if event == name]


def lock_states(ua: UserAgent) -> list[str]:
    return [fields["state"] for fields in events(ua, "lock-changed")]


async def test_register_with_digest_then_unregister(tmp_path: Path) -> None:
    async with (
        TestRegistrar() as registrar,
        UserAgent(settings(tmp_path, registrar), rng=random.Random(1)) as ua,
    ):
        registered = await ua.account.register()
        assert registered.expires == 600
        assert "alice" in registrar.bindings
        assert lock_states(ua) == ["negotiating", "locked"]
        first, second = registrar.registers[:2]
        assert first.headers.get("Authorization") is None
        assert second.headers.get("Authorization") is not None
        contact = second.headers.get("Contact") or ""
        assert contact.startswith("<sips:alice@127.0.0.1:")
        assert "+sip.instance" in contact
        assert "transport=tls" not in contact.lower()
        assert str(second.uri) == "sips:example.test"
        assert await ua.account.unregister()
        assert "alice" not in registrar.bindings
        assert events(ua, "unregistered")
    assert lock_states(ua)[-1] == "unlocked"  # closed on leaving the user agent
    # The instance id is stable per data dir.
    stored = (tmp_path / "data" / "instance-id").read_text().strip()
    assert stored in contact


async def test_default_listener_takes_a_free_port_and_the_contact_carries_it(
    tmp_path: Path,
) -> None:
    # The default must not collide with a registrar on this machine (5061): the system picks
    # the port, and the registered Contact tells the registrar where it is.
    async with TestRegistrar() as registrar:
        base = replace(settings(tmp_path, registrar), listen=ListenSettings())
        async with UserAgent(base) as ua:
            assert ua.listen_address is not None
            host, port = ua.listen_address
            assert host == "127.0.0.1"
            assert port not in (0, 5061)
            [listening] = events(ua, "listening")
            assert listening["address"] == f"127.0.0.1:{port}"
            await ua.account.register()
            _, contact, _ = registrar.bindings["alice"]
            assert contact.startswith(f"<sips:alice@127.0.0.1:{port}>")


@pytest.mark.parametrize("suite", ["TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"])
async def test_configured_tls13_suite_and_group_are_used(tmp_path: Path, suite: str) -> None:
    async with TestRegistrar() as registrar:
        base = settings(tmp_path, registrar)
        tls = replace(base.tls, min_version="1.3", tls13_ciphers=suite, groups="X25519")
        async with UserAgent(replace(base, tls=tls)) as ua:
            await ua.account.register()
            (established,) = events(ua, "tls-established")
            assert (established["version"], established["cipher"]) == ("TLSv1.3", suite)


async def test_wrong_password_is_authentication_failed(tmp_path: Path) -> None:
    async with (
        TestRegistrar() as registrar,
        UserAgent(settings(tmp_path, registrar, password="nope")) as ua,
    ):
        with pytest.raises(AuthenticationFailed) as info:
            await ua.account.register()
        assert info.value.exit_code == 4
        assert "nope" not in str(info.value)
        assert events(ua, "registration-failed")


async def test_403_is_refused(tmp_path: Path) -> None:
    async with (
        TestRegistrar(reject_with=403) as registrar,
        UserAgent(settings(tmp_path, registrar)) as ua,
    ):
        with pytest.raises(RegistrationError) as info:
            await ua.account.register()
        assert info.value.exit_code == 4
        # No credentials were sent: the registrar refuses the user itself.
        assert str(info.value) == (
            "registration refused (403): Forbidden; check that user 'alice' may register"
        )


async def test_403_to_our_credentials_says_the_password_is_most_likely_wrong(
    tmp_path: Path,
) -> None:
    async with (
        TestRegistrar(wrong_password_status=403) as registrar,
        UserAgent(settings(tmp_path, registrar, password="nope")) as ua,
    ):
        with pytest.raises(AuthenticationFailed) as info:
            await ua.account.register()
        assert info.value.exit_code == 4
        assert str(info.value) == (
            "registration refused (403): Forbidden, in answer to our credentials: the password "
            "(or the user name 'alice') is most likely wrong; check --password-file and "
            "--username, or that user 'alice' may register"
        )


async def test_423_then_registered_with_min_expires(tmp_path: Path) -> None:
    async with (
        TestRegistrar(min_expires=1200) as registrar,
        UserAgent(settings(tmp_path, registrar, expires=60)) as ua,
    ):
        registered = await ua.account.register()
        assert registered.expires == 1200


async def test_a_failure_while_starting_closes_what_was_opened(tmp_path: Path) -> None:
    # An AOR that bypassed the settings' parser fails when the call handler is built, after
    # the agent's nursery is open: the error itself comes out, not trio's internal error.
    async with TestRegistrar() as registrar:
        base = settings(tmp_path, registrar)
        bad = replace(base.accounts[0], aor='sips:"alice@example.test')
        with pytest.raises(ParseError, match="malformed URI"):
            async with UserAgent(replace(base, accounts=(bad,))):
                pass


async def test_several_accounts_are_refused_not_cut_to_the_first(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        base = settings(tmp_path, registrar)
        carol = replace(base.accounts[0], name="carol", aor="sips:carol@example.test")
        with pytest.raises(ConfigError, match=r"2 accounts \(alice, carol\).*--account NAME"):
            UserAgent(replace(base, accounts=(base.accounts[0], carol)))
        assert registrar.registers == []


async def test_untrusted_registrar_unlocks_with_reason_and_exit_3(tmp_path: Path) -> None:
    async with (
        TestRegistrar() as registrar,
        UserAgent(settings(tmp_path, registrar, trust=False)) as ua,
    ):
        with pytest.raises(PeerNotTrusted) as info:
            await ua.account.register()
        assert info.value.exit_code == 3
        assert lock_states(ua) == ["negotiating", "unlocked"]
        assert ua.account.lock.reason.startswith("verification-failed: untrusted-issuer")
        assert registrar.registers == []  # no SIP byte on an unverified connection


async def test_untrusted_accepted_when_only_trusted_is_off(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        config = settings(tmp_path, registrar, trust=False, only_trusted=False)
        async with UserAgent(config) as ua:
            await ua.account.register()
            assert lock_states(ua) == ["negotiating", "locked-unverified"]
            assert "untrusted-issuer" in ua.account.lock.reason


async def test_name_mismatch_is_reported(tmp_path: Path) -> None:
    async with (
        TestRegistrar(pki=Pki.make("other.test")) as registrar,
        UserAgent(settings(tmp_path, registrar)) as ua,
    ):
        with pytest.raises(PeerNotTrusted) as info:
            await ua.account.register()
        assert info.value.code == "name-mismatch"
        assert "name-mismatch" in ua.account.lock.reason


async def test_nothing_listening_is_network_failure(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        config = settings(tmp_path, registrar)
    # The registrar is gone: its port refuses.
    async with UserAgent(config) as ua:
        with pytest.raises(ConnectFailed) as info:
            await ua.account.register()
        assert info.value.exit_code == 5
        assert ua.account.lock.state.value == "unlocked"


async def test_refresh_at_midpoint(tmp_path: Path) -> None:
    async with (
        TestRegistrar(max_expires=4) as registrar,
        UserAgent(settings(tmp_path, registrar)) as ua,
    ):
        await ua.account.register()
        with trio.move_on_after(3.5):
            await ua.account.maintain()
        refreshes = [e for e in events(ua, "registered") if e.get("refreshed")]
        assert len(refreshes) >= 1  # granted 4 s: refreshed after 2 s
        assert len(registrar.registers) >= 4


async def test_registrar_restart_reconnects_and_reregisters(tmp_path: Path) -> None:
    async with (
        TestRegistrar() as registrar,
        UserAgent(settings(tmp_path, registrar), backoff_base=0.2) as ua,
    ):
        await ua.account.register()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ua.account.maintain)
            await registrar.restart(downtime=0.3)
            assert "alice" not in registrar.bindings
            await registrar.wait_registered()
            nursery.cancel_scope.cancel()
        states = lock_states(ua)
        assert states[:2] == ["negotiating", "locked"]
        assert "unlocked" in states[2:]
        assert states[-1] == "locked"
        assert registrar.connections >= 2


async def test_dead_flow_detected_by_missing_pong(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        config = settings(tmp_path, registrar, keepalive=1.0)
        async with UserAgent(config, backoff_base=0.2, pong_timeout=1.5) as ua:
            await ua.account.register()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ua.account.maintain)
                await wait_until(lambda: registrar.pings >= 2, 5)
                registrar.answer_pings = False  # the flow silently dies
                await wait_until(
                    lambda: any(
                        "no pong" in e.get("reason", "") for e in events(ua, "lock-changed")
                    ),
                    10,
                )
                registrar.answer_pings = True
                await wait_until(lambda: lock_states(ua)[-1] == "locked", 10)
                nursery.cancel_scope.cancel()


async def test_failover_to_the_next_target(tmp_path: Path) -> None:
    from sipua.ua.account import FlowTarget

    async with TestRegistrar() as gone:
        dead_port = gone.port
    async with TestRegistrar() as registrar:

        async def two_targets(_account: AccountSettings) -> list[FlowTarget]:
            return [
                FlowTarget("127.0.0.1", dead_port, "example.test"),
                FlowTarget("127.0.0.1", registrar.port, "example.test"),
            ]

        async with UserAgent(settings(tmp_path, registrar), locator=two_targets) as ua:
            await ua.account.register()
            assert lock_states(ua) == ["negotiating", "unlocked", "negotiating", "locked"]
            assert ua.account.connection is not None
            assert ua.account.connection.peer == f"127.0.0.1:{registrar.port}"
            assert ua.account.connection.tls_name == "example.test"


async def test_trace_redacts_credentials(tmp_path: Path) -> None:
    import io

    from sipua.logs import configure_logging

    out = io.StringIO()
    configure_logging("json", stream=out)
    try:
        async with TestRegistrar() as registrar:
            config = settings(tmp_path, registrar)
            from dataclasses import replace

            async with UserAgent(replace(config, trace=True)) as ua:
                await ua.account.register()
    finally:
        configure_logging("console")
    text = out.getvalue()
    assert "sip-trace" in text
    assert "Authorization: Digest" in text
    assert 'response=\\"<redacted>\\"' in text
    assert "s3cret" not in text


async def test_mutual_tls_presents_the_device_certificate(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from sipua.tls.stores.store import CertStore

    device_ca = CertStore(tmp_path / "data").devices.ca().certificate
    ca_pem = device_ca.public_bytes(serialization.Encoding.PEM)
    async with (
        TestRegistrar(client_ca=ca_pem) as registrar,
        UserAgent(settings(tmp_path, registrar)) as ua,
    ):
        await ua.account.register()
        assert len(registrar.client_certs) == 1  # the registrar verified our device certificate
        # Locked once the registrar answered: it had asked for our certificate, so the
        # handshake alone did not prove that it accepted it.
        assert lock_states(ua) == ["negotiating", "locked"]


@dataclass
class _RefusingRegistrar:
    """What `settings` needs of a registrar: its PKI and port."""

    pki: Pki
    port: int


async def test_client_certificate_alert_seen_before_the_register_is_a_tls_error(
    tmp_path: Path,
) -> None:
    # Regression: under TLS 1.3 the registrar refuses our client certificate after the
    # handshake; when the reader saw that alert before REGISTER was sent, the send failed as
    # a plain ConnectionLost (exit 5) instead of a TLS failure (exit 3).
    import socket
    import ssl

    from sipua.errors import TlsAlertReceived
    from tests.support.certs import make_ca

    pki = Pki.make()
    context = pki.server_context(client_ca=make_ca("Some Other Client CA").pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def refuse_one() -> None:
        # A blocking stdlib server writes OpenSSL's alert to the socket before it gives up.
        conn, _ = server.accept()
        conn.settimeout(10)
        with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(100)
        conn.close()

    registrar = _RefusingRegistrar(pki, server.getsockname()[1])
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, refuse_one)
            async with UserAgent(settings(tmp_path, registrar)) as ua:  # type: ignore[arg-type]
                account = ua.account
                connect = account._connect_target

                async def connect_after_alert(target: Any) -> Any:
                    connection = await connect(target)
                    with trio.fail_after(5):
                        await connection.closed.wait()  # the reader got the alert first
                    return connection

                account._connect_target = connect_after_alert  # type: ignore[method-assign]
                with pytest.raises(TlsAlertReceived) as info:
                    await account.register()
                assert info.value.exit_code == 3
                [failed] = events(ua, "registration-failed")
                assert "did not accept our client" in failed["reason"]
    finally:
        server.close()


async def test_close_without_answer_after_asking_for_our_certificate_is_a_refusal(
    tmp_path: Path,
) -> None:
    # pjsip (Asterisk) under TLS 1.3: it asks for the client certificate, lets our handshake
    # finish, then refuses the certificate by closing the socket, without an alert and before
    # any SIP answer. sipua reports a probable client-certificate refusal (exit 3) and never
    # shows the lock as held in between.
    import socket
    import struct

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from OpenSSL import SSL

    from sipua.errors import ClientCertificateRefused

    pki = Pki.make()
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def accept_then_close() -> None:
        context = SSL.Context(SSL.TLS_METHOD)
        context.use_certificate(x509.load_pem_x509_certificate(pki.server.pem))
        key = serialization.load_pem_private_key(pki.server.key_pem, password=None)
        context.use_privatekey(key)  # type: ignore[arg-type]
        context.set_verify(SSL.VERIFY_PEER, lambda *_args: True)  # ask, judge later
        conn, _ = server.accept()
        # OpenSSL drives the socket itself: keep it blocking (a Python timeout would make it
        # non-blocking and the handshake would give up at once), bounded by SO_RCVTIMEO.
        conn.setblocking(True)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 10, 0))
        tls = SSL.Connection(context, conn)
        tls.set_accept_state()
        with contextlib.suppress(SSL.Error, OSError):
            tls.do_handshake()
        conn.close()

    registrar = _RefusingRegistrar(pki, server.getsockname()[1])
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, accept_then_close)
            async with UserAgent(settings(tmp_path, registrar)) as ua:  # type: ignore[arg-type]
                with pytest.raises(ClientCertificateRefused) as info:
                    await ua.account.register()
                assert info.value.exit_code == 3
                assert "probably refused" in str(info.value)
                assert lock_states(ua) == ["negotiating", "unlocked"]
                [*_, down] = events(ua, "lock-changed")
                assert down["reason"].startswith("handshake-failed: client-certificate"), down
    finally:
        server.close()


@pytest.mark.parametrize(
    ("listen", "local", "contact"),
    [
        (("0.0.0.0", 5061), "192.0.2.5:40000", "sips:alice@192.0.2.5:5061"),
        (("::", 5061), "[2001:db8::5]:40000", "sips:alice@[2001:db8::5]:5061"),
        (("127.0.0.1", 5061), "192.0.2.5:40000", "sips:alice@192.0.2.5:5061"),
        (("::1", 5061), "192.0.2.5:40000", "sips:alice@192.0.2.5:5061"),
        (("192.0.2.9", 5061), "192.0.2.5:40000", "sips:alice@192.0.2.9:5061"),
        (("device.example", 5061), "192.0.2.5:40000", "sips:alice@device.example:5061"),
        (None, "192.0.2.5:40000", "sips:alice@192.0.2.5:40000"),
    ],
)
def test_contact_never_names_a_wildcard_or_loopback_listener(
    listen: tuple[str, int] | None, local: str, contact: str
) -> None:
    from sipua.ua.account import contact_uri

    assert contact_uri("alice", listen, local) == contact


async def _tcp_from(source: str, address: tuple[str, int]) -> trio.SocketStream:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    await sock.bind((source, 0))
    await sock.connect(address)
    return trio.SocketStream(sock)


async def _closed_within(stream: trio.SocketStream, seconds: float) -> bool:
    with trio.move_on_after(seconds):
        with contextlib.suppress(trio.BrokenResourceError):
            while await stream.receive_some(4096):
                pass
        return True
    return False


async def test_listener_knows_the_registrar_and_gives_inbound_handshakes_their_own_time(
    tmp_path: Path,
) -> None:
    async with TestRegistrar() as registrar:
        config = settings(tmp_path, registrar, listen=True)
        config = replace(
            config,
            tls=replace(config.tls, handshake_timeout=10.0),
            listen=replace(config.listen, handshake_timeout=0.3, servers_only=True),
        )
        async with UserAgent(config) as ua:
            assert ua.listen_address is not None
            assert "127.0.0.1" in ua.servers  # the proxy is an IP address: known at once
            await ua.account.register()
            assert "127.0.0.1" in ua.servers
            # Not the registrar's address: refused before any TLS byte (servers_only).
            stranger = await _tcp_from("127.0.0.2", ua.listen_address)
            start = trio.current_time()
            assert await _closed_within(stranger, 0.2)
            assert trio.current_time() - start < 0.2
            await stranger.aclose()
            # The registrar's address is accepted; staying silent costs it the inbound
            # handshake timeout (0.3 s), not the outbound one (10 s).
            silent = await _tcp_from("127.0.0.1", ua.listen_address)
            assert not await _closed_within(silent, 0.15)
            assert await _closed_within(silent, 2.0)
            await silent.aclose()


class _UnreadableRegistrar(TestRegistrar):
    """Answers REGISTER with a 200 of more header lines than a SIP message may have."""

    def _register(self, flow: Any, request: Any) -> Any:
        response = super()._register(flow, request)
        if response.status == 200:
            for n in range(300):
                response.headers.add("X-Padding", str(n))
        return response


async def test_an_answer_that_cannot_be_read_fails_the_register_at_once_saying_why(
    tmp_path: Path,
) -> None:
    # It was discarded and the REGISTER waited for Timer F (32 s), then reported as "no
    # response from the registrar".
    async with _UnreadableRegistrar() as registrar, UserAgent(settings(tmp_path, registrar)) as ua:
        with trio.fail_after(5), pytest.raises(TransportError) as info:
            await ua.account.register()
    message = str(info.value)
    assert "the registrar's answer could not be read" in message
    assert "header lines exceed the limit" in message


async def test_an_inbound_connection_reports_its_lock_and_losing_it(tmp_path: Path) -> None:
    import ssl

    async with TestRegistrar() as registrar:
        config = settings(tmp_path, registrar, listen=True)
        async with UserAgent(config) as ua:
            assert ua.listen_address is not None
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            tcp = await trio.open_tcp_stream(*ua.listen_address)
            caller = trio.SSLStream(tcp, context, server_hostname="caller.test")
            await caller.do_handshake()
            await caller.aclose()

            def inbound() -> list[tuple[str, str]]:
                return [
                    (fields["state"], fields["reason"])
                    for fields in events(ua, "lock-changed")
                    if fields.get("scope") == "connection"
                ]

            await wait_until(lambda: len(inbound()) == 2, 5)
    (state, _), (lost, reason) = inbound()
    assert state == "locked-unverified"  # the caller presented no certificate
    assert lost == "unlocked"
    assert reason.startswith("closed: ")
    assert not ua._inbound_locks  # nothing kept for a connection that is gone
