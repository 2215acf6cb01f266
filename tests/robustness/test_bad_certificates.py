"""Bad registrar certificates through a real TLS handshake: each gives its own reason.

The policy's verdicts are unit-tested in `tests/tls/trust/test_verify_chain.py`; here every flaw is
presented by the test registrar over loopback TLS, and sipua must refuse it before sending a
SIP byte, with the precise code in the error and in the lock state, the TLS exit code (3), and
no crash. The registrar runs at OpenSSL security level 0 so that it can present weak keys and
signatures at all: refusing them is sipua's job.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from sipua.errors import EXIT_TLS, PeerNotTrusted, TlsError
from sipua.ua.agent import UserAgent
from tests.support.certs import Issued, make_ca, make_leaf
from tests.support.registrar import REALM, Pki, TestRegistrar
from tests.ua.test_agent import events, settings

ROOT = make_ca("Bad Cert Root")
RSA_ROOT = make_ca("Bad Cert RSA Root", key_kind="rsa-2048")
INTER = make_ca("Bad Cert Inter", issuer=ROOT)
NOT_A_CA = make_ca("Bad Cert CA:FALSE", issuer=ROOT, ca=False)
STRANGER = make_ca("Someone Else's Root")


@dataclass
class ChainPki(Pki):
    """A registrar identity: `server` plus `extra` certificates sent after it; `ca` is trusted."""

    extra: tuple[Issued, ...] = ()

    def server_context(self, client_ca: bytes | None = None) -> ssl.SSLContext:
        del client_ca
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the registrar present weak material
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert.write_bytes(self.server.pem + b"".join(c.pem for c in self.extra))
            key.write_bytes(self.server.key_pem)
            context.load_cert_chain(cert, key)
        return context


def leaf(issuer: Issued | None, **flaws: object) -> Issued:
    names: dict[str, object] = {"cn": REALM, "dns": [REALM], "uris": [f"sip:{REALM}"]}
    names.update(flaws)
    return make_leaf(issuer, **names)  # type: ignore[arg-type]


CASES = {
    "expired": (ChainPki(ROOT, leaf(ROOT, expired=True)), "expired"),
    "not-yet-valid": (ChainPki(ROOT, leaf(ROOT, not_yet_valid=True)), "not-yet-valid"),
    "wrong-name": (
        ChainPki(ROOT, leaf(ROOT, cn="other.test", dns=["other.test"], uris=["sip:other.test"])),
        "name-mismatch",
    ),
    "self-signed": (ChainPki(ROOT, leaf(None)), "untrusted-issuer"),
    "unknown-issuer": (ChainPki(ROOT, leaf(STRANGER)), "untrusted-issuer"),
    "intermediate-missing": (ChainPki(ROOT, leaf(INTER)), "untrusted-issuer"),
    "ca-false-issuer": (ChainPki(ROOT, leaf(NOT_A_CA), (NOT_A_CA,)), "invalid-chain"),
    "wrong-eku": (ChainPki(ROOT, leaf(ROOT, eku=("email",))), "bad-usage"),
    "rsa-1024": (ChainPki(ROOT, leaf(ROOT, key_kind="rsa-1024")), "weak-key"),
    "sha1-signature": (ChainPki(RSA_ROOT, leaf(RSA_ROOT, signature_hash="sha1")), "weak-signature"),
    "md5-signature": (ChainPki(RSA_ROOT, leaf(RSA_ROOT, signature_hash="md5")), "weak-signature"),
}


async def test_the_good_chain_registers(tmp_path: Path) -> None:
    # The control: the same machinery with an intermediate sent registers fine.
    async with (
        TestRegistrar(pki=ChainPki(ROOT, leaf(INTER), (INTER,))) as registrar,
        UserAgent(settings(tmp_path, registrar)) as ua,
    ):
        await ua.account.register()
        assert ua.account.lock.state.value == "locked"


@pytest.mark.parametrize("case", sorted(CASES))
async def test_each_flaw_is_refused_with_its_own_reason(tmp_path: Path, case: str) -> None:
    pki, code = CASES[case]
    async with (
        TestRegistrar(pki=pki) as registrar,
        UserAgent(settings(tmp_path, registrar)) as ua,
    ):
        with pytest.raises(TlsError) as info:
            await ua.account.register()
        error = info.value
        assert error.exit_code == EXIT_TLS
        assert isinstance(error, PeerNotTrusted)
        assert error.code == code, str(error)
        lock = events(ua, "lock-changed")[-1]
        assert lock["state"] == "unlocked"
        assert code in lock["reason"]
        assert registrar.registers == []  # not one SIP byte on an unverified connection


async def test_weak_key_is_refused_even_when_untrusted_peers_are_accepted(
    tmp_path: Path,
) -> None:
    # only_trusted off waives trust, not strength: a weak key is still refused by default, as
    # OpenSSL's security level would, and not one SIP byte goes to that registrar.
    pki, _ = CASES["rsa-1024"]
    async with (
        TestRegistrar(pki=pki) as registrar,
        UserAgent(settings(tmp_path, registrar, only_trusted=False)) as ua,
    ):
        with pytest.raises(PeerNotTrusted) as info:
            await ua.account.register()
        assert info.value.code == "weak-key"
        assert info.value.exit_code == EXIT_TLS
        lock = events(ua, "lock-changed")[-1]
        assert lock["state"] == "unlocked"
        assert "weak-key" in lock["reason"]
        assert registrar.registers == []


async def test_weak_key_is_accepted_unverified_only_with_legacy_tls(tmp_path: Path) -> None:
    # Lowering the TLS minimum below 1.2 is the user's opt-in to legacy peers: with only_trusted
    # off such a peer can register, and the lock says locked-unverified with the reason.
    pki, _ = CASES["rsa-1024"]
    async with TestRegistrar(pki=pki) as registrar:
        base = settings(tmp_path, registrar, only_trusted=False)
        legacy = replace(base, tls=replace(base.tls, min_version="1.0"))
        async with UserAgent(legacy) as ua:
            await ua.account.register()
            lock = events(ua, "lock-changed")[-1]
            assert lock["state"] == "locked-unverified"
            assert "weak-key" in lock["reason"]


GARBAGE = {
    "empty": b"",
    "random": bytes(range(256)) * 8,
    "truncated-pem": ROOT.pem[: len(ROOT.pem) // 2],
    "bad-base64": b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    "key-only": ROOT.key_pem,
    "text": "not a certificate \u00e9\n".encode(),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_files_on_import_are_one_line_errors(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from sipua.cli import main

    path = tmp_path / f"{kind}.pem"
    path.write_bytes(GARBAGE[kind])
    data = str(tmp_path / "data")
    assert main(["cert", "import-trusted", str(path), "--data-dir", data]) == 2
    assert main(["cert", "verify", str(path), "--name", REALM, "--data-dir", data]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert all(line.startswith("sipua: error: ") and str(path) in line for line in lines)
    assert "Traceback" not in err
    assert "PRIVATE KEY" not in err  # a key file's content is never echoed
