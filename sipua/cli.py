"""The `sipua` command line: parse arguments, dispatch to a command, render errors.

Start-up time matters (CI runs `sipua` many times), so this module imports only the standard
library. Each command lives in `sipua.commands.<name>` and is imported only when it runs; the
command's own module keeps heavy imports (trio, OpenSSL) inside its `run` function, so that
`sipua <command> --help` stays fast too.

A command module provides:

    def configure(parser: argparse.ArgumentParser) -> None   # add its arguments
    def run(args: argparse.Namespace) -> int                 # do the work, return the exit code

Errors: a `SipuaError` from a command is printed as one line, `sipua: error: <message>`
(`ERROR_PREFIX`), and its `exit_code` is returned; a flag refused while parsing says so the same
way (`exit_with_error`). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Final, NoReturn, Protocol, cast

from sipua import __version__

#: How every error sipua reports starts (one line on standard error).
ERROR_PREFIX: Final = "sipua: error: "

# name -> (module, one-line help). The order is the order of `sipua --help`.
COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "register": ("sipua.commands.register", "register an account over TLS and report the lock"),
    "call": ("sipua.commands.call", "place a call over TLS through the registrar"),
    "cert": ("sipua.commands.cert", "manage trusted and device certificates"),
    "load": ("sipua.commands.load", "register many accounts at once and measure"),
    "config": (
        "sipua.commands.config",
        "import a desk phone's provisioning file (.cfg), list the settings",
    ),
}


class _Command(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...
    def run(self, args: argparse.Namespace) -> int: ...


def _load(name: str) -> _Command:
    module_name, _ = COMMANDS[name]
    return cast(_Command, importlib.import_module(module_name))


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    """Builds the parser; only the `selected` command's module is imported to add its flags."""
    parser = argparse.ArgumentParser(
        prog="sipua",
        allow_abbrev=False,
        description="A SIPS (SIP over TLS) user agent.",
        epilog="Exit codes: 0 ok, 2 usage/config, 3 TLS/certificate, 4 refused, 5 network, "
        "6 call not answered, 7 call without media.",
    )
    parser.add_argument("--version", action="version", version=f"sipua {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        # No abbreviations: a flag added later must never change what an old script meant
        # (an abbreviated --password could otherwise match --password-file).
        command_parser = sub.add_parser(
            name, help=help_text, description=help_text, allow_abbrev=False
        )
        if name == selected:
            _load(name).configure(command_parser)
    return parser


def exit_with_error(message: str, code: int = 2) -> NoReturn:
    """Prints `message` as sipua prints every error and exits with `code` (usage error: 2).

    For refusals while the arguments are parsed (before a command runs), where argparse would
    print its usage and a different prefix.
    """
    print(f"{ERROR_PREFIX}{message}", file=sys.stderr)
    raise SystemExit(code)


def _selected_command(argv: Sequence[str]) -> str | None:
    # The first word that names a command selects it; flags before it belong to sipua itself.
    for word in argv:
        if word in COMMANDS:
            return word
        if not word.startswith("-"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line and returns the process exit status."""
    if argv is None:
        argv = sys.argv[1:]
    selected = _selected_command(argv)
    parser = build_parser(selected)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # Imported here, not at the top, to keep it out of the --help path.
    from sipua.errors import SipuaError

    try:
        return _load(args.command).run(args)
    except SipuaError as exc:
        print(f"{ERROR_PREFIX}{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
