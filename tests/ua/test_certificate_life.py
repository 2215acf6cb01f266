"""Certificates through their life in a running user agent: expiry warnings, renewal of sipua's
own device certificates picked up by the listener without a restart, reload of the trusted set,
and key continuity (pins, trust on first use) with the lock's basis."""

from __future__ import annotations

import datetime as dt
import shlex
import ssl
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import trio

from sipua import storage
from sipua.cli import main
from sipua.errors import CertificateError, PeerNotTrusted, StoreError
from sipua.settings.model import CertificateSettings, ListenSettings, Settings, TlsSettings
from sipua.tls.certs import certificate_pem, fingerprint, private_key_pem
from sipua.tls.stores import issuing
from sipua.tls.stores.store import CertStore
from sipua.tls.trust.pins import KeyMismatch, spki_pin
from sipua.ua.agent import UserAgent
from tests.support.certs import make_ca, make_leaf
from tests.support.registrar import Pki, TestRegistrar
from tests.ua.test_agent import events, lock_states, settings

NOW = dt.datetime.now(dt.UTC)


def _generic(base: Settings, **certificates: object) -> Settings:
    return replace(
        base,
        tls=replace(base.tls, device_cert="generic"),
        listen=ListenSettings(enabled=True, port=0),
        certificates=CertificateSettings(**certificates),  # type: ignore[arg-type]
    )


def _write_generic(data_dir: Path, *, expires_in_days: int) -> str:
    """Puts a generic device certificate issued by the device CA that expires soon in the
    store (what the store looks like after years of running); returns its fingerprint."""
    store = CertStore(data_dir)
    ca = store.devices.ca()
    ca_file = storage.read_private(data_dir / "certs" / "device-ca.pem")
    from sipua.tls.certs import load_private_key

    ca_key = load_private_key(ca_file, source="device-ca.pem")
    issued_at = NOW - dt.timedelta(days=issuing.DEVICE_CERT_DAYS - expires_in_days)
    cert, key = issuing.issue_device_certificate(
        ca.certificate,
        ca_key,  # type: ignore[arg-type]
        mac=None,
        now=issued_at,
    )
    storage.atomic_write(
        data_dir / "certs" / "device-generic.pem",
        private_key_pem(key) + certificate_pem(cert),
        mode=storage.PRIVATE_FILE_MODE,
    )
    return fingerprint(cert)


async def _presented_fingerprint(address: tuple[str, int]) -> str:
    """The certificate the listener presents on a new handshake."""
    from cryptography import x509

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tcp = await trio.open_tcp_stream(*address)
    stream = trio.SSLStream(tcp, context, server_hostname=None)
    with trio.fail_after(5):
        await stream.do_handshake()
    der = stream.getpeercert(binary_form=True)
    assert der is not None
    await trio.aclose_forcefully(stream)
    return fingerprint(x509.load_der_x509_certificate(der))


# -- expiry ------------------------------------------------------------------------------------


async def test_start_warns_about_a_trusted_certificate_near_expiry(tmp_path: Path) -> None:
    soon = make_ca("Soon Expiring CA", days=10)
    path = tmp_path / "soon.pem"
    path.write_bytes(soon.pem)
    async with TestRegistrar() as registrar:
        base = settings(tmp_path, registrar)
        base = replace(
            base,
            tls=replace(base.tls, trusted_certs=(*base.tls.trusted_certs, path)),
            certificates=CertificateSettings(expiry_warning_days=30),
        )
        async with UserAgent(base) as ua:
            [warning] = [e for e in events(ua, "certificate-expiring") if e["role"] == "trusted"]
            assert warning["name"] == "Soon Expiring CA"
            assert warning["days_left"] in (9, 10)
            assert "import-trusted" in warning["action"]
        # Below the threshold: no warning.
        quiet = replace(base, certificates=CertificateSettings(expiry_warning_days=5))
        async with UserAgent(quiet) as ua:
            assert not [e for e in events(ua, "certificate-expiring") if e["role"] == "trusted"]


