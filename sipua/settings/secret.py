"""`Secret`: a string that refuses to be printed.

Passwords travel through settings, the digest code and the user agent. Wrapping them in
`Secret` means that the usual ways a value escapes (a `repr` in a traceback, an f-string in a
log line, a dataclass `repr` of the settings) show `***` instead of the value. The only way to
get the text back is the explicit, greppable `.reveal()`, which the digest code calls at the
moment it hashes.

Equality compares in constant time (`hmac.compare_digest`) so that a comparison does not leak
how many leading characters matched. `Secret` is deliberately not a `str` subclass: a subclass
would be accepted, and printed, by every API that takes a string.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final, final

#: What `str()`, `repr()` and `format()` show instead of the value.
MASK: Final = "***"

#: A password file larger than this is a wrong path (a key, a disk image), not a password.
MAX_SECRET_FILE_BYTES: Final = 64 * 1024


@final
class Secret:
    """A secret string (a password) with a masked `repr`/`str` and an explicit `reveal()`.

    Args:
        value: The secret text.

    Raises:
        TypeError: `value` is not a `str`.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            # The message names the type only, never the value.
            raise TypeError(f"Secret needs a str, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """Returns the secret text. Call it only where the text is used, never to log it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, format_spec: str) -> str:
        return format(MASK, format_spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        # Settings are frozen dataclasses and so hashable; their Secret fields must be too.
        return hash((Secret, self._value))

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        # Pickling (multiprocessing in `sipua load`) keeps working; a pickle is not a log.
        return (Secret, (self._value,))

    @classmethod
    def from_file(cls, path: Path | str) -> Secret:
        """Reads a secret from a file, as written by `echo pw > file` or a secrets manager.

        One trailing newline (`\\n` or `\\r\\n`) is removed; any other whitespace is part of
        the secret.

        Args:
            path: The file holding the secret.

        Raises:
            ConfigError: The file is missing, unreadable, not UTF-8, too large, or empty.
        """
        # Imported here: the settings model (and so `--help`) imports this module, and
        # `sipua.errors` brings the SIP core with it.
        from sipua.errors import ConfigError

        path = Path(path)
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_SECRET_FILE_BYTES + 1)
        except FileNotFoundError as exc:
            raise ConfigError(f"password file {path}: no such file") from exc
        except IsADirectoryError as exc:
            raise ConfigError(f"password file {path}: is a directory, not a file") from exc
        except OSError as exc:
            raise ConfigError(
                f"password file {path}: cannot read it ({exc.strerror or exc}); "
                "check the path and its permissions"
            ) from exc
        if len(data) > MAX_SECRET_FILE_BYTES:
            raise ConfigError(
                f"password file {path}: larger than {MAX_SECRET_FILE_BYTES} bytes; "
                "is this the right file?"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # `from None`: the decode error's repr would quote the bytes of the secret.
            raise ConfigError(f"password file {path}: not UTF-8 text") from None
        text = text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text
        if not text:
            raise ConfigError(f"password file {path}: is empty; write the password into it")
        return cls(text)

    @classmethod
    def from_env(cls, name: str, env: Mapping[str, str] | None = None) -> Secret:
        """Reads a secret from an environment variable.

        Args:
            name: The variable's name.
            env: The environment to read; `os.environ` if omitted.

        Raises:
            ConfigError: The variable is not set or is empty.
        """
        from sipua.errors import ConfigError

        environ = os.environ if env is None else env
        value = environ.get(name)
        if value is None:
            raise ConfigError(f"environment variable {name} is not set; export the password in it")
        if not value:
            raise ConfigError(f"environment variable {name} is empty; export the password in it")
        return cls(value)
