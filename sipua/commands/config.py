"""`sipua config`: import a desk phone's provisioning file, list the settings.

`sipua config import FILE.cfg --out FILE.toml`: a desk phone's provisioning file as sipua's TOML.

The security keys (only accept trusted certificates, CN validation, the certificate URLs and
their delete counterparts) and the account keys (server address, port, transport, user and
auth names, expiry, enable) are translated (`sipua.settings.phone`); a password goes to an
owner-only file next to the TOML (`password_file`), never into it. Keys sipua does not use
are listed, and keys whose value map is not confirmed are refused with what to set instead.
Every file the import would write is checked first (a directory is refused; an existing TOML
or password file needs `--force`), the result is loaded back before anything is written, each
file is written atomically, and when a write fails the files written before it are put back:
a failed import leaves the disk as it was.

`sipua config settings [--markdown]`: every setting with its configuration file key,
environment variable, flag, default and help, from the settings' declarations
(`sipua.settings.model.SETTINGS`); `docs/settings.md` is its Markdown output.

Exit codes: 0 written (or listed); 2 the phone file, or the configuration it makes, is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from sipua.settings.phone import Imported


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds the `config` subcommands."""
    sub = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    imp = sub.add_parser(
        "import",
        help="translate a phone auto-provisioning file (.cfg) into sipua's TOML",
        description="translate a phone auto-provisioning file (.cfg) into sipua's TOML",
    )
    imp.add_argument("file", type=Path, metavar="FILE.cfg")
    imp.add_argument("--out", type=Path, required=True, metavar="FILE.toml")
    imp.add_argument(
        "--force",
        action="store_true",
        help="replace existing files: the --out file and its password files",
    )
    listing = sub.add_parser(
        "settings",
        help="list every setting: file key, environment variable, flag, default",
        description="list every setting: file key, environment variable, flag, default",
    )
    listing.add_argument(
        "--markdown", action="store_true", help="as a Markdown table (docs/settings.md)"
    )


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # A JSON string of printable text is a valid TOML basic string.
    return json.dumps(str(value), ensure_ascii=True)


