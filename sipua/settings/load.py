"""Loading settings: a TOML file, then `SIPUA_*` environment variables, then command-line flags.

Theory of operation. Each source is turned into validated values keyed by a dotted setting name
(`expires` of an account is `account.expires`, the TLS floor is `tls.min_version`), each value
remembering where it came from (`config.toml: accounts[0].expires`, `SIPUA_EXPIRES`,
`--expires`). The layers are then laid over the model's defaults in precedence order:

    command-line flags  >  environment  >  configuration file  >  defaults (model.py)

so every error can name the file, variable or flag, the key, what was expected and what was
found. The file is strict: an unknown key is an error with a did-you-mean, because a typo such
as `only_trused = false` silently ignored would weaken the trust policy.

Account-level values from the environment and flags (`--aor`, `--expires`, ...) apply to one
account: the one `--account NAME` (or `SIPUA_ACCOUNT`) selects, else the file's only account, else
a new account made from the flags alone (so `--aor`, `--username` and `--password-file` are
enough to register without a file). With a selection, only that account is returned.

Lists from a higher layer replace, not extend, the lower layer's list (`--trusted-cert` replaces
`tls.trusted_certs` from the file): what the command line says is what runs.

Passwords come from `password_file`, `password_env` or a literal `password` in the file (allowed,
with a warning when the file is world-readable); from `SIPUA_PASSWORD` or `SIPUA_PASSWORD_FILE`;
and on the command line only as `--password-file`, never as a value (other users can read a
process's arguments). Relative paths in the file are relative to the file's directory; relative
paths from flags and the environment are relative to the working directory.

Every setting's file key, environment variable and flag are declared once, on its model field
(`sipua.settings.model.SETTINGS`); `sipua config settings` lists them. `SIPUA_CONFIG` and
`SIPUA_ACCOUNT` are read here, as `--config` and `--account`: they choose what is read, they
are not settings.

Booleans read from text accept 1/0, true/false, yes/no and on/off.
"""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, Literal, cast

from sipua.errors import ConfigError
from sipua.settings.model import (
    SECTIONS,
    SETTINGS,
    AccountSettings,
    CertificateSettings,
    ListenSettings,
    MediaSettings,
    Settings,
    TlsSettings,
    aor_parts,
    default_data_dir,
    provisioning_url_scheme,
)
from sipua.settings.schema import Setting
from sipua.settings.secret import Secret
from sipua.settings.values import MAX_SHOWN_CHARS, Invalid, Source, describe

#: A configuration file larger than this is the wrong file.
MAX_CONFIG_BYTES: Final = 1024 * 1024
#: At most this many accounts per file (`sipua load` generates its accounts instead).
MAX_ACCOUNTS: Final = 1000

ENV_PREFIX: Final = "SIPUA_"

#: Every setting by its dotted key (`tls.only_trusted`).
BY_KEY: Final[Mapping[str, Setting]] = {declared.key: declared for declared in SETTINGS}
#: Environment variable -> dotted setting name. SIPUA_CONFIG and SIPUA_ACCOUNT are read apart.
ENV_VARS: Final[Mapping[str, str]] = {
    declared.env: declared.key for declared in SETTINGS if declared.env is not None
}
_ENV_SELECTORS: Final = ("SIPUA_CONFIG", "SIPUA_ACCOUNT")
#: The file's keys, section by section ("" for the top level, "account" for [[accounts]]).
_FILE_KEYS: Final[Mapping[str, Mapping[str, Setting]]] = {
    section: {d.name: d for d in SETTINGS if d.section == section and d.file}
    for section in SECTIONS
}
#: The file's tables: [tls], [listen], ... ([[accounts]] is an array of them).
_TABLES: Final = tuple(section for section in SECTIONS if section not in ("", "account"))
_TOP_LEVEL_KEYS: Final = (*_FILE_KEYS[""], *_TABLES, "accounts")


