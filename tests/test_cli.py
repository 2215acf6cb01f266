from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sipua import __version__
from sipua.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sipua {__version__}"


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "register" in capsys.readouterr().out


def test_help_imports_no_heavy_module() -> None:
    # `sipua --help` must stay fast: it may not import trio, OpenSSL or cryptography.
    code = (
        "import sys\n"
        "from sipua.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('trio', 'OpenSSL', 'cryptography', 'dns', 'structlog')"
        " if m in sys.modules)\n"
        "print(heavy, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stderr.strip() == "[]"


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sipua", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"sipua {__version__}"


def test_password_flag_is_one_error_line_like_the_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["register", "--once", "--aor", "sips:alice@example.test", "--password", "hunter2"])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "sipua: error: --password is not supported: other users can read command lines; put "
        "the password in a file for --password-file FILE, or in SIPUA_PASSWORD"
    ]


def test_missing_trusted_cert_says_the_file_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(
        ["register", "--once", "--aor", "sips:alice@example.test", "--proxy", "127.0.0.1:9",
         "--data-dir", str(tmp_path / "data"), "--trusted-cert", "nosuch.pem"]
    )  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "sipua: error: --trusted-cert: the certificate file 'nosuch.pem' does not exist; give "
        "the path of a CA certificate file (PEM or DER)"
    ]


def test_load_refuses_key_continuity_it_would_not_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pin = "sha256/" + "A" * 43 + "="
    argv = ["load", "--aor", "sips:a@example.test", "--proxy", "127.0.0.1:9"]
    assert main([*argv, "--pin", pin, "--data-dir", str(tmp_path)]) == 2
    assert "does not check pins" in capsys.readouterr().err


CALL = ["call", "--aor", "sips:alice@example.test", "--proxy", "127.0.0.1:9"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # Refused before anything registers: a typo must not cost a TLS round trip.
        ([*CALL, "not a uri"], "malformed URI 'not a uri'"),
        ([*CALL, "tel:+15551234"], "give a sip: or sips: URI"),
        ([*CALL, "sips:bob@example.test", "--record", "{tmp}/nope/x.wav"], "does not exist"),
        ([*CALL, "sips:bob@example.test", "--record", "{tmp}"], "is a directory"),
        (["load", "--aor", "sips:a@example.test", "--json", "{tmp}/nope/r.json"], "not exist"),
    ],
)
def test_files_and_targets_are_checked_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main([arg.format(tmp=tmp_path) for arg in argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_an_output_file_that_is_not_writable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse
    import os

    from sipua.commands.register import output_file_argument

    assert output_file_argument(str(tmp_path / "r.json")) == tmp_path / "r.json"
    # The suite runs as root in CI, which may write anywhere: the permission answer is given.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(argparse.ArgumentTypeError, match="not writable by this user"):
        output_file_argument(str(tmp_path / "r.json"))