def settings_table(*, markdown: bool) -> list[str]:
    """The lines of `sipua config settings`: one entry per declared setting."""
    from sipua.settings.model import SETTINGS

    lines = (
        [
            "| setting | environment | flag | default | what it does |",
            "|---|---|---|---|---|",
        ]
        if markdown
        else []
    )
    for declared in SETTINGS:
        if not declared.file:
            name = f"{declared.key} (not in the file)"
        elif declared.section == "account":
            name = f"accounts[].{declared.name}"
        else:
            name = declared.key
        flag = declared.where_flag.replace("/", " / ") if declared.flag else ""
        default = "required" if declared.required and declared.unset is None else ""
        default = declared.default_text() or default
        if markdown:
            cells = [f"`{name}`" if declared.file else f"`{declared.key}` (not in the file)"]
            cells += [f"`{cell}`" if cell else "" for cell in (declared.env, flag)]
            cells += [default, declared.help]
            lines.append("| " + " | ".join(cells) + " |")
        else:
            where = "  ".join(part for part in (declared.env, flag) if part)
            shown = f"  (default: {default})" if default else ""
            lines.append(f"{name}  {where}{shown}")
            lines.append(f"    {declared.help}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Runs `sipua config import` or `sipua config settings`."""
    if args.config_command == "settings":
        print("\n".join(settings_table(markdown=args.markdown)))
        return 0
    return _import(args)


def _refusal(message: str, trial: Path, source: str, imported: Imported) -> str:
    """A load-back error in the phone file's terms.

    It names the `.cfg` and its account (`account.N`) instead of the scratch copy of the TOML,
    which the user never sees; the TOML's own place (`accounts[0].proxy`) is kept after it.
    """
    detail = message.removeprefix(f"{trial}: ").replace(f"{trial.parent}{os.sep}", "")
    match = re.match(r"accounts\[(\d{1,4})\]", detail)
    if match is not None and int(match[1]) < len(imported.accounts):
        account = imported.accounts[int(match[1])]
        return f"{source}: account.{account.index} makes a configuration sipua refuses: {detail}"
    return f"{source}: the configuration it makes is refused: {detail}"


class _Target(NamedTuple):
    """A file the import writes: the TOML or an account's password file."""

    path: Path
    data: bytes
    mode: int


def _check_targets(paths: list[Path], *, force: bool) -> None:
    """Refuses, before anything is written, a target that cannot or may not be written.

    Raises:
        ConfigError: a target is a directory (or another non-file), its directory is missing,
            or it exists and `force` is off; the message names every such file.
    """
    from sipua.errors import ConfigError

    for path in paths:
        if path.is_dir():
            raise ConfigError(f"cannot write {path}: it is a directory")
        if path.exists() and not path.is_file():
            raise ConfigError(f"cannot write {path}: it is not a regular file")
        if not path.parent.is_dir():
            raise ConfigError(f"cannot write {path}: no directory {path.parent}")
    existing = [str(path) for path in paths if path.exists()]
    if existing and not force:
        if len(existing) == 1:
            raise ConfigError(f"{existing[0]} exists; pass --force to replace it")
        raise ConfigError(f"{', '.join(existing)} exist; pass --force to replace them")


def _write_all(targets: list[_Target]) -> None:
    """Writes every target atomically, or none.

    After a failed write, each file written before it is put back as it was (its old contents
    and mode) or removed if it is new, so a failed import leaves the disk as it was.

    Raises:
        StoreError: a file could not be written (or an existing one read beforehand); the
            message also names any file that could not be put back.
    """
    from sipua import storage
    from sipua.errors import StoreError

    before: dict[Path, _Target | None] = {}
    for target in targets:
        exists = target.path.exists()
        before[target.path] = (
            _Target(
                target.path,
                storage.read_bounded(target.path),
                stat.S_IMODE(target.path.stat().st_mode),
            )
            if exists
            else None
        )
    written: list[Path] = []
    try:
        for target in targets:
            storage.atomic_write(target.path, target.data, mode=target.mode)
            written.append(target.path)
    except StoreError as exc:
        stuck: list[str] = []
        for path in reversed(written):
            old = before[path]
            try:
                if old is None:
                    storage.remove_file(path)
                else:
                    storage.atomic_write(path, old.data, mode=old.mode)
            except StoreError as undo:
                stuck.append(str(undo))
        if stuck:
            raise StoreError(
                f"{exc}; the files written before it could not all be put back: " + "; ".join(stuck)
            ) from exc
        raise


def _import(args: argparse.Namespace) -> int:
    import tempfile

    from sipua import storage
    from sipua.errors import ConfigError, StoreError
    from sipua.settings.load import load_settings
    from sipua.settings.phone import parse_phone_config, translate

    source = str(args.file)
    try:
        data = storage.read_bounded(args.file)
    except StoreError as exc:
        raise ConfigError(str(exc)) from None
    imported = translate(parse_phone_config(data, source=source), source=source)
    out: Path = args.out
    lines = [f"# Imported by `sipua config import` from {args.file.name}.", ""]
    for section, values in imported.sections.items():
        if values:
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {_toml(value)}" for key, value in values.items())
            lines.append("")
    secrets: dict[str, bytes] = {}
    for account in imported.accounts:
        lines.append(f"# account.{account.index} of the phone file")
        lines.append("[[accounts]]")
        lines.append(f"name = {_toml(account.name)}")
        lines.append(f"aor = {_toml(account.aor)}")
        lines.append(f"username = {_toml(account.username)}")
        if account.proxy is not None:
            lines.append(f"proxy = {_toml(account.proxy)}")
        if account.expires is not None:
            lines.append(f"expires = {account.expires}")
        lines.append(f"register = {_toml(account.register)}")
        if account.password is not None:
            secret_name = f"{out.stem}.{account.name}.password"
            secrets[secret_name] = account.password.encode("utf-8") + b"\n"
            lines.append(f"password_file = {_toml(secret_name)}  # owner-only (0600)")
        lines.append("")
    text = "\n".join(lines).encode("utf-8")
    targets = [
        _Target(out.parent / name, secret, storage.PRIVATE_FILE_MODE)
        for name, secret in secrets.items()
    ]
    targets.append(_Target(out, text, storage.PUBLIC_FILE_MODE))
    _check_targets([target.path for target in targets], force=args.force)
    # Loaded back before anything is written: what is written is what sipua accepts.
    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / out.name
        trial.write_bytes(text)
        for name, secret in secrets.items():
            storage.atomic_write(Path(tmp) / name, secret, mode=storage.PRIVATE_FILE_MODE)
        try:
            load_settings(trial, env={})
        except ConfigError as exc:
            raise ConfigError(_refusal(str(exc), trial, source, imported)) from None
    _write_all(targets)
    print(f"wrote {out}: {len(imported.accounts)} account(s)")
    for name in secrets:
        print(f"password written to {out.parent / name} (mode 0600), not to the TOML")
    for refusal in imported.refused:
        print(f"not imported: {refusal}", file=sys.stderr)
    if imported.unused:
        shown = ", ".join(imported.unused[:50])
        more = f" and {len(imported.unused) - 50} more" if len(imported.unused) > 50 else ""
        print(f"not used by sipua ({len(imported.unused)}): {shown}{more}", file=sys.stderr)
    return 0