@dataclass(frozen=True, slots=True)
class Override:
    """One setting given by a higher layer than the file (a flag or an environment variable).

    Attributes:
        key: The dotted setting name: `data_dir`, `tls.ca_type`, `listen.address`,
            `account.expires`, ...
        value: The raw value: text (validated and converted by the loader), a bool, or a list
            of text for list settings.
        where: How the user wrote it, for error messages: `--expires`, `SIPUA_EXPIRES`.
    """

    key: str
    value: object
    where: str


def _convert(declared: Setting, value: object, source: Source) -> object:
    try:
        return declared.parse(value, source)
    except Invalid as exc:
        if exc.expected is None:
            raise ConfigError(f"{source.where}: {exc.detail}") from None
        raise ConfigError(
            f"{source.where}: expected {exc.expected}, got {describe(value)}"
        ) from None


def _unknown_key(where: str, key: str, known: Iterable[str]) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else "; known keys: " + ", ".join(sorted(known))
    return ConfigError(f"{where}: unknown setting {key!r}{hint}")


# --- layers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PasswordSource:
    kind: Literal["literal", "file", "env"]
    value: str  # the literal password, a path, or a variable name
    where: str
    path: Path | None = None  # password_file, resolved


@dataclass(slots=True)
class _Values:
    """Validated values of one layer (or of one account), each with where it came from."""

    values: dict[str, object] = field(default_factory=dict)
    wheres: dict[str, str] = field(default_factory=dict)
    password: _PasswordSource | None = None

    def put(self, key: str, value: object, where: str) -> None:
        self.values[key] = value
        self.wheres[key] = where

    def update(self, other: _Values) -> None:
        self.values.update(other.values)
        self.wheres.update(other.wheres)
        if other.password is not None:
            self.password = other.password


@dataclass(slots=True)
class _Layer:
    """The validated values one source (the file, the environment, the flags) gives."""

    general: _Values = field(default_factory=_Values)  # top-level and sections, by dotted key
    account: _Values = field(default_factory=_Values)  # account.* from env/flags, by name
    accounts: list[_Values] = field(default_factory=list)  # from the file
    warnings: list[str] = field(default_factory=list)
    file: Path | None = None  # the configuration file, for the file layer

    def apply(self, declared: Setting, raw: object, source: Source, values: _Values) -> None:
        """Validates one raw value and puts it into `values` (this layer's or an account's).

        The password's three sources and the listener's `HOST:PORT` are the settings that are
        not one field; everything else is the declared parser's value under its key.
        """
        if declared.key.startswith("account.password"):
            values.password = self._password(declared, raw, source, values)
        elif declared.key == "listen.address":
            host, port = cast(tuple[str, int | None], _convert(declared, raw, source))
            values.put("listen.host", host, source.where)
            if port is not None:
                values.put("listen.port", port, source.where)
            values.put("listen.enabled", True, source.where)
        else:
            key = declared.name if declared.section == "account" else declared.key
            values.put(key, _convert(declared, raw, source), source.where)

    def _password(
        self, declared: Setting, raw: object, source: Source, values: _Values
    ) -> _PasswordSource:
        if values.password is not None:
            if source.text:
                raise ConfigError(
                    f"{source.where}: the password is already given by "
                    f"{values.password.where}; give only one"
                )
            raise ConfigError(
                f"{source.where}: set only one of password, password_file and password_env"
            )
        written = cast(str, _convert(BY_KEY["account.password"], raw, source))
        if declared.name == "password_file":
            path = cast(Path, _convert(declared, written, source))
            return _PasswordSource("file", written, source.where, path=path)
        if declared.name == "password_env":
            return _PasswordSource("env", written, source.where)
        if self.file is not None and _is_world_readable(self.file):
            self.warnings.append(
                f"{self.file} holds a password and other users can read it; "
                f"run `chmod o-r {self.file}` or move the password to password_file"
            )
        return _PasswordSource("literal", written, source.where)


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file; check --config") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; is it the right file?")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message gives the line and column, never a value (no secret can leak).
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _is_world_readable(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


def _file_layer(path: Path) -> _Layer:
    document = _read_toml(path)
    base = path.parent.resolve()
    layer = _Layer(file=path)

    def source(where: str) -> Source:
        return Source(where=f"{path}: {where}", text=False, base=base)

    def table(where: str, section: str, items: dict[str, object], values: _Values) -> None:
        known = _FILE_KEYS[section]
        for key, value in items.items():
            if key not in known:
                raise _unknown_key(f"{path}: {where}", key, known)
            layer.apply(known[key], value, source(f"{where}.{key}"), values)

    for key, value in document.items():
        if key in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{path}: {key}: expected a table ([{key}]), got {describe(value)}"
                )
            table(key, key, value, layer.general)
        elif key == "accounts":
            layer.accounts = [_Values() for _ in range(_count_accounts(path, value))]
            for index, account in enumerate(cast(list[dict[str, object]], value)):
                table(f"accounts[{index}]", "account", account, layer.accounts[index])
        elif key in _FILE_KEYS[""]:
            layer.apply(_FILE_KEYS[""][key], value, source(key), layer.general)
        else:
            raise _unknown_key(str(path), key, _TOP_LEVEL_KEYS)
    return layer


