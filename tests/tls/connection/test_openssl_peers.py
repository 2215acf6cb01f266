"""TlsStream against real OpenSSL peers: `openssl s_server` and `openssl s_client` on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trustme

from sipua.errors import HandshakeFailed, PeerNotTrusted
from sipua.tls.connection.events import HandshakeCompleted
from sipua.tls.connection.listener import open_tls_listeners, open_tls_stream
from sipua.tls.connection.stream import TlsStream
from tests.support.openssl_peer import openssl_server, run_openssl_client
from tests.support.tls_pair import TlsWorld, identity

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def world() -> TlsWorld:
    return TlsWorld()


@pytest.fixture
def pki(world: TlsWorld, tmp_path: Path) -> dict[str, str]:
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(world.ca.cert_pem.bytes())
    cert, key = world.server_identity.write_pem(tmp_path, "server")
    return {"ca": str(ca_path), "cert": str(cert), "key": str(key)}


def server_args(pki: dict[str, str], *extra: str) -> list[str]:
    return ["-cert", pki["cert"], "-key", pki["key"], *extra]


@pytest.mark.parametrize(("version", "flag"), [("1.2", "-tls1_2"), ("1.3", "-tls1_3")])
async def test_client_against_s_server_data_both_ways_and_close_notify(
    world: TlsWorld, pki: dict[str, str], version: str, flag: str
) -> None:
    async with openssl_server(server_args(pki, flag)) as server:
        stream = await open_tls_stream(
            "127.0.0.1",
            server.port,
            world.client_config(),
            peer="openssl s_server",
            verifier=world.verifier(name="example.com"),
            connect_timeout=5,
            handshake_timeout=5,
        )
        completed = stream.handshake_event
        assert isinstance(completed, HandshakeCompleted)
        assert completed.version == f"TLSv{version}"
        assert completed.verified
        assert completed.peer_chain[0] == world.server_identity.certificate
        await stream.send_all(b"hello sips\n")
        received = b""
        with trio.fail_after(5):
            while not received.endswith(b"\n"):
                received += await stream.receive_some()
        assert received == b"spis olleh\n"
        await stream.aclose()
        await server.wait_for("CONNECTION CLOSED")
        assert "ERROR" not in server.output
        assert stream.close_event is not None
        assert stream.close_event.clean


async def test_sni_reaches_s_server(world: TlsWorld, pki: dict[str, str], tmp_path: Path) -> None:
    # s_server answers with the second certificate only when the client's SNI matches.
    sni_identity = identity(world.ca, "example.com", common_name="sni-selected")
    cert2, key2 = sni_identity.write_pem(tmp_path, "sni")
    args = server_args(pki, "-servername", "example.com", "-cert2", str(cert2), "-key2", str(key2))
    async with openssl_server(args) as server:
        stream = await open_tls_stream(
            "127.0.0.1",
            server.port,
            world.client_config(),
            peer="openssl s_server",
            verifier=world.verifier(),
            handshake_timeout=5,
        )
        completed = await stream.do_handshake()
        assert completed.server_name == "example.com"
        assert completed.peer_chain[0] == sni_identity.certificate
        await stream.aclose()


async def test_ip_literal_sends_no_sni(
    world: TlsWorld, pki: dict[str, str], tmp_path: Path
) -> None:
    sni_identity = identity(world.ca, "example.com", common_name="sni-selected")
    cert2, key2 = sni_identity.write_pem(tmp_path, "sni")
    args = server_args(pki, "-servername", "127.0.0.1", "-cert2", str(cert2), "-key2", str(key2))
    async with openssl_server(args) as server:
        stream = await open_tls_stream(
            "127.0.0.1",
            server.port,
            world.client_config(server_name="127.0.0.1"),
            peer="openssl s_server",
            verifier=world.verifier(),
            handshake_timeout=5,
        )
        completed = await stream.do_handshake()
        # No SNI went out, so s_server kept its default certificate.
        assert completed.peer_chain[0] == world.server_identity.certificate
        await stream.aclose()


async def test_min_version_refuses_an_older_server(world: TlsWorld, pki: dict[str, str]) -> None:
    async with openssl_server(server_args(pki, "-tls1_2")) as server:
        with pytest.raises(
            HandshakeFailed, match=r"(?i)protocol version|unsupported protocol"
        ) as info:
            await open_tls_stream(
                "127.0.0.1",
                server.port,
                world.client_config(min_version="1.3"),
                peer="openssl s_server",
                verifier=world.verifier(),
                handshake_timeout=5,
            )
    assert "share no TLS version" in str(info.value)
    assert "--tls-min-version" in str(info.value)


async def test_cipher_choice_is_honoured(world: TlsWorld, pki: dict[str, str]) -> None:
    cipher = "ECDHE-ECDSA-CHACHA20-POLY1305"
    async with openssl_server(server_args(pki)) as server:
        stream = await open_tls_stream(
            "127.0.0.1",
            server.port,
            world.client_config(max_version="1.2", ciphers=cipher),
            peer="openssl s_server",
            verifier=world.verifier(),
            handshake_timeout=5,
        )
        completed = await stream.do_handshake()
        assert completed.cipher == cipher
        await server.wait_for(f"Ciphersuite: {cipher}")
        await stream.aclose()


async def test_no_shared_cipher_names_the_reason(world: TlsWorld, pki: dict[str, str]) -> None:
    # An ECDSA server cannot use an RSA-authenticated suite.
    async with openssl_server(server_args(pki, "-tls1_2")) as server:
        with pytest.raises(HandshakeFailed, match=r"(?i)handshake failure|no shared cipher"):
            await open_tls_stream(
                "127.0.0.1",
                server.port,
                world.client_config(max_version="1.2", ciphers="ECDHE-RSA-AES128-GCM-SHA256"),
                peer="openssl s_server",
                verifier=world.verifier(),
                handshake_timeout=5,
            )


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_mutual_tls_s_server_gets_the_device_certificate(
    world: TlsWorld, pki: dict[str, str], version: str
) -> None:
    device = identity(world.ca, "device.example.net", common_name="sipua-device-0001")
    args = server_args(pki, "-Verify", "1", "-CAfile", pki["ca"], "-verify_return_error")
    async with openssl_server(args) as server:
        stream = await open_tls_stream(
            "127.0.0.1",
            server.port,
            world.client_config(identity=device, max_version=version),
            peer="openssl s_server",
            verifier=world.verifier(),
            handshake_timeout=5,
        )
        await stream.send_all(b"ping\n")
        with trio.fail_after(5):
            assert await stream.receive_some() == b"gnip\n"
        await stream.aclose()
        await server.wait_for("CONNECTION CLOSED")
        assert "sipua-device-0001" in server.output
        assert "No peer certificate" not in server.output


async def serve_one(
    world: TlsWorld, config_changes: dict[str, object], client_args: list[str], stdin: bytes
) -> tuple[TlsStream, BaseException | HandshakeCompleted, str]:
    """Accept one s_client connection on our listener; return the outcome and s_client's output."""
    listeners = await open_tls_listeners(
        0, world.server_config(**config_changes), host="127.0.0.1", handshake_timeout=5
    )
    port = listeners[0].transport_listener.socket.getsockname()[1]  # type: ignore[attr-defined]
    outcome: list[BaseException | HandshakeCompleted] = []
    client_output: list[str] = []

    async def client() -> None:
        run = await run_openssl_client(port, client_args, stdin=stdin, seconds=10)
        client_output.append(run.stdout + run.stderr)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client)
        stream = await listeners[0].accept()
        await listeners[0].aclose()
        try:
            completed = await stream.do_handshake(timeout=5)
        except (HandshakeFailed, PeerNotTrusted) as exc:
            outcome.append(exc)
        else:
            outcome.append(completed)
            with trio.fail_after(5):
                line = await stream.receive_some()
            await stream.send_all(line[::-1].strip() + b"\n")
        await stream.aclose()
    return stream, outcome[0], client_output[0]


