from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from sipua.errors import ConfigError
from sipua.settings.secret import MAX_SECRET_FILE_BYTES, Secret

PASSWORD = "hunter2-Zq9"


def test_repr_str_and_format_are_masked() -> None:
    secret = Secret(PASSWORD)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>10}", repr([secret])]
    assert all(PASSWORD not in text for text in shown)
    assert str(secret) == "***"
    assert secret.reveal() == PASSWORD


def test_equality_and_hash() -> None:
    assert Secret(PASSWORD) == Secret(PASSWORD)
    assert Secret(PASSWORD) != Secret(PASSWORD + "x")
    assert hash(Secret(PASSWORD)) == hash(Secret(PASSWORD))
    # Not equal to the plain string: comparing a Secret with text is a mistake, not a match.
    assert Secret(PASSWORD) != PASSWORD


def test_rejects_non_text_without_quoting_it() -> None:
    with pytest.raises(TypeError) as info:
        Secret(b"bytes-pw")  # type: ignore[arg-type]
    assert "bytes-pw" not in str(info.value)


def test_pickle_round_trip() -> None:
    assert pickle.loads(pickle.dumps(Secret(PASSWORD))).reveal() == PASSWORD


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"pw\n", "pw"),
        (b"pw\r\n", "pw"),
        (b"pw", "pw"),
        (b"pw\n\n", "pw\n"),
        (b" pw \n", " pw "),
        ("pässwörd\n".encode(), "pässwörd"),
    ],
)
def test_from_file_strips_one_trailing_newline(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "pw"
    path.write_bytes(content)
    assert Secret.from_file(path).reveal() == expected


def test_from_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"password file .*nope: no such file"):
        Secret.from_file(tmp_path / "nope")


@pytest.mark.parametrize("content", [b"", b"\n"])
def test_from_file_empty(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "pw"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="is empty"):
        Secret.from_file(path)


def test_from_file_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        Secret.from_file(tmp_path)


def test_from_file_unreadable(tmp_path: Path) -> None:
    # A path through a regular file fails with ENOTDIR for every user, root included.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"cannot read it \(Not a directory\); check the path"):
        Secret.from_file(blocker / "pw")


def test_from_file_too_large_or_binary(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_SECRET_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        Secret.from_file(big)
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfesecret-bytes")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        Secret.from_file(binary)
    assert "secret-bytes" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_from_env() -> None:
    assert Secret.from_env("PW", {"PW": PASSWORD}).reveal() == PASSWORD
    with pytest.raises(ConfigError, match="PW is not set"):
        Secret.from_env("PW", {})
    with pytest.raises(ConfigError, match="PW is empty"):
        Secret.from_env("PW", {"PW": ""})