def _count_accounts(path: Path, value: object) -> int:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(f"{path}: accounts: expected an array of tables ([[accounts]])")
    if len(value) > MAX_ACCOUNTS:
        raise ConfigError(f"{path}: accounts: more than {MAX_ACCOUNTS} accounts")
    return len(value)


def _override_layer(overrides: Iterable[Override]) -> _Layer:
    layer = _Layer()
    for override in overrides:
        declared = BY_KEY.get(override.key)
        if declared is None:
            raise ValueError(f"unknown setting key {override.key!r} from {override.where}")
        source = Source(where=override.where, text=True, base=None)
        values = layer.account if declared.section == "account" else layer.general
        layer.apply(declared, override.value, source, values)
    return layer


def overrides_from_env(env: Mapping[str, str]) -> tuple[list[Override], list[str]]:
    """Reads the `SIPUA_*` variables the settings declare as overrides.

    Empty variables count as unset, as shells make it easy to export an empty one by mistake.

    Args:
        env: The environment.

    Returns:
        The overrides, and warnings about unknown `SIPUA_*` variables that look like typos of
        known ones (other `SIPUA_` variables are left alone: test scripts use the prefix too).
    """
    overrides: list[Override] = []
    warnings: list[str] = []
    known = (*ENV_VARS, *_ENV_SELECTORS)
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or not value:
            continue
        if name in ENV_VARS:
            overrides.append(Override(ENV_VARS[name], value, name))
        elif name not in _ENV_SELECTORS:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
            if close:
                warnings.append(f"environment variable {name} is not a sipua setting; {close[0]}?")
    return overrides, warnings


# --- resolution --------------------------------------------------------------------------------


def _resolve_password(
    source: _PasswordSource, env: Mapping[str, str], warnings: list[str]
) -> Secret:
    if source.kind == "literal":
        return Secret(source.value)
    try:
        if source.kind == "env":
            return Secret.from_env(source.value, env)
        assert source.path is not None
        secret = Secret.from_file(source.path)
    except ConfigError as exc:
        raise ConfigError(f"{source.where}: {exc}") from None
    if _is_world_readable(source.path):
        warnings.append(
            f"password file {source.path} can be read by other users; run `chmod 600 {source.path}`"
        )
    return secret


def _build_account(
    draft: _Values, env: Mapping[str, str], warnings: list[str], hint: str
) -> AccountSettings:
    values = dict(draft.values)
    aor = values.get("aor")
    if not isinstance(aor, str):
        name = values.get("name")
        label = f"account {name!r}" if name else "the account"
        raise ConfigError(
            f"{label} has no address of record; {hint} (e.g. --aor sips:alice@example.test)"
        )
    _, user, _, _ = aor_parts(aor)
    values.setdefault("name", user)
    # RFC 3261 §22.4 leaves the digest user name to the deployment; most use the AOR's user.
    values.setdefault("username", user)
    if draft.password is not None:
        values["password"] = _resolve_password(draft.password, env, warnings)
    return AccountSettings(**values)  # type: ignore[arg-type]  # converters checked each type


