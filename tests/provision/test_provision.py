"""Provisioning from URLs against real HTTP(S) servers on loopback (a throwaway CA made now)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from sipua.provision.fetch import MAX_BODY_BYTES, FetchError, ResponseReader, fetch, parse_url
from sipua.provision.run import provision
from sipua.settings.model import CertificateSettings, Settings, TlsSettings
from sipua.tls.stores.store import CertStore
from tests.support.certs import make_ca, make_leaf, pem_bundle
from tests.support.https_server import FileServer, Served

ROOT_A = make_ca("Provisioned Root A")
ROOT_B = make_ca("Provisioned Root B")
DEVICE_CA = make_ca("Provisioned Device CA")
DEVICE = make_leaf(DEVICE_CA, cn="provisioned device")
OTHER_DEVICE = make_leaf(DEVICE_CA, cn="other device")


def _settings(tmp_path: Path, server: FileServer, **certificates: object) -> Settings:
    ca = tmp_path / "provisioning-ca.pem"
    ca.write_bytes(server.ca.pem)
    return Settings(
        tls=TlsSettings(trusted_certs=(ca,), ca_type="custom", device_cert="generic"),
        certificates=CertificateSettings(**certificates),  # type: ignore[arg-type]
        data_dir=tmp_path / "data",
    )


def _custom_names(settings: Settings) -> list[str]:
    return [s.name for s in CertStore(settings.data_dir).trusted.custom()]


async def test_https_trusted_url_adds_then_is_unchanged_then_replaces(tmp_path: Path) -> None:
    files = {"/ca.pem": Served(pem_bundle(ROOT_A, ROOT_B))}
    async with FileServer(files) as server:
        settings = _settings(tmp_path, server, trusted_certificates_url=server.url("/ca.pem"))
        [first] = await provision(settings)
        assert first.ok, first.detail
        assert first.changed
        assert first.line().startswith(
            f"provisioned: trusted certificates from {server.url('/ca.pem')}"
        )
        assert _custom_names(settings) == ["Provisioned Root A", "Provisioned Root B"]
        [again] = await provision(settings)
        assert again.ok
        assert not again.changed
        files["/ca.pem"] = Served(ROOT_B.der)  # DER works too
        replacing = replace(
            settings,
            certificates=replace(settings.certificates, trusted_certificates_delete=True),
        )
        [replaced] = await provision(replacing)
        assert replaced.ok, replaced.detail
        assert "removed Provisioned Root A" in replaced.detail
        assert _custom_names(settings) == ["Provisioned Root B"]
        assert b"GET /ca.pem HTTP/1.1" in server.requests[0]
        assert b"Host: localhost:" in server.requests[0]


@pytest.mark.parametrize(
    ("served", "message"),
    [
        (Served(b"<html>hello</html>"), "is not a certificate"),
        (Served(b"x" * (MAX_BODY_BYTES + 1)), "larger than 5 MB"),
        (Served(b"", 404), "answered 404 Not Found"),
        (Served(b"", 302, [("Location", "https://elsewhere.test/")]), "redirects are not followed"),
        (Served(DEVICE.key_pem + DEVICE.pem), "serves a private key"),
        (Served(pem_bundle(*[make_ca(f"CA {i}") for i in range(11)])), "at most 10"),
    ],
)
async def test_bad_content_is_refused_and_the_old_store_kept(
    tmp_path: Path, served: Served, message: str
) -> None:
    async with FileServer({"/good.pem": Served(ROOT_A.pem), "/bad": served}) as server:
        good = _settings(tmp_path, server, trusted_certificates_url=server.url("/good.pem"))
        assert (await provision(good))[0].ok
        before = CertStore(good.data_dir).trusted.path.read_bytes()
        bad = _settings(
            tmp_path,
            server,
            trusted_certificates_url=server.url("/bad"),
            trusted_certificates_delete=True,
        )
        [outcome] = await provision(bad)
    assert not outcome.ok
    assert message in outcome.detail
    assert server.url("/bad") in outcome.detail
    assert outcome.line().startswith("provisioning failed: trusted certificates from")
    assert CertStore(good.data_dir).trusted.path.read_bytes() == before


async def test_an_https_server_sipua_does_not_trust_is_a_tls_failure(tmp_path: Path) -> None:
    async with FileServer({"/ca.pem": Served(ROOT_A.pem)}) as server:
        settings = _settings(tmp_path, server, trusted_certificates_url=server.url("/ca.pem"))
        untrusting = replace(settings, tls=replace(settings.tls, trusted_certs=()))
        [outcome] = await provision(untrusting)
        assert not outcome.ok
        assert outcome.exit_code == 3
        assert "untrusted" in outcome.detail or "not trusted" in outcome.detail
        assert server.requests == []  # nothing was requested from an unverified server
        # A trusted list provisioned earlier (from a file) is what the next fetch trusts.
        (tmp_path / "server-ca.pem").write_bytes(server.ca.pem)
        first = replace(
            untrusting,
            certificates=CertificateSettings(
                trusted_certificates_url=(tmp_path / "server-ca.pem").as_uri()
            ),
        )
        assert (await provision(first))[0].ok
        [outcome] = await provision(untrusting)
        assert outcome.ok, outcome.detail


async def test_a_name_mismatch_on_the_provisioning_server_is_refused(tmp_path: Path) -> None:
    async with FileServer({"/ca.pem": Served(ROOT_A.pem)}) as server:
        server_url = server.url("/ca.pem").replace("localhost", "127.0.0.1")
        settings = _settings(tmp_path, server, trusted_certificates_url=server_url)
        [outcome] = await provision(settings)
    assert not outcome.ok
    assert outcome.exit_code == 3


async def test_device_url_stores_the_certificate_and_refuses_a_mismatched_key(
    tmp_path: Path,
) -> None:
    files = {
        "/device.pem": Served(DEVICE.key_pem + DEVICE.pem + DEVICE_CA.pem),
        "/mismatch.pem": Served(OTHER_DEVICE.key_pem + DEVICE.pem),
        "/nokey.pem": Served(DEVICE.pem),
    }
    async with FileServer(files) as server:
        settings = _settings(tmp_path, server, server_certificates_url=server.url("/device.pem"))
        [outcome] = await provision(settings)
        assert outcome.ok, outcome.detail
        assert "stored provisioned device" in outcome.detail
        identity = CertStore(settings.data_dir).devices.identity("custom")
        assert identity.certificate == DEVICE.cert
        assert identity.chain == (DEVICE_CA.cert,)
        for path, message in (
            ("/mismatch.pem", "does not match"),
            ("/nokey.pem", "no private key"),
        ):
            bad = _settings(tmp_path, server, server_certificates_url=server.url(path))
            [failed] = await provision(bad)
            assert not failed.ok
            assert message in failed.detail
            assert server.url(path) in failed.detail
            assert (
                CertStore(settings.data_dir).devices.identity("custom").certificate == DEVICE.cert
            )


async def test_file_and_http_urls(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_bytes(ROOT_A.pem)
    assert await fetch(path.as_uri(), client=None) == ROOT_A.pem
    with pytest.raises(FetchError, match=r"no such file|does not exist|cannot read"):
        await fetch((tmp_path / "missing.pem").as_uri(), client=None)
    async with FileServer({"/ca.pem": Served(ROOT_A.pem)}, tls=False) as server:
        with pytest.raises(FetchError, match="plain http:// is refused") as refused:
            await fetch(server.url("/ca.pem"), client=None)
        assert refused.value.exit_code == 3
        assert server.requests == []
        assert await fetch(server.url("/ca.pem"), client=None, allow_http=True) == ROOT_A.pem


async def test_unreachable_url(tmp_path: Path) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    from sipua.tls.setup import TlsSetup

    client = TlsSetup(Settings(data_dir=tmp_path)).client("localhost")
    with pytest.raises(FetchError, match=rf"https://localhost:{port}/ca.pem: .*connect") as caught:
        await fetch(f"https://localhost:{port}/ca.pem", client=client)
    assert caught.value.exit_code == 5


@pytest.mark.parametrize(
    ("url", "host", "port", "authority"),
    [
        ("https://prov.example/certs/ca.pem", "prov.example", 443, "prov.example"),
        ("https://[2001:db8::1]:8443/ca.pem", "2001:db8::1", 8443, "[2001:db8::1]:8443"),
        ("http://admin@127.0.0.1:8080/ca.pem?x=1", "127.0.0.1", 8080, "127.0.0.1:8080"),
    ],
)
def test_the_host_header_and_messages_use_the_urls_authority(
    url: str, host: str, port: int, authority: str
) -> None:
    target = parse_url(url)
    # The Host header is the URL's authority without user info (RFC 9110 §7.2).
    assert (target.host, target.port, target.authority) == (host, port, authority)


def test_response_reader_limits_and_errors() -> None:
    reader = ResponseReader("https://x.test/a", limit=10)
    reader.request("x.test", "/a")
    assert reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab") is None
    assert reader.feed(b"c") == b"abc"
    for data, message in (
        (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", "larger than"),
        (b"NOT HTTP\r\n\r\n", "not valid HTTP/1.1"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", "complete message body"),
    ):
        reader = ResponseReader("https://x.test/a", limit=10)
        reader.request("x.test", "/a")
        with pytest.raises(FetchError, match=message):  # noqa: PT012  # feed, then the end
            if reader.feed(data) is None:
                reader.feed(b"")


def test_cert_provision_command_prints_one_line_per_url(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(ROOT_A.pem)
    (tmp_path / "device.pem").write_bytes(b"not a certificate")
    argv = [
        sys.executable, "-m", "sipua", "cert", "provision", "--data-dir", str(tmp_path / "d"),
        "--trusted-certificates-url", (tmp_path / "ca.pem").as_uri(),
        "--server-certificates-url", (tmp_path / "device.pem").as_uri(), "--json",
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [line["event"] for line in lines] == ["provisioned", "provisioning-failed"]
    assert result.returncode == 2  # the content's failure
    assert "device.pem" in lines[1]["detail"]
    assert [s.name for s in CertStore(tmp_path / "d").trusted.custom()] == ["Provisioned Root A"]


async def test_provisioning_requires_a_verified_server_even_with_only_trusted_off(
    tmp_path: Path,
) -> None:
    # What the server serves decides whom sipua trusts next: an unverified one is never used.
    async with FileServer({"/ca.pem": Served(ROOT_A.pem)}) as server:
        settings = _settings(tmp_path, server, trusted_certificates_url=server.url("/ca.pem"))
        lax = replace(settings, tls=replace(settings.tls, trusted_certs=(), only_trusted=False))
        [outcome] = await provision(lax)
    assert not outcome.ok
    assert outcome.exit_code == 3
    assert server.requests == []
    assert _custom_names(settings) == []
