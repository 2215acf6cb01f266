"""Opt-in TLS key logging in the NSS key-log format (what SSLKEYLOGFILE gives browsers).

With a key log, Wireshark can decrypt a captured SIPS session, which is the quickest way to
debug a registrar that misbehaves. The file holds session secrets, so it is created owner-only
(0600) and appended to, never truncated; it is written only when the user configured a path.
Nothing else in sipua ever sees these lines: they go to the file and nowhere else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from OpenSSL import SSL

from sipua.errors import ConfigError

#: A key-log line is a label, a 32-byte client random and a secret, all hex: well under 300
#: bytes. Anything longer is not a key-log line and is not written.
MAX_KEYLOG_LINE_BYTES: Final = 1024


class KeyLogWriter:
    """Appends OpenSSL's key-log lines to one file (the `set_keylog_callback` target).

    The file is opened per line and closed at once: handshakes are rare next to the traffic,
    and no descriptor is held across the lifetime of a shared context.

    Args:
        path: The key-log file; created with mode 0600 if missing.

    Raises:
        ConfigError: The file cannot be created or written.
    """

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"cannot open the TLS key log file {path}: {exc.strerror}; "
                "choose a writable path or drop the key log setting"
            ) from exc
        os.close(fd)

    def __repr__(self) -> str:
        return f"KeyLogWriter({str(self.path)!r})"

    def __call__(self, connection: SSL.Connection, line: bytes) -> None:
        """Write one key-log line (called by OpenSSL during handshakes)."""
        if len(line) > MAX_KEYLOG_LINE_BYTES or b"\n" in line:
            return
        # An error here would surface inside OpenSSL's callback and break the handshake; key
        # logging is a debugging aid, so a full disk must not cost the user the connection.
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line + b"\n")
            finally:
                os.close(fd)
        except OSError:
            pass
