"""Secrets never reach output: a real `sipua register --once --trace` process, grepped.

Unit-level redaction is tested in `tests/test_logs.py` and `tests/ua/test_agent.py::
test_trace_redacts_credentials`; here the whole process runs (settings, TLS with the device
certificate, digest, failure paths, the error line) and every byte it prints is searched.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.registrar import TestRegistrar
from tests.ua.test_register_command import register_once

PASSWORD = "Zq7-unique-passphrase-42"


async def test_no_password_or_key_in_any_output(tmp_path: Path) -> None:
    async with TestRegistrar(users={"alice": PASSWORD}) as registrar:
        ok_code, ok_records, ok_stderr = await register_once(
            tmp_path, registrar, registrar.port, "--trace", password=PASSWORD
        )
        bad_code, bad_records, bad_stderr = await register_once(
            tmp_path, registrar, registrar.port, "--trace", password=PASSWORD + "-wrong"
        )
    assert (ok_code, bad_code) == (0, 4)
    traced = [r for r in ok_records + bad_records if r.get("event") == "sip-trace"]
    assert any("Authorization: Digest" in str(r["message"]) for r in traced)  # it was traced
    everything = "\n".join([ok_stderr, bad_stderr, *map(str, ok_records + bad_records)])
    assert PASSWORD not in everything
    assert "PRIVATE KEY" not in everything
    assert "response=" not in everything.replace('response=\\"<redacted>\\"', "").replace(
        'response="<redacted>"', ""
    )
    # The stored device key is owner-only on disk.
    keys = sorted((tmp_path / "data" / "certs").glob("device-*.pem"))
    assert keys
    assert all(path.stat().st_mode & 0o077 == 0 for path in keys if b"KEY" in path.read_bytes())
