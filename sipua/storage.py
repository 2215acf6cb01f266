"""User state on disk: how it is written, read and locked.

Theory of operation: this module is the only code in sipua that writes user state (the
certificate store today, settings updates later). Every write goes through `atomic_write`, which
writes a temporary file in the target's own directory, fsyncs it, renames it over the target with
`os.replace` and then fsyncs the directory, so a crash at any moment leaves either the old file or
the new one, never a torn mixture. A logical change that spans several facts is therefore kept in
one file (for example a certificate and its private key), so that one rename commits it.

Private material (keys) is written with mode 0600 in directories with mode 0700, and
`read_private` refuses a file (a key, a passphrase) that its group or others can read: a secret
that others could have copied is no longer a secret, and the message says how to fix it.

Reads are bounded (`MAX_FILE_BYTES`) so a wrong path (a disk image, /dev/zero) cannot exhaust
memory, and only regular files are read: a FIFO or a device is refused at once, never waited on.

Atomic writes keep each file whole, but two processes that both read, modify and write the same
file (two `sipua cert import-trusted` at once) would still lose one change. `exclusive_lock`
serializes such read-modify-write sequences (and create-if-missing ones) across processes with
an advisory `flock` on a lock file in the directory; the caller re-reads under the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from sipua.errors import StoreError

#: The largest file sipua reads as user state or imports (certificates, keys): 5 MB, the limit
#: desk phones document for certificate uploads.
MAX_FILE_BYTES: Final = 5 * 1024 * 1024

PRIVATE_FILE_MODE: Final = 0o600
PRIVATE_DIR_MODE: Final = 0o700
PUBLIC_FILE_MODE: Final = 0o644

_TMP_PREFIX: Final = ".tmp-"
#: A temporary file of the same target older than this is a crashed writer's leftover (a live
#: writer renames its own within milliseconds); the next write of that target removes it.
STALE_TEMPORARY_SECONDS: Final = 60.0
#: Leftovers removed per write, so a directory full of them cannot stall one write.
MAX_SWEPT_PER_WRITE: Final = 64
#: The lock file `exclusive_lock` creates in the directory it guards.
LOCK_FILE_NAME: Final = ".lock"
#: How long `exclusive_lock` waits for another process (a writer holds it for milliseconds).
LOCK_TIMEOUT_SECONDS: Final = 30.0
_LOCK_POLL_SECONDS: Final = 0.01


def ensure_private_dir(path: Path) -> Path:
    """Creates `path` (and missing parents) with mode 0700 and returns it.

    An existing directory keeps its parents' modes, but `path` itself is tightened to 0700: it
    holds private keys.

    Raises:
        StoreError: the directory cannot be created or is not a directory.
    """
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        if stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR_MODE:
            path.chmod(PRIVATE_DIR_MODE)
    except FileExistsError as exc:
        raise StoreError(f"cannot use {path} as a directory: a file is in the way") from exc
    except OSError as exc:
        raise StoreError(f"cannot create directory {path}: {exc.strerror or exc}") from exc
    return path


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable (POSIX: a rename is recorded in the directory).
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = PUBLIC_FILE_MODE) -> None:
    """Replaces the file at `path` with `data`, atomically and durably.

    The temporary file is created with `mode` from the start (never briefly world-readable),
    in the same directory so that `os.replace` is a rename within one file system.

    Args:
        path: the file to write; its directory must exist (see `ensure_private_dir`).
        data: the complete new contents.
        mode: permission bits of the new file; use `PRIVATE_FILE_MODE` for anything with a key.

    Raises:
        StoreError: the file could not be written; the old contents are left in place.
    """
    directory = path.parent
    tmp = directory / f"{_TMP_PREFIX}{path.name}-{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            # The umask may have narrowed `mode`; a public file should still be readable.
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
    _sweep_stale_temporaries(path)


def _sweep_stale_temporaries(path: Path) -> None:
    """Removes what writers of `path` killed mid-write (kill -9, power loss) left behind.

    Such a file can hold an old private key; left alone it would outlive `remove_device`.
    Only files older than `STALE_TEMPORARY_SECONDS` go, so a concurrent writer's file is safe.
    """
    with contextlib.suppress(OSError):
        now = time.time()
        for count, leftover in enumerate(path.parent.glob(f"{_TMP_PREFIX}{path.name}-*")):
            if count >= MAX_SWEPT_PER_WRITE:
                break
            with contextlib.suppress(OSError):
                if now - leftover.lstat().st_mtime > STALE_TEMPORARY_SECONDS:
                    leftover.unlink()


def remove_file(path: Path) -> None:
    """Deletes `path` durably; a missing file is not an error.

    Raises:
        StoreError: the file exists but cannot be removed.
    """
    try:
        path.unlink(missing_ok=True)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise StoreError(f"cannot remove {path}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def exclusive_lock(directory: Path, *, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Holds an exclusive lock on `directory` (across processes) for the `with` block.

    The lock is `flock` on `<directory>/.lock` (created 0600, never removed: removing it would
    let two processes lock two different files). It is released when the block ends or the
    process dies. It is not reentrant: do not take it again while holding it.

    Args:
        directory: The directory whose files the block reads and rewrites (created 0700 if
            missing).
        timeout: Seconds to wait for another holder before giving up.

    Raises:
        StoreError: the lock file cannot be opened, or another process held the lock longer
            than `timeout`.
    """
    if not directory.is_dir():
        # Only created here: an existing directory's mode is for the caller to judge (a trust
        # store writable by others must be refused, not silently tightened first).
        ensure_private_dir(directory)
    path = directory / LOCK_FILE_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE_MODE)
    except OSError as exc:
        raise StoreError(f"cannot open the lock file {path}: {exc.strerror or exc}") from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"{directory} is locked by another sipua process (lock file {path}) for "
                        f"more than {timeout:g} s; wait for it to finish and try again"
                    ) from None
                time.sleep(_LOCK_POLL_SECONDS)
            except OSError as exc:
                raise StoreError(f"cannot lock {path}: {exc.strerror or exc}") from exc
        yield
    finally:
        # Closing the descriptor releases the lock.
        os.close(fd)


