"""`sipua.storage`: data directory, atomic writes, private files."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from sipua import storage
from sipua.errors import StoreError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_replaces_and_sets_mode(tmp_path: Path) -> None:
    target = tmp_path / "file"
    storage.atomic_write(target, b"old")
    storage.atomic_write(target, b"new", mode=storage.PRIVATE_FILE_MODE)
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # no temporary left behind


def test_atomic_write_failure_keeps_old_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "file"
    storage.atomic_write(target, b"old")

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StoreError, match=r"cannot write .*file: No space left"):
        storage.atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_atomic_write_into_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot write"):
        storage.atomic_write(tmp_path / "missing" / "file", b"x")


def test_ensure_private_dir_creates_and_tightens(tmp_path: Path) -> None:
    loose = tmp_path / "dir"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    storage.ensure_private_dir(loose)
    assert _mode(loose) == 0o700
    nested = storage.ensure_private_dir(tmp_path / "a" / "b")
    assert _mode(nested) == 0o700


def test_ensure_private_dir_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(StoreError, match="a file is in the way"):
        storage.ensure_private_dir(tmp_path / "f")


def test_read_private_refuses_readable_key(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    storage.atomic_write(key, b"secret", mode=0o644)
    with pytest.raises(StoreError, match="chmod 600") as info:
        storage.read_private(key)
    assert "secret" not in str(info.value)
    assert str(info.value).startswith(f"refusing to use private key file {key}: its mode is 0644")
    assert str(info.value).endswith("(and replace the private key if it may have leaked)")
    key.chmod(0o600)
    assert storage.read_private(key) == b"secret"


def test_read_bounded_limits_size(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 11)
    with pytest.raises(StoreError, match="larger than 10 bytes"):
        storage.read_bounded(big, limit=10)
    assert storage.read_bounded(big, limit=11) == b"x" * 11


def test_read_bounded_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such file"):
        storage.read_bounded(tmp_path / "nope")
    with pytest.raises(StoreError, match="cannot read"):
        storage.read_bounded(tmp_path)


def test_read_bounded_refuses_a_fifo_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    done = threading.Event()

    def unblock() -> None:
        # Only if the read waits: a writer lets a blocked open return, so the test ends.
        if not done.wait(5.0):
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    rescuer = threading.Thread(target=unblock, daemon=True)
    rescuer.start()
    started = time.monotonic()
    try:
        with pytest.raises(StoreError, match="not a regular file"):
            storage.read_bounded(fifo)
    finally:
        done.set()
        rescuer.join()
    assert time.monotonic() - started < 4.0


def test_remove_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"x")
    storage.remove_file(target)
    assert not target.exists()
    storage.remove_file(target)  # missing is fine


def test_exclusive_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    with storage.exclusive_lock(directory):
        assert stat.S_IMODE((directory / storage.LOCK_FILE_NAME).stat().st_mode) == 0o600
        # flock is per open file, so a second open in this process contends like a process.
        with (
            pytest.raises(StoreError, match="locked by another sipua process"),
            storage.exclusive_lock(directory, timeout=0.05),
        ):
            pass
    with storage.exclusive_lock(directory, timeout=0.05):
        pass  # released when the first block ended