async def test_s_client_against_our_server(world: TlsWorld, pki: dict[str, str]) -> None:
    args = ["-CAfile", pki["ca"], "-servername", "example.com", "-verify_return_error"]
    _, outcome, output = await serve_one(world, {}, args, b"ping\n")
    assert isinstance(outcome, HandshakeCompleted)
    assert outcome.sni == "example.com"
    assert outcome.server_side
    assert outcome.verification is None  # no client certificate asked for
    assert "gnip" in output
    assert "Verify return code: 0 (ok)" in output


async def test_our_server_requiring_client_certs_refuses_s_client_without_one(
    world: TlsWorld, pki: dict[str, str]
) -> None:
    args = ["-CAfile", pki["ca"], "-servername", "example.com"]
    stream, outcome, _ = await serve_one(world, {"client_certs": "require"}, args, b"ping\n")
    assert isinstance(outcome, HandshakeFailed)
    assert "certificate" in str(outcome)
    assert stream.handshake_event is not None
    assert not isinstance(stream.handshake_event, HandshakeCompleted)


async def test_our_server_verifies_s_client_certificate(
    world: TlsWorld, pki: dict[str, str], tmp_path: Path
) -> None:
    device = identity(world.ca, "device.example.net", common_name="sipua-device-0002")
    cert, key = device.write_pem(tmp_path, "device")
    args = ["-CAfile", pki["ca"], "-cert", str(cert), "-key", str(key)]
    _, outcome, output = await serve_one(world, {"client_certs": "require"}, args, b"ping\n")
    assert isinstance(outcome, HandshakeCompleted)
    assert outcome.peer_chain[0] == device.certificate
    assert outcome.verified
    assert "gnip" in output


async def test_client_certificate_from_an_unknown_ca_is_refused(
    world: TlsWorld, pki: dict[str, str], tmp_path: Path
) -> None:
    stranger = identity(trustme.CA(), "device.example.net")
    cert, key = stranger.write_pem(tmp_path, "stranger")
    args = ["-CAfile", pki["ca"], "-cert", str(cert), "-key", str(key)]
    stream, outcome, _ = await serve_one(world, {"client_certs": "request"}, args, b"ping\n")
    assert isinstance(outcome, PeerNotTrusted)
    assert outcome.code == "untrusted-issuer"
    event = stream.handshake_event
    assert event is not None
    assert not isinstance(event, HandshakeCompleted)
    assert event.code == "untrusted-issuer"