def read_bounded(path: Path, *, limit: int = MAX_FILE_BYTES) -> bytes:
    """Reads a whole file of at most `limit` bytes.

    Raises:
        StoreError: the file is missing, unreadable, not a regular file, or too large.
    """
    try:
        # O_NONBLOCK: opening a FIFO (or a device) for reading would otherwise wait for a
        # writer forever; the type is then checked on what was opened, so a file swapped in
        # between cannot slip past. Reads of a regular file ignore the flag.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreError(f"cannot read {path}: not a regular file")
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError as exc:
        raise StoreError(f"cannot read {path}: no such file") from exc
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise StoreError(f"cannot read {path}: larger than {limit} bytes")
    return data


def read_private(
    path: Path, *, limit: int = MAX_FILE_BYTES, what: str = "private key file"
) -> bytes:
    """Reads a file holding a secret (a private key, a passphrase), refusing one others can read.

    Args:
        path: The file.
        limit: The largest size read.
        what: What the file is, for the message ("private key file", "passphrase file").

    Raises:
        StoreError: the file cannot be read, or its group or others have any access to it.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError as exc:
        raise StoreError(f"cannot read {path}: no such file") from exc
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if mode & 0o077:
        raise StoreError(
            f"refusing to use {what} {path}: its mode is {mode:04o}, so other users can read "
            f"it; run `chmod 600 {path}` (and replace the {what.removesuffix(' file')} if it "
            "may have leaked)"
        )
    return read_bounded(path, limit=limit)


def is_temporary(path: Path) -> bool:
    """Tells whether `path` is a leftover temporary file of an interrupted `atomic_write`."""
    return path.name.startswith(_TMP_PREFIX)
