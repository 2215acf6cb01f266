"""The registrar keys met on first use: sipua's known_hosts (`<data_dir>/certs/known-keys`).

One line per TLS name, `NAME sha256/BASE64` (the RFC 7469 pin of the registrar's leaf key),
blank lines and `#` comments allowed. Trust on first use records a name's key on first contact
(`record`); `accept` replaces it after the user checked a change (`sipua cert accept-key NAME
PIN`), `forget` removes it. Every change re-reads the file under the store directory's lock and
rewrites it atomically (`storage.atomic_write`), so concurrent processes lose nothing and a crash
leaves the old file or the new one.

The file is input sipua did not write alone (a user may edit it): `parse_known_keys` raises only
`KnownKeysError`, naming the file and line. A corrupt file is never rewritten or guessed at: the
connection is refused until the user repairs or removes the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from sipua import storage
from sipua.errors import StoreError
from sipua.hostport import is_valid_host
from sipua.settings.model import parse_pin
from sipua.tls.stores.files import StoreDirectory, cert_command, check_not_writable_by_others

KNOWN_KEYS_FILE: Final = "known-keys"
#: Names the file holds at most (a registrar per line; this is far beyond any deployment).
MAX_KNOWN_KEYS: Final = 10_000
#: Longest line read (a DNS name of 253 characters, a pin of 51, and room for a comment).
MAX_LINE_CHARS: Final = 1024


class KnownKeysError(StoreError):
    """The known-keys file cannot be read as sipua writes it; the message names file and line."""


def _checked_name(name: str) -> str:
    """`name` as a record's key: a TLS name as sipua connects to it, a DNS host name or an IP
    address (IPv6 without brackets), read by `sipua.hostport`, the one reader of hosts.

    Raises:
        StoreError: `name` is neither; the message says what to give.
    """
    if not is_valid_host(name):
        raise StoreError(
            f"{name[:60]!r} is not a host name or IP address; give the registrar's TLS name, "
            "e.g. sip.example.com, 192.0.2.1 or 2001:db8::1 (IPv6 without brackets)"
        )
    return name.lower()


def parse_known_keys(data: bytes, *, source: str) -> dict[str, str]:
    """The name -> pin records of a known-keys file.

    Raises:
        KnownKeysError: not UTF-8 text, a malformed line, a repeated name, or too many lines.
            A line whose name is no host sipua can connect to is passed over (it matches no
            lookup); a bracketed IPv6 name is read without its brackets.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KnownKeysError(
            f"{source} is not UTF-8 text; remove it (sipua re-learns the keys)"
        ) from None
    records: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source} line {number}"
        if len(line) > MAX_LINE_CHARS:
            raise KnownKeysError(f"{where} is longer than {MAX_LINE_CHARS} characters")
        parts = line.split()
        if len(parts) != 2:
            raise KnownKeysError(
                f"{where}: expected 'NAME sha256/BASE64', found {len(parts)} fields; fix or "
                "delete the line"
            )
        name, pin = parts
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]  # an IPv6 name as earlier releases could write it
        if not is_valid_host(name):
            # Earlier releases recorded any name (`accept-key sip_proxy.example.com ...`); no
            # TLS name sipua connects to can be it, so the line matches nothing: it is passed
            # over rather than refusing every record of the file.
            continue
        try:
            parse_pin(pin)
        except ValueError as exc:
            raise KnownKeysError(f"{where}: {exc}") from None
        key = name.lower()
        if key in records:
            raise KnownKeysError(f"{where}: {name} is listed twice; delete one line")
        records[key] = pin
        if len(records) > MAX_KNOWN_KEYS:
            raise KnownKeysError(f"{source} lists more than {MAX_KNOWN_KEYS} names")
    return records


def format_known_keys(records: dict[str, str]) -> bytes:
    """The file text for `records` (what `parse_known_keys` reads back)."""
    lines = ["# sipua known registrar keys: NAME sha256/BASE64 (RFC 7469 SPKI pin)"]
    lines.extend(f"{name} {pin}" for name, pin in sorted(records.items()))
    return ("\n".join(lines) + "\n").encode("utf-8")


class KnownKeys:
    """The keys trust on first use recorded, on disk.

    Args:
        directory: The certificate store's directory (shared lock).
    """

    def __init__(self, directory: StoreDirectory) -> None:
        self._dir = directory

    @property
    def path(self) -> Path:
        """The known-keys file."""
        return self._dir.path / KNOWN_KEYS_FILE

    def accept_command(self, name: str, pin: str) -> str:
        """The command that accepts `pin` as the key of `name` in this store (what a refused
        changed key suggests): `sipua cert accept-key [--data-dir DIR] NAME PIN`."""
        return cert_command(self._dir.path.parent, "accept-key", name, pin)

    def records(self) -> dict[str, str]:
        """Every name and its recorded pin.

        Raises:
            KnownKeysError: the file is corrupt (the message says which line).
            StoreError: it cannot be read.
        """
        path = self.path
        if not path.exists():
            return {}
        # Whoever can write this file decides which registrar keys are accepted.
        check_not_writable_by_others(self._dir.path)
        check_not_writable_by_others(path)
        return parse_known_keys(storage.read_bounded(path), source=str(path))

    def lookup(self, name: str) -> str | None:
        """The pin recorded for `name`, or None."""
        return self.records().get(name.lower())

    def record(self, name: str, pin: str) -> None:
        """Records the first key met for `name`; a key recorded meanwhile is kept.

        Raises:
            KnownKeysError: the file is corrupt.
            StoreError: `name` is not a host name or IP address.
        """
        key = _checked_name(name)
        with self._dir.locked():
            records = self.records()
            records.setdefault(key, pin)
            self._write(records)

    def accept(self, name: str, pin: str) -> str | None:
        """Records `pin` for `name`, replacing any earlier key; returns the earlier one.

        Raises:
            KnownKeysError: the file is corrupt.
            StoreError: `name` is not a host name or IP address.
            ValueError: `pin` is not an RFC 7469 pin.
        """
        key = _checked_name(name)
        parse_pin(pin)
        with self._dir.locked():
            records = self.records()
            before = records.get(key)
            records[key] = pin.strip()
            self._write(records)
        return before

    def forget(self, name: str) -> str:
        """Removes the record of `name`; returns its pin.

        Raises:
            StoreError: nothing is recorded for `name`.
        """
        with self._dir.locked():
            records = self.records()
            pin = records.pop(name.lower(), None)
            if pin is None:
                raise StoreError(
                    f"no key is recorded for {name!r} in {self.path}; "
                    f"`{cert_command(self._dir.path.parent, 'list')}` shows the recorded ones"
                )
            self._write(records)
        return pin

    def _write(self, records: dict[str, str]) -> None:
        storage.ensure_private_dir(self._dir.path)
        storage.atomic_write(self.path, format_known_keys(records))