def _section(section: str, merged: _Values) -> dict[str, object]:
    """The values the layers gave for one section, by attribute name (defaults left out)."""
    return {
        declared.name: merged.values[declared.key]
        for declared in SETTINGS
        if declared.section == section and declared.key in merged.values
    }


def _select_accounts(
    file_accounts: list[_Values],
    account_layer: _Values,
    selected: str | None,
    config: Path | None,
) -> tuple[list[_Values], str]:
    """Applies the account-level overrides and picks the accounts to return.

    Returns:
        The account drafts, and a hint on where an address of record could come from.
    """

    def name_of(draft: _Values) -> str | None:
        name = draft.values.get("name")
        if isinstance(name, str):
            return name
        aor = draft.values.get("aor")
        return aor_parts(aor)[1] if isinstance(aor, str) else None

    names = [name_of(draft) for draft in file_accounts]
    for index, name in enumerate(names):
        if name is None:
            raise ConfigError(f"{config}: accounts[{index}]: set name or aor")
        if names.index(name) != index:
            raise ConfigError(
                f"{config}: accounts[{index}]: another account is also called {name!r}; "
                "give each account a distinct name"
            )
    hint = "pass --aor" if config is None else f"set aor in {config} or pass --aor"
    has_overrides = bool(account_layer.values) or account_layer.password is not None

    if selected is not None:
        if selected in names:
            chosen = file_accounts[names.index(selected)]
        elif "aor" in account_layer.values:
            chosen = _Values()
            source = Source(where="--account", text=True, base=None)
            chosen.put("name", _convert(BY_KEY["account.name"], selected, source), "--account")
        else:
            where = f"in {config}" if config is not None else "(no configuration file given)"
            close = difflib.get_close_matches(selected, [n for n in names if n], n=1)
            suggestion = f"; did you mean {close[0]!r}?" if close else ""
            listed = f"; its accounts: {', '.join(n for n in names if n)}" if names else ""
            raise ConfigError(
                f"--account: no account named {selected!r} {where}{suggestion}{listed}; "
                "or pass --aor to define it on the command line"
            )
        chosen.update(account_layer)
        return [chosen], hint

    if has_overrides:
        if len(file_accounts) > 1:
            first = next(iter(account_layer.wheres.values()), None) or (
                account_layer.password.where if account_layer.password else "the account flags"
            )
            raise ConfigError(
                f"{first} applies to one account, but {config} has {len(file_accounts)} "
                f"({', '.join(n for n in names if n)}); choose one with --account NAME"
            )
        if file_accounts:
            file_accounts[0].update(account_layer)
        else:
            file_accounts = [account_layer]
    return file_accounts, hint


def _check_certificates(certificates: CertificateSettings, merged: _Values) -> None:
    """Refuses a plain http:// provisioning URL unless `allow_http` says so."""
    for name in ("trusted_certificates_url", "server_certificates_url"):
        url = getattr(certificates, name)
        if (
            url is not None
            and provisioning_url_scheme(url) == "http"
            and not (certificates.allow_http)
        ):
            where = merged.wheres.get(f"certificates.{name}", name)
            raise ConfigError(
                f"{where}: {url[:MAX_SHOWN_CHARS]!r} is plain http://: anyone on the path could "
                "change what sipua trusts; use https://, or set certificates.allow_http = true "
                "(--allow-http-provisioning) if the network is yours"
            )


