"""The command-line flags of the settings, built from their declarations.

Every flag comes from a setting's declaration (`sipua.settings.model.SETTINGS`): its name, help,
placeholder, choices and kind (a value, a `--x/--no-x` switch, a repeatable list). `sipua
register`, `call` and `load` take them all (`add_common_flags`); `sipua cert` subcommands take
the few they need (`add_setting_flags`), so that a flag means the same wherever it appears.

The flag names are a contract: scripts and CI jobs call sipua with them, so they are only ever
added to, never renamed. Every flag defaults to "not given" (None), so that the loader can tell
a flag that was left out (the environment or file decides) from one set to the default value.

This module imports only the standard library and the declarations at import time: `sipua
register --help` builds the parser and must stay fast. The loader is imported when settings are
actually read.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from sipua.settings.model import CERTIFICATES_GROUP, SETTINGS
from sipua.settings.schema import Setting
from sipua.settings.values import choices_of

if TYPE_CHECKING:
    from sipua.settings.load import Override
    from sipua.settings.model import Settings

#: The `--help` groups of the common flags, in order, with their descriptions.
_GROUPS: Final[Mapping[str, str | None]] = {
    "configuration": None,
    "account": "without --config these alone define the account to register",
    "TLS and trust policy": None,
    CERTIFICATES_GROUP: "key continuity, expiry and provisioning",
    "listener": None,
    "media": None,
    "output": None,
}
#: The group of a setting that does not name one: its section's.
_SECTION_GROUPS: Final[Mapping[str, str]] = {
    "": "output",
    "account": "account",
    "tls": "TLS and trust policy",
    "listen": "listener",
    "media": "media",
    "certificates": CERTIFICATES_GROUP,
}
#: Flags that cannot be given together (one says where to listen, the other not to).
_EXCLUSIVE: Final = frozenset({"listen.address", "listen.enabled"})
#: The namespace attribute listing the settings whose flags a parser has: only those are read
#: back, so a command's own argument that happens to share a name (`accept-key NAME PIN`) is
#: never taken for a setting.
_ADDED: Final = "sipua_setting_flags"


class _RefusePassword(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        from sipua.cli import exit_with_error

        exit_with_error(
            "--password is not supported: other users can read command lines; put the "
            "password in a file for --password-file FILE, or in SIPUA_PASSWORD"
        )


def _flag_help(declared: Setting, *, env: bool) -> str:
    """The declared help, with the default and the environment variable that also sets it."""
    shown = None if declared.kind == "off" else declared.default_text()
    notes = [f"default: {shown}"] if shown is not None else []
    if env and declared.env is not None:
        notes.append(f"env {declared.env}")
    text = f"do not {declared.help}" if declared.kind == "off" else declared.help
    return f"{text} ({'; '.join(notes)})" if notes else text


def _add_flag(
    container: argparse._ActionsContainer,
    declared: Setting,
    help_text: str | None = None,
    *,
    env: bool = True,
) -> None:
    """Adds the flag of one declared setting (which must have one)."""
    assert declared.flag is not None
    added: tuple[str, ...] = container.get_default(_ADDED) or ()
    container.set_defaults(**{_ADDED: (*added, declared.key)})
    options: dict[str, Any] = {
        "dest": declared.dest,
        "help": help_text or _flag_help(declared, env=env),
    }
    if declared.kind == "switch":
        options["action"] = argparse.BooleanOptionalAction
    elif declared.kind in ("on", "off"):
        options.update(action="store_const", const=declared.kind == "on")
    else:
        if declared.kind == "append":
            options["action"] = "append"
        choices = choices_of(declared.parse)
        if choices is not None:
            options["choices"] = choices
        elif declared.metavar is not None:
            options["metavar"] = declared.metavar
    container.add_argument(declared.flag, **options)


def add_selector_flags(container: argparse._ActionsContainer, *, account: bool = True) -> None:
    """Adds `--config` (and `--account`): what the loader reads, rather than a setting."""
    container.add_argument(
        "--config",
        metavar="FILE",
        help="TOML configuration file (see config/sipua.example.toml); env SIPUA_CONFIG",
    )
    if account:
        container.add_argument(
            "--account",
            metavar="NAME",
            help="use only this account of the file (or name the account the flags define); "
            "env SIPUA_ACCOUNT",
        )


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """Adds every setting's flag, in groups, and `--config` and `--account`, to `parser`.

    Args:
        parser: The command's parser (`sipua register`, `sipua call`, `sipua load`).
    """
    groups = {title: parser.add_argument_group(title, text) for title, text in _GROUPS.items()}
    add_selector_flags(groups["configuration"])
    exclusive = groups["listener"].add_mutually_exclusive_group()
    for declared in SETTINGS:
        if declared.flag is None:
            continue
        group = groups[declared.group or _SECTION_GROUPS[declared.section]]
        _add_flag(exclusive if declared.key in _EXCLUSIVE else group, declared)
    # No flag takes the password itself: any user can read a process's arguments (ps,
    # /proc/PID/cmdline). `--password` exists only to refuse clearly, without echoing the value,
    # and so that argparse does not take it as an abbreviation of --password-file.
    groups["account"].add_argument("--password", action=_RefusePassword, help=argparse.SUPPRESS)


def add_setting_flags(
    container: argparse._ActionsContainer,
    keys: Iterable[str],
    *,
    help_texts: Mapping[str, str] | None = None,
    env: bool = True,
) -> None:
    """Adds the flags of a few settings, for a command that takes only those.

    Args:
        container: The parser or group.
        keys: The settings' dotted keys (`tls.only_trusted`), in the order to list them.
        help_texts: Help worded for this command, by key, instead of the declared help.
        env: Whether the command also reads the settings' environment variables (the help
            names them).
    """
    by_key = {declared.key: declared for declared in SETTINGS}
    for key in keys:
        _add_flag(container, by_key[key], (help_texts or {}).get(key), env=env)


def overrides_from_args(args: argparse.Namespace) -> list[Override]:
    """Turns the flags that were given into loader overrides (flags left out are skipped).

    Args:
        args: Parsed arguments of a parser with settings flags (`add_common_flags`,
            `add_setting_flags`).
    """
    from sipua.settings.load import Override

    added = frozenset(getattr(args, _ADDED, ()))
    overrides: list[Override] = []
    for declared in SETTINGS:
        if declared.key not in added:
            continue
        value = getattr(args, declared.dest, None)
        if value is not None:
            overrides.append(Override(declared.key, value, declared.where_flag))
    return overrides


def settings_from_args(
    args: argparse.Namespace,
    env: Mapping[str, str] = os.environ,
    *,
    require_account: bool = True,
) -> Settings:
    """Loads the settings the command line asks for: file, then environment, then flags.

    Args:
        args: Parsed arguments of a parser with settings flags.
        env: The environment (`SIPUA_*` variables, and `password_env` lookups).
        require_account: Fail unless at least one account results (`register` needs one).

    Returns:
        The settings; with `--account`, `accounts` holds only that account.

    Raises:
        ConfigError: A flag, variable or the file is wrong, or no account is configured.
    """
    from sipua.errors import ConfigError
    from sipua.settings.load import load_settings

    settings = load_settings(
        getattr(args, "config", None),
        env=env,
        overrides=overrides_from_args(args),
        account=getattr(args, "account", None),
    )
    if require_account and not settings.accounts:
        raise ConfigError(
            "no account to use: pass --aor sips:USER@DOMAIN (with --password-file FILE), "
            "or --config FILE with an [[accounts]] table"
        )
    return settings
