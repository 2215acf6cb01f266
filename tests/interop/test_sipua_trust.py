"""sipua's trust policy against a real Kamailio: trusted list, name check, mutual TLS.

Each case is one `sipua register --once --log-format json`: its exit code, its `outcome` line
(lock state and reason) and its one-line error are what a CI job or a person sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.interop.peers import (
    Kamailio,
    TestPki,
    export_device_ca,
    import_device_certificate,
    run_sipua,
    sipua_outcome,
    sipua_register_argv,
)

pytestmark = pytest.mark.interop

EXIT_OK = 0
EXIT_TLS = 3
EXIT_NETWORK = 5


def _register_once(
    kam: Kamailio, data_dir: Path, *, port: int | None = None, **kwargs: Any
) -> tuple[int, dict[str, Any], str]:
    extra = ["--once", *kwargs.pop("extra", ())]
    argv = sipua_register_argv(kam, data_dir, port=port, extra=extra, **kwargs)
    proc = run_sipua(argv)
    return proc.returncode, sipua_outcome(proc.stdout), proc.stderr


def test_registrar_ca_not_trusted_fails_with_the_verification_reason(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    # Only a CA that did not issue Kamailio's certificate is trusted ("custom": the OS bundle
    # does not count either).
    code, outcome, stderr = _register_once(
        kamailio,
        tmp_path / "data",
        trusted=[kamailio.pki.device_ca],
        extra=["--ca-type", "custom"],
    )
    assert code == EXIT_TLS, stderr
    assert outcome["lock"] == "unlocked"
    assert outcome["lock_reason"].startswith("verification-failed: untrusted-issuer"), outcome
    assert "sipua test registrar CA" in stderr  # names the issuer to import
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("sipua: error: the server example.test is not trusted"), stderr


def test_registrar_ca_not_trusted_but_accepted_is_locked_unverified(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    code, outcome, stderr = _register_once(
        kamailio, tmp_path / "data", trusted=[kamailio.pki.device_ca], extra=["--no-only-trusted"]
    )
    assert code == EXIT_OK, stderr
    assert outcome["result"] == "registered"
    assert outcome["lock"] == "locked-unverified"
    assert outcome["lock_reason"].startswith("untrusted-issuer"), outcome


def test_name_mismatch_fails_with_cn_validation(kamailio: Kamailio, tmp_path: Path) -> None:
    code, outcome, stderr = _register_once(
        kamailio, tmp_path / "data", extra=["--tls-name", "other.test"]
    )
    assert code == EXIT_TLS, stderr
    assert outcome["lock"] == "unlocked"
    assert outcome["lock_reason"].startswith("verification-failed: name-mismatch"), outcome
    assert "not 'other.test'" in stderr, stderr


def test_name_mismatch_registers_without_cn_validation(kamailio: Kamailio, tmp_path: Path) -> None:
    code, outcome, stderr = _register_once(
        kamailio, tmp_path / "data", extra=["--tls-name", "other.test", "--no-cn-validation"]
    )
    assert code == EXIT_OK, stderr
    assert outcome["result"] == "registered"
    # The chain still verifies; only the name check was switched off by the user.
    assert outcome["lock"] == "locked", outcome


def test_mutual_tls_with_the_exported_device_ca(tmp_path: Path, test_pki: TestPki) -> None:
    data = tmp_path / "data"
    device_ca = export_device_ca(data, tmp_path / "sipua-device-ca.pem")
    with Kamailio(tmp_path / "kamailio", pki=test_pki, device_ca=device_ca) as kam:
        code, outcome, stderr = _register_once(kam, data, port=kam.mtls_port)
        assert code == EXIT_OK, f"{stderr}\n--- kamailio ---\n{kam.log_tail()}"
        assert outcome["lock"] == "locked", outcome

        # A custom device certificate from a CA Kamailio does not trust: refused, and sipua
        # says which TLS alert Kamailio sent.
        import_device_certificate(data, test_pki.cert("stranger"), test_pki.key("stranger"))
        code, outcome, stderr = _register_once(
            kam, data, port=kam.mtls_port, extra=["--device-cert", "custom"]
        )
    assert code in (EXIT_TLS, EXIT_NETWORK), stderr
    assert outcome["lock"] == "unlocked"
    assert "alert unknown ca" in stderr, stderr


def test_mutual_tls_refused_when_the_registrar_trusts_another_device_ca(
    kamailio: Kamailio, tmp_path: Path
) -> None:
    # The shared Kamailio trusts the test PKI's device CA, not this data directory's own.
    code, outcome, stderr = _register_once(kamailio, tmp_path / "data", port=kamailio.mtls_port)
    assert code in (EXIT_TLS, EXIT_NETWORK), stderr
    assert outcome["lock"] == "unlocked"
    assert "alert unknown ca" in outcome["lock_reason"], outcome
    assert "alert unknown ca" in stderr, stderr
