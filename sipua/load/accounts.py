"""The accounts of `sipua load`: a user-name pattern or a CSV file, turned into a bounded list.

A pattern is literal text with at most one numeric range in braces, shell style:
``load{0000..1999}`` is load0000 ... load1999; the width of the lower bound (leading zeros)
pads every number. A CSV file has a header row naming its columns: ``username`` (required),
``password`` and ``aor`` (both optional: the password defaults to `--password-file`, the AOR to
``sips:USERNAME@DOMAIN``). Passwords stay inside `Secret` values from the moment they are read.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sipua.errors import ConfigError
from sipua.settings.secret import Secret
from sipua.settings.values import aor_parts

#: The most accounts one `sipua load` process takes (each is a TLS connection at most).
MAX_ACCOUNTS: Final = 100_000
#: A CSV account file larger than this is refused before reading (about 100 bytes a line).
MAX_CSV_BYTES: Final = 16 * 1024 * 1024

_RANGE: Final = re.compile(r"\{(\d{1,9})\.\.(\d{1,9})\}")
_USER_CHARS: Final = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]{1,128}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadAccount:
    """One account of a load run.

    Attributes:
        aor: The address of record, a `sips:` URI.
        username: The digest user name.
        password: The digest password (masked in every repr), or None.
    """

    aor: str
    username: str
    password: Secret | None


def expand_users(pattern: str) -> list[str]:
    """The user names a pattern stands for (``load{0000..1999}`` -> load0000 ... load1999).

    Args:
        pattern: Literal text with at most one ``{LOW..HIGH}`` range; no range is one user.

    Returns:
        The names in order.

    Raises:
        ConfigError: The pattern has more than one range, a range going down, more than
            `MAX_ACCOUNTS` names, or characters a SIP user part cannot carry.
    """
    ranges = list(_RANGE.finditer(pattern))
    if len(ranges) > 1:
        raise ConfigError(
            f"--users {pattern!r}: only one {{LOW..HIGH}} range is supported; use a CSV file "
            "(--accounts FILE) for other shapes"
        )
    if not ranges:
        names = [pattern]
    else:
        match = ranges[0]
        low_text, high_text = match.group(1), match.group(2)
        low, high = int(low_text), int(high_text)
        if high < low:
            raise ConfigError(f"--users {pattern!r}: the range {low}..{high} goes down")
        if high - low + 1 > MAX_ACCOUNTS:
            raise ConfigError(
                f"--users {pattern!r}: {high - low + 1} accounts; at most {MAX_ACCOUNTS}"
            )
        width = len(low_text)
        head, tail = pattern[: match.start()], pattern[match.end() :]
        names = [f"{head}{n:0{width}d}{tail}" for n in range(low, high + 1)]
    for name in (names[0], names[-1]):
        if not _USER_CHARS.fullmatch(name):
            raise ConfigError(
                f"--users {pattern!r}: {name!r} is not a valid SIP user name "
                "(letters, digits and -_.!~*'() etc., at most 128 characters)"
            )
    return names


def pattern_accounts(pattern: str, *, domain: str, password: Secret | None) -> list[LoadAccount]:
    """Accounts ``sips:USER@DOMAIN`` for every user of `pattern`, all with one password.

    Raises:
        ConfigError: The pattern or domain is unusable (see `expand_users`).
    """
    _check_domain(domain)
    return [
        LoadAccount(aor=f"sips:{user}@{domain}", username=user, password=password)
        for user in expand_users(pattern)
    ]


def csv_accounts(path: Path, *, domain: str | None, password: Secret | None) -> list[LoadAccount]:
    """Reads accounts from a CSV file with a header row (``username[,password][,aor]``).

    Args:
        path: The file.
        domain: The domain for rows without an ``aor`` column value.
        password: The password for rows without a ``password`` value.

    Raises:
        ConfigError: The file cannot be read, has no ``username`` column, a row lacks what it
            needs, or it holds more than `MAX_ACCOUNTS` rows. Messages name the file and line;
            they never quote a password.
    """
    try:
        size = path.stat().st_size
        if size > MAX_CSV_BYTES:
            raise ConfigError(f"accounts file {path}: {size} bytes; at most {MAX_CSV_BYTES}")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"accounts file {path}: cannot read it ({exc.strerror or exc}); check the path"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"accounts file {path}: not UTF-8 text") from exc
    reader = csv.DictReader(text.splitlines())
    columns = {c.strip().lower() for c in reader.fieldnames or ()}
    if "username" not in columns:
        raise ConfigError(
            f"accounts file {path}: the first row must name the columns, with at least "
            "'username' (and optionally 'password', 'aor')"
        )
    if domain is not None:
        _check_domain(domain)
    accounts: list[LoadAccount] = []
    for row in reader:
        line = reader.line_num
        values = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        user = values.get("username", "")
        if not user:
            raise ConfigError(f"accounts file {path}, line {line}: empty username")
        if not _USER_CHARS.fullmatch(user):
            raise ConfigError(f"accounts file {path}, line {line}: {user!r} is not a user name")
        aor = values.get("aor") or None
        if aor is None:
            if domain is None:
                raise ConfigError(
                    f"accounts file {path}, line {line}: no aor; add an 'aor' column or "
                    "pass --domain"
                )
            aor = f"sips:{user}@{domain}"
        elif not aor.startswith("sips:"):
            raise ConfigError(
                f"accounts file {path}, line {line}: aor {aor[:80]!r} is not a sips: URI"
            )
        else:
            try:
                aor_parts(aor)
            except ValueError as exc:
                detail = str(exc).removeprefix("expected ")
                raise ConfigError(
                    f"accounts file {path}, line {line}: aor {aor[:80]!r}: expected {detail}"
                ) from None
        secret = Secret(values["password"]) if values.get("password") else password
        accounts.append(LoadAccount(aor=aor, username=user, password=secret))
        if len(accounts) > MAX_ACCOUNTS:
            raise ConfigError(f"accounts file {path}: more than {MAX_ACCOUNTS} accounts")
    if not accounts:
        raise ConfigError(f"accounts file {path}: no account rows after the header")
    return accounts


def _check_domain(domain: str) -> None:
    if not domain or any(c in domain for c in ' @;<>"/\\') or len(domain) > 253:
        raise ConfigError(f"--domain {domain[:80]!r} is not a domain name (e.g. example.test)")
