"""How a setting is declared: once, on its model field, with everything derived from it.

Each field of the settings model (`sipua.settings.model`) is declared once, as
`field(default=..., metadata=declare(...))`: its type and default (the dataclass field), its
parser (`sipua.settings.values`), a one-line help, and where else a user may give it: the
`SIPUA_*` environment variable, the command-line flag, a desk phone's provisioning key. From
these declarations come the configuration file's keys and their checks (`sipua.settings.load`),
the environment variables read, the flags of every command that takes settings
(`sipua.settings.flags`), the phone keys `sipua config import` translates
(`sipua.settings.phone`), and `sipua config settings`.

A few things a user can give are not one field but a way of giving one (a password from a
file, the listener's `HOST:PORT`); they are declared beside the model (`ALTERNATIVES`) with a
`key` of their own.

Standard library only: the flags are built from these declarations on the `--help` path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from sipua.settings.values import Parser

#: How a flag takes its value: `value` (`--expires 300`), `switch` (`--x` / `--no-x`), `on`
#: (`--trace` sets true; no way to set false), `off` (`--no-listen` sets false), `append`
#: (`--pin P --pin Q`: the list replaces the lower layers' list).
FlagKind = Literal["value", "switch", "on", "off", "append"]

#: The metadata key of a declared dataclass field.
_METADATA: Final = "sipua.setting"


@dataclass(frozen=True, slots=True, kw_only=True)
class PhoneKey:
    """A desk phone's auto-provisioning key that carries a setting (`sipua config import`).

    Attributes:
        key: The phone's key, e.g. `static.security.trust_certificates`.
        values: The phone's values and what each means for the setting (`{"0": False, "1":
            True}`); None takes the phone's text as the value. Another value is refused.
        confirmed: Whether the public admin guides confirm the value map. An unconfirmed key
            is refused at import (with this setting to set instead), never guessed at.
    """

    key: str
    values: Mapping[str, object] | None = None
    confirmed: bool = True


#: The value map of the phone's on/off keys.
PHONE_SWITCH: Final[Mapping[str, object]] = {"0": False, "1": True}


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """One setting: what it takes, and every way a user can give it.

    Attributes:
        parse: Reads a raw value (typed from the file, text from the environment and flags)
            into the model's value, or raises `values.Invalid` saying what was expected.
        help: One line for `--help` and `sipua config settings` (the default is added).
        env: The environment variable, `SIPUA_...`; None when there is none.
        flag: The command-line flag, `--...`; None when there is none.
        kind: How the flag takes its value (`FlagKind`).
        metavar: The flag's value placeholder in `--help`.
        group: The `--help` group the flag is listed in; "" for its section's group.
        unset: What a default of None means, for `--help` ("random 95-120 s").
        phone: Phone provisioning keys that carry this setting.
        file: Whether the configuration file takes it (as `key`'s last part, in its section).
        key: The dotted setting name (`tls.only_trusted`, `account.expires`, `data_dir`); the
            file's section is the part before the dot (`[tls]`, `[[accounts]]`).
        default: The model's default (a callable for a computed one).
        required: The model has no default: the setting must be given (or is derived).
    """

    parse: Parser
    help: str
    env: str | None = None
    flag: str | None = None
    kind: FlagKind = "value"
    metavar: str | None = None
    group: str = ""
    unset: str | None = None
    phone: tuple[PhoneKey, ...] = ()
    file: bool = True
    key: str = ""
    default: object = None
    required: bool = False

    @property
    def section(self) -> str:
        """The part of `key` before the dot (`tls`, `account`), "" for a top-level setting."""
        return self.key.rpartition(".")[0]

    @property
    def name(self) -> str:
        """The key within its section: the file's key and the model's attribute."""
        return self.key.rpartition(".")[2]

    @property
    def where_flag(self) -> str:
        """The flag as error messages name it: `--only-trusted/--no-only-trusted` for a switch."""
        assert self.flag is not None
        if self.kind == "switch":
            return f"{self.flag}/--no-{self.flag.removeprefix('--')}"
        return self.flag

    @property
    def dest(self) -> str:
        """The flag's attribute on argparse's namespace (`--tls-name` -> `tls_name`)."""
        assert self.flag is not None
        return self.flag.removeprefix("--").replace("-", "_")

    def default_text(self) -> str | None:
        """The default as `--help` shows it, or None when there is nothing to show."""
        default = self.default
        if default is None or self.required:
            return self.unset
        if isinstance(default, bool):
            return "on" if default else "off"
        if callable(default):
            return self.unset
        if isinstance(default, tuple):
            return "-".join(map(str, default)) if default else None
        return f"{default:g}" if isinstance(default, float) else str(default)


def declare(parse: Parser, *, help: str, **more: Any) -> Mapping[str, Setting]:  # noqa: A002
    """Declares a model field as a setting: `field(default=..., metadata=declare(...))`.

    The field keeps its type and default (or `default_factory`, or none for a required one);
    this adds the parser, the help, and the other `Setting` attributes given in `more`
    (`env`, `flag`, `kind`, `metavar`, `group`, `unset`, `phone`, `file`).
    """
    return {_METADATA: Setting(parse=parse, help=help, **more)}


def declared(cls: type, section: str) -> Iterator[Setting]:
    """The settings declared on the fields of the dataclass `cls`, in field order.

    Args:
        cls: A settings model class.
        section: The section the fields sit in (`tls`, `account`), "" for top-level ones.
    """
    for model_field in dataclasses.fields(cls):
        declaration = model_field.metadata.get(_METADATA)
        if declaration is None:
            continue
        default: object = model_field.default
        if model_field.default_factory is not dataclasses.MISSING:
            default = model_field.default_factory
        required = default is dataclasses.MISSING
        key = f"{section}.{model_field.name}" if section else model_field.name
        yield dataclasses.replace(
            declaration, key=key, default=None if required else default, required=required
        )