def setting_value(
    key: str, overrides: Sequence[Override] = (), *, env: Mapping[str, str] | None = None
) -> object:
    """One setting, for a command that needs only it: its flag, then its variable, then default.

    No configuration file is read, and no other variable (`sipua cert list --data-dir DIR`
    works whatever else the environment holds); the precedence is `load_settings`' own.

    Args:
        key: A dotted setting name outside the accounts, e.g. `data_dir`.
        overrides: Values from command-line flags (others than `key`'s are ignored).
        env: The environment; `os.environ` if omitted.

    Raises:
        ConfigError: The flag or variable is wrong; the message names it.
    """
    environ = os.environ if env is None else env
    declared = BY_KEY[key]
    if declared.section == "account":
        raise ValueError(f"{key} belongs to an account; use load_settings")
    # The variables the defaults are computed from (`data_dir`'s XDG rule), and the setting's.
    names = ("HOME", "XDG_DATA_HOME", declared.env)
    own_env = {name: environ[name] for name in names if name is not None and name in environ}
    settings = load_settings(
        env=own_env, overrides=[override for override in overrides if override.key == key]
    )
    section = getattr(settings, declared.section) if declared.section else settings
    return getattr(section, declared.name)


def load_settings(
    config: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[Override] = (),
    account: str | None = None,
) -> Settings:
    """Loads settings from a file, the environment and overrides, in precedence order.

    Args:
        config: The TOML file; None reads `SIPUA_CONFIG`, and without it no file is read.
        env: The environment; `os.environ` if omitted.
        overrides: Values from command-line flags (they win over everything else).
        account: The account to select; None reads `SIPUA_ACCOUNT`. With a selection only
            that account is returned.

    Returns:
        The settings, with secrets read and `config_warnings` filled in.

    Raises:
        ConfigError: A file, variable or flag is wrong; the message names it.
    """
    environ = os.environ if env is None else env
    if config is None and environ.get("SIPUA_CONFIG"):
        config = environ["SIPUA_CONFIG"]
    if account is None:
        account = environ.get("SIPUA_ACCOUNT") or None
    config_path = Path(config).expanduser() if config is not None else None

    file_layer = _file_layer(config_path) if config_path is not None else _Layer()
    env_overrides, env_warnings = overrides_from_env(environ)
    env_layer = _override_layer(env_overrides)
    flag_layer = _override_layer(overrides)

    warnings = [*file_layer.warnings, *env_warnings]
    merged = _Values()
    account_layer = _Values()
    for layer in (file_layer, env_layer, flag_layer):
        merged.update(layer.general)
        account_layer.update(layer.account)

    drafts, hint = _select_accounts(file_layer.accounts, account_layer, account, config_path)
    accounts = tuple(_build_account(draft, environ, warnings, hint) for draft in drafts)

    # The converters checked each value's type; the sections' classes take them by name.
    tls = TlsSettings(**_section("tls", merged))  # type: ignore[arg-type]
    listen = ListenSettings(**_section("listen", merged))  # type: ignore[arg-type]
    media = MediaSettings(**_section("media", merged))  # type: ignore[arg-type]
    certificates = CertificateSettings(**_section("certificates", merged))  # type: ignore[arg-type]
    _check_certificates(certificates, merged)
    for built in accounts:
        if built.pins and built.trust_on_first_use:
            raise ConfigError(
                f"account {built.name!r}: set either pins or trust_on_first_use, not both "
                "(pins already say which key to expect)"
            )
    if tls.max_version is not None and tls.max_version < tls.min_version:
        floor_from = merged.wheres.get("tls.min_version", "the default")
        raise ConfigError(
            f"{merged.wheres['tls.max_version']}: TLS {tls.max_version} is below the minimum "
            f"version {tls.min_version} (from {floor_from})"
        )
    if tls.keylog_file is not None:
        warnings.append(
            f"TLS key logging is on: session keys go to {tls.keylog_file}; "
            "anyone holding that file can decrypt the captured traffic"
        )
    if not tls.only_trusted:
        warnings.append(
            "tls.only_trusted is off: peers whose certificates do not verify are accepted "
            "(and the lock shows locked-unverified)"
        )

    top = _section("", merged)
    top.setdefault("data_dir", default_data_dir(environ))
    settings = Settings(
        accounts=accounts,
        tls=tls,
        listen=listen,
        media=media,
        certificates=certificates,
        **top,  # type: ignore[arg-type]
    )
    return replace(settings, config_warnings=tuple(warnings))