async def test_a_generic_device_certificate_due_for_renewal_is_renewed_and_presented(
    tmp_path: Path,
) -> None:
    async with TestRegistrar() as registrar:
        base = _generic(settings(tmp_path, registrar), check_interval=0.2)
        async with UserAgent(base) as ua:
            assert ua.listen_address is not None
            await ua.account.register()
            flow = ua.account.connection
            first = await _presented_fingerprint(ua.listen_address)
            # Years later: the generic certificate on disk has 10 days left.
            old = _write_generic(base.data_dir, expires_in_days=10)
            with trio.fail_after(10):
                while not events(ua, "certificates-reloaded"):  # noqa: ASYNC110
                    await trio.sleep(0.05)
            [reloaded] = events(ua, "certificates-reloaded")
            assert reloaded["trigger"] == "check"
            assert first[:16] in reloaded["device_certificate_before"]
            presented = await _presented_fingerprint(ua.listen_address)
            assert presented not in (first, old)  # a fresh one, issued from the device CA
            assert presented[:16] in reloaded["device_certificate"]
            renewed = CertStore(base.data_dir).devices.identity("generic")
            assert fingerprint(renewed.certificate) == presented
            assert renewed.certificate.not_valid_after_utc > NOW + dt.timedelta(days=365)
            # The registration flow established before stays up.
            assert ua.account.connection is flow
            assert flow is not None
            assert flow.is_open
            assert registrar.connections == 1


async def test_a_custom_device_certificate_is_never_renewed_only_warned_about(
    tmp_path: Path,
) -> None:
    ca = make_ca("Custom Device CA")
    leaf = make_leaf(ca, cn="custom device", days=5)
    (tmp_path / "dev.pem").write_bytes(leaf.key_pem + leaf.pem)
    async with TestRegistrar() as registrar:
        base = settings(tmp_path, registrar)
        CertStore(base.data_dir).devices.import_files(tmp_path / "dev.pem")
        custom = replace(
            base,
            tls=replace(base.tls, device_cert="custom"),
            listen=ListenSettings(enabled=True, port=0),
        )
        async with UserAgent(custom) as ua:
            assert ua.listen_address is not None
            [warning] = [e for e in events(ua, "certificate-expiring") if e["kind"] == "custom"]
            assert warning["role"] == "device"
            assert "import-device" in warning["action"]
            assert not ua.reload_certificates("check")  # nothing renewed
            assert await _presented_fingerprint(ua.listen_address) == leaf.fingerprint


def _write_device_ca(data_dir: Path, *, ends_in: dt.timedelta) -> str:
    """Puts a device CA that ends `ends_in` from now (negative: has ended) in the store, as
    one created 20 years earlier would be; returns its name."""
    start = dt.datetime.now(dt.UTC) + ends_in - dt.timedelta(days=issuing.DEVICE_CA_DAYS)
    cert, key = issuing.new_device_ca(start)
    storage.ensure_private_dir(data_dir / "certs")
    storage.atomic_write(
        data_dir / "certs" / "device-ca.pem",
        private_key_pem(key) + certificate_pem(cert),
        mode=storage.PRIVATE_FILE_MODE,
    )
    return CertStore(data_dir).devices.ca().name


async def test_a_device_ca_near_its_end_is_warned_about_and_its_certificate_kept(
    tmp_path: Path,
) -> None:
    async with TestRegistrar() as registrar:
        base = _generic(settings(tmp_path, registrar), check_interval=3600)
        ca_name = _write_device_ca(base.data_dir, ends_in=dt.timedelta(days=10))
        async with UserAgent(base) as ua:
            assert ua.listen_address is not None
            presented = await _presented_fingerprint(ua.listen_address)
            warned = {e["kind"]: e for e in events(ua, "certificate-expiring")}
            assert warned["device-ca"]["name"] == ca_name
            ca_file = base.data_dir / "certs" / "device-ca.pem"
            assert f"remove {ca_file}" in warned["device-ca"]["action"]
            assert "sipua cert export-ca" in warned["device-ca"]["action"]
            assert "renews" not in warned["generic"]["action"]
            # The device certificate ends with the CA: no new key at every check.
            for _ in range(3):
                assert not ua.reload_certificates("check")
            assert not events(ua, "certificates-reloaded")
            assert await _presented_fingerprint(ua.listen_address) == presented


async def test_a_device_ca_that_ends_while_running_fails_each_check_and_keeps_going(
    tmp_path: Path,
) -> None:
    async with TestRegistrar() as registrar:
        base = _generic(settings(tmp_path, registrar), check_interval=0.2)
        async with UserAgent(base) as ua:
            assert ua.listen_address is not None
            await ua.account.register()
            presented = await _presented_fingerprint(ua.listen_address)
            ended = _write_device_ca(base.data_dir, ends_in=-dt.timedelta(days=1))
            with trio.fail_after(10):
                while len(events(ua, "certificates-reload-failed")) < 2:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            for failed in events(ua, "certificates-reload-failed"):
                assert failed["trigger"] == "check"
                assert f"the device CA {ended!r} ended on" in failed["reason"]
                assert "sipua cert export-ca" in failed["reason"]
            # The user agent goes on with what it has.
            assert await _presented_fingerprint(ua.listen_address) == presented
            await ua.account.register()
            assert ua.account.lock.state.value == "locked"


async def test_a_start_with_an_ended_device_ca_is_a_certificate_error(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        base = _generic(settings(tmp_path, registrar))
        ended = _write_device_ca(base.data_dir, ends_in=-dt.timedelta(days=1))
        with pytest.raises(CertificateError, match=f"the device CA {ended!r} ended on"):
            async with UserAgent(base):
                pass


# -- reload ------------------------------------------------------------------------------------


async def test_reload_makes_new_connections_use_the_new_trust(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        base = settings(tmp_path, registrar, trust=False)  # the store decides
        store = CertStore(base.data_dir)
        async with UserAgent(base) as ua:
            with pytest.raises(PeerNotTrusted):
                await ua.account.register()
            (tmp_path / "reg-ca.pem").write_bytes(registrar.pki.ca.pem)
            store.trusted.import_file(tmp_path / "reg-ca.pem")
            assert ua.reload_certificates("sighup")
            [reloaded] = events(ua, "certificates-reloaded")
            assert reloaded["trusted_added"] == ["Registrar Test CA"]
            await ua.account.register()
            assert lock_states(ua)[-1] == "locked"
            # Trust withdrawn: the established flow stays, the next connection is refused.
            store.trusted.remove("Registrar Test CA")
            assert ua.reload_certificates("sighup")
            flow = ua.account.connection
            assert flow is not None
            assert flow.is_open
            await flow.aclose("test")
            with pytest.raises(PeerNotTrusted):
                await ua.account.register()
            assert "untrusted-issuer" in ua.account.lock.reason


async def test_a_reload_that_fails_keeps_the_old_setup(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        base = _generic(settings(tmp_path, registrar))
        base = replace(base, tls=replace(base.tls, device_cert="custom"))
        ca = make_ca("Custom Device CA")
        leaf = make_leaf(ca, cn="custom device")
        (tmp_path / "dev.pem").write_bytes(leaf.key_pem + leaf.pem)
        CertStore(base.data_dir).devices.import_files(tmp_path / "dev.pem")
        async with UserAgent(base) as ua:
            assert ua.listen_address is not None
            CertStore(base.data_dir).devices.remove()
            assert not ua.reload_certificates("sighup")
            assert [e for e, _ in ua.events if e == "certificates-reload-failed"]
            assert await _presented_fingerprint(ua.listen_address) == leaf.fingerprint


@pytest.mark.parametrize("damage", ["not-pem", "writable-by-others"])
async def test_a_reload_keeps_the_trust_in_use_when_trusted_pem_is_damaged(
    tmp_path: Path, damage: str
) -> None:
    async with TestRegistrar() as registrar:
        base = settings(tmp_path, registrar, trust=False)  # the store decides
        store = CertStore(base.data_dir)
        store.trusted.import_file(tmp_path / "ca.pem")
        trusted = store.directory / "trusted.pem"
        async with UserAgent(base) as ua:
            await ua.account.register()
            if damage == "not-pem":
                trusted.write_bytes(b"this is not a certificate\n")
                expected = f"{trusted} has unreadable content (it holds no PEM certificate)"
            else:
                trusted.chmod(0o666)
                expected = f"chmod go-w {trusted}"
            assert not ua.reload_certificates("sighup")
            [failed] = events(ua, "certificates-reload-failed")
            assert expected in failed["reason"]
            assert failed["kept"] == "the certificates in use before"
            assert not events(ua, "certificates-reloaded")
            # The next connection still trusts the registrar's CA.
            flow = ua.account.connection
            assert flow is not None
            await flow.aclose("test")
            await ua.account.register()
            assert lock_states(ua)[-1] == "locked"


# -- pins and trust on first use -----------------------------------------------------------------


def _with_keys(base: Settings, *, pins: tuple[str, ...] = (), first_use: bool = False) -> Settings:
    account = replace(base.accounts[0], pins=pins, trust_on_first_use=first_use)
    return replace(base, accounts=(account,))


async def test_a_matching_pin_locks_on_a_pinned_basis(tmp_path: Path) -> None:
    async with TestRegistrar() as registrar:
        pin = spki_pin(registrar.pki.ca.cert)  # pinning the CA's key
        async with UserAgent(_with_keys(settings(tmp_path, registrar), pins=(pin,))) as ua:
            await ua.account.register()
            [locked] = [e for e in events(ua, "lock-changed") if e["state"] == "locked"]
            assert locked["basis"] == "pinned"
        async with UserAgent(settings(tmp_path, registrar)) as ua:
            await ua.account.register()
            [locked] = [e for e in events(ua, "lock-changed") if e["state"] == "locked"]
            assert locked["basis"] == "ca-verified"


async def test_a_pin_mismatch_is_refused_naming_both_pins(tmp_path: Path) -> None:
    other = spki_pin(make_ca("Other CA").cert)
    async with TestRegistrar() as registrar:
        async with UserAgent(_with_keys(settings(tmp_path, registrar), pins=(other,))) as ua:
            with pytest.raises(KeyMismatch) as caught:
                await ua.account.register()
        assert caught.value.exit_code == 3
        assert caught.value.code == "pin-mismatch"
        assert other in str(caught.value)
        assert spki_pin(registrar.pki.server.cert) in str(caught.value)
        assert ua.account.lock.check == "verification-failed: pin-mismatch"
        assert not registrar.registers  # no SIP byte was sent


@dataclass
class _AppendingPki(Pki):
    """A registrar (an attacker's, here) that sends `extra` certificates after its chain."""

    extra: bytes = b""

    def server_context(self, client_ca: bytes | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert.write_bytes(self.server.pem + self.ca.pem + self.extra)
            key.write_bytes(self.server.key_pem)
            context.load_cert_chain(cert, key)
        return context


@pytest.mark.parametrize("trusted_attacker", [True, False], ids=["trusted-ca", "untrusted"])
async def test_a_pinned_certificate_the_peer_merely_appends_matches_no_pin(
    tmp_path: Path, trusted_attacker: bool
) -> None:
    # RFC 7469 §2.6: pins are matched against the validated chain, never against extra
    # certificates (the pinned CA's certificate is public: anyone can append it). An attacker
    # with a certificate for example.test from another CA the account trusts, or with
    # only_trusted off from any CA, used to pass the pin and show the lock locked.
    real = Pki.make()
    attacker_ca = make_ca("Attacker CA")
    attacker = _AppendingPki(
        attacker_ca,
        make_leaf(attacker_ca, cn="example.test", dns=["example.test"], uris=["sip:example.test"]),
        extra=real.ca.pem,
    )
    pin = spki_pin(real.ca.cert)
    async with TestRegistrar(pki=attacker) as registrar:
        base = settings(tmp_path, registrar, only_trusted=trusted_attacker)
        real_ca = tmp_path / "real-ca.pem"
        real_ca.write_bytes(real.ca.pem)
        trusted = (*base.tls.trusted_certs, real_ca) if trusted_attacker else (real_ca,)
        config = _with_keys(
            replace(base, tls=replace(base.tls, trusted_certs=trusted)), pins=(pin,)
        )
        async with UserAgent(config) as ua:
            with pytest.raises(KeyMismatch) as caught:
                await ua.account.register()
            assert "locked" not in lock_states(ua)
        assert caught.value.code == "pin-mismatch"
        assert not registrar.registers


async def test_a_pin_does_not_waive_an_expired_certificate(tmp_path: Path) -> None:
    # only_trusted off, the registrar's own (expired) key pinned: refused, not locked.
    expired = make_leaf(
        None, cn="example.test", dns=["example.test"], uris=["sip:example.test"], expired=True
    )
    async with TestRegistrar(pki=Pki(expired, expired)) as registrar:
        base = settings(tmp_path, registrar, only_trusted=False, trust=False)
        config = _with_keys(base, pins=(spki_pin(expired.cert),))
        async with UserAgent(config) as ua:
            with pytest.raises(PeerNotTrusted, match="refused even with a pin") as caught:
                await ua.account.register()
            assert "locked" not in lock_states(ua)
        assert caught.value.code == "expired"


async def test_a_pinned_self_signed_registrar_locks_with_only_trusted_off(tmp_path: Path) -> None:
    leaf = make_leaf(None, cn="example.test", dns=["example.test"], uris=["sip:example.test"])
    async with TestRegistrar(pki=Pki(leaf, leaf)) as registrar:
        base = settings(tmp_path, registrar, only_trusted=False, trust=False)
        async with UserAgent(_with_keys(base, pins=(spki_pin(leaf.cert),))) as ua:
            await ua.account.register()
            [locked] = [e for e in events(ua, "lock-changed") if e["state"] == "locked"]
            assert locked["basis"] == "pinned"


def _self_signed(domain: str = "example.test") -> Pki:
    leaf = make_leaf(None, cn=domain, dns=[domain], uris=[f"sip:{domain}"])
    return Pki(leaf, leaf)


async def test_trust_on_first_use_records_then_refuses_a_changed_key(tmp_path: Path) -> None:
    first_pki = _self_signed()
    async with TestRegistrar(pki=first_pki) as registrar:
        base = _with_keys(settings(tmp_path, registrar, trust=False), first_use=True)
        async with UserAgent(base) as ua:
            await ua.account.register()
            [locked] = [e for e in events(ua, "lock-changed") if e["state"] == "locked"]
            assert locked["basis"] == "first-use"
        known = CertStore(base.data_dir).known
        assert known.lookup("example.test") == spki_pin(first_pki.server.cert)
        async with UserAgent(base) as ua:  # same key again: still locked
            await ua.account.register()
            assert ua.account.lock.basis == "first-use"
    second_pki = _self_signed()
    async with TestRegistrar(pki=second_pki) as registrar:
        base = _with_keys(settings(tmp_path, registrar, trust=False), first_use=True)
        async with UserAgent(base) as ua:
            with pytest.raises(KeyMismatch) as caught:
                await ua.account.register()
        new_pin = spki_pin(second_pki.server.cert)
        message = str(caught.value)
        assert caught.value.code == "key-changed"
        # The data directory is not the default one: the command says which.
        command = f"sipua cert accept-key --data-dir {base.data_dir} example.test {new_pin}"
        assert f"`{command}`" in message
        assert not registrar.registers
        assert main(shlex.split(command)[1:]) == 0  # copied as it is
        assert known.lookup("example.test") == new_pin
        async with UserAgent(base) as ua:
            await ua.account.register()
            assert ua.account.lock.state.value == "locked"


async def test_trust_on_first_use_does_not_waive_an_expired_or_misnamed_certificate(
    tmp_path: Path,
) -> None:
    expired = make_leaf(None, cn="example.test", dns=["example.test"], expired=True)
    async with TestRegistrar(pki=Pki(expired, expired)) as registrar:
        base = _with_keys(settings(tmp_path, registrar, trust=False), first_use=True)
        async with UserAgent(base) as ua:
            with pytest.raises(PeerNotTrusted) as caught:
                await ua.account.register()
        assert caught.value.code == "expired"
    misnamed = _self_signed("elsewhere.test")
    async with TestRegistrar(pki=misnamed) as registrar:
        base = _with_keys(settings(tmp_path, registrar, trust=False), first_use=True)
        async with UserAgent(base) as ua:
            with pytest.raises(PeerNotTrusted) as caught:
                await ua.account.register()
        # The handshake's policy never waives a wrong name (its first code is the issuer's).
        assert caught.value.code in ("name-mismatch", "untrusted-issuer")
        assert ua.account.lock.state.value == "unlocked"
    assert CertStore(base.data_dir).known.records() == {}


async def test_a_corrupt_known_keys_file_refuses_with_file_and_line(tmp_path: Path) -> None:
    async with TestRegistrar(pki=_self_signed()) as registrar:
        base = _with_keys(settings(tmp_path, registrar, trust=False), first_use=True)
        storage.ensure_private_dir(base.data_dir / "certs")
        path = base.data_dir / "certs" / "known-keys"
        path.write_text("# ok\nexample.test not-a-pin\n")
        async with UserAgent(base) as ua:
            with pytest.raises(StoreError, match=r"known-keys line 2: expected an SPKI pin"):
                await ua.account.register()
        assert path.read_text() == "# ok\nexample.test not-a-pin\n"  # left for the user


def test_tls_settings_untouched_by_first_use() -> None:
    # Trust on first use relaxes only its own flows' handshake policy, never the shared one.
    from sipua.tls.setup import TlsSetup

    setup = TlsSetup(Settings(tls=TlsSettings(), data_dir=Path("/nonexistent/sipua-test")))
    assert setup.client("example.test", first_use=True).policy is not setup.policy
    assert setup.client("example.test").policy is setup.policy
    assert setup.policy.only_trusted


# -- provisioning in a running user agent ------------------------------------------------------


async def test_provisioning_at_start_and_on_an_interval_reaches_the_listener(
    tmp_path: Path,
) -> None:
    from tests.support.https_server import FileServer, Served

    device_ca = make_ca("Provisioned Device CA")
    one = make_leaf(device_ca, cn="device one")
    two = make_leaf(device_ca, cn="device two")
    files = {"/device.pem": Served(one.key_pem + one.pem)}
    async with FileServer(files) as server, TestRegistrar() as registrar:
        (tmp_path / "prov-ca.pem").write_bytes(server.ca.pem)
        base = settings(tmp_path, registrar)
        base = replace(
            base,
            tls=replace(
                base.tls,
                trusted_certs=(*base.tls.trusted_certs, tmp_path / "prov-ca.pem"),
                device_cert="custom",
            ),
            listen=ListenSettings(enabled=True, port=0),
            certificates=CertificateSettings(
                server_certificates_url=server.url("/device.pem"), provision_interval=0.3
            ),
        )
        async with UserAgent(base) as ua:
            assert ua.listen_address is not None
            [provisioned] = events(ua, "provisioned")
            assert provisioned["url"] == server.url("/device.pem")
            await ua.account.register()
            assert await _presented_fingerprint(ua.listen_address) == one.fingerprint
            files["/device.pem"] = Served(two.key_pem + two.pem)
            with trio.fail_after(10):
                while not events(ua, "certificates-reloaded"):  # noqa: ASYNC110
                    await trio.sleep(0.05)
            [reloaded] = events(ua, "certificates-reloaded")
            assert reloaded["trigger"] == "provisioning"
            assert await _presented_fingerprint(ua.listen_address) == two.fingerprint
            assert ua.account.connection is not None
            assert ua.account.connection.is_open
            # A failing URL later keeps what is in use and says so.
            files["/device.pem"] = Served(b"garbage")
            with trio.fail_after(10):
                while not events(ua, "provisioning-failed"):  # noqa: ASYNC110
                    await trio.sleep(0.05)
            assert await _presented_fingerprint(ua.listen_address) == two.fingerprint
