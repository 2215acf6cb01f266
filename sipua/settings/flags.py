"""The command-line flags shared by `sipua register` and `sipua load`.

The flag names are a contract: scripts and CI jobs call sipua with them, so they are only ever
added to, never renamed. Every flag defaults to "not given" (None), so that the loader can tell
a flag that was left out (the environment or file decides) from one set to the default value.

This module imports only the standard library at import time: `sipua register --help` builds
the parser and must stay fast. The loader is imported when settings are actually read.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from sipua.settings.load import Override
    from sipua.settings.model import Settings

# dest -> dotted setting name, for flags whose value maps straight onto one setting.
_FLAG_SETTINGS: Final[Mapping[str, tuple[str, str]]] = {
    # dest: (setting key, flag as the user wrote it)
    "aor": ("account.aor", "--aor"),
    "username": ("account.username", "--username"),
    "password_file": ("account.password_file", "--password-file"),
    "proxy": ("account.proxy", "--proxy"),
    "tls_name": ("account.tls_name", "--tls-name"),
    "expires": ("account.expires", "--expires"),
    "keepalive": ("account.keepalive_interval", "--keepalive"),
    "trusted_cert": ("tls.trusted_certs", "--trusted-cert"),
    "only_trusted": ("tls.only_trusted", "--only-trusted/--no-only-trusted"),
    "ca_type": ("tls.ca_type", "--ca-type"),
    "cn_validation": ("tls.cn_validation", "--cn-validation/--no-cn-validation"),
    "allow_wildcards": ("tls.allow_wildcards", "--allow-wildcards"),
    "device_cert": ("tls.device_cert", "--device-cert"),
    "mac": ("tls.mac", "--mac"),
    "tls_min_version": ("tls.min_version", "--tls-min-version"),
    "tls_max_version": ("tls.max_version", "--tls-max-version"),
    "ciphers": ("tls.ciphers", "--ciphers"),
    "tls13_ciphers": ("tls.tls13_ciphers", "--tls13-ciphers"),
    "tls_groups": ("tls.groups", "--tls-groups"),
    "keylog_file": ("tls.keylog_file", "--keylog-file"),
    "pin": ("account.pins", "--pin"),
    "trust_on_first_use": ("account.trust_on_first_use", "--trust-on-first-use"),
    "expiry_warning_days": ("certificates.expiry_warning_days", "--expiry-warning-days"),
    "trusted_certificates_url": (
        "certificates.trusted_certificates_url",
        "--trusted-certificates-url",
    ),
    "server_certificates_url": (
        "certificates.server_certificates_url",
        "--server-certificates-url",
    ),
    "provision_interval": ("certificates.provision_interval", "--provision-interval"),
    "allow_http_provisioning": ("certificates.allow_http", "--allow-http-provisioning"),
    "listen": ("listen.address", "--listen"),
    "servers_only": ("listen.servers_only", "--servers-only/--no-servers-only"),
    "srtp": ("account.srtp", "--srtp"),
    "symmetric_rtp": ("account.symmetric_rtp", "--symmetric-rtp/--no-symmetric-rtp"),
    "media_ports": ("media.port_range", "--media-ports"),
    "data_dir": ("data_dir", "--data-dir"),
    "log_format": ("log_format", "--log-format"),
    "log_level": ("log_level", "--log-level"),
    "trace": ("trace", "--trace"),
}

_TLS_VERSIONS: Final = ("1.0", "1.1", "1.2", "1.3")


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


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the settings flags (configuration, account, TLS, listener, output) to `parser`.

    Args:
        parser: The command's parser (`sipua register`, `sipua load`).
    """
    config = parser.add_argument_group("configuration")
    config.add_argument(
        "--config",
        metavar="FILE",
        help="TOML configuration file (see config/sipua.example.toml); env SIPUA_CONFIG",
    )
    config.add_argument(
        "--account",
        metavar="NAME",
        help="use only this account of the file (or name the account the flags define)",
    )
    config.add_argument(
        "--data-dir", metavar="DIR", help="state directory (default ~/.local/share/sipua)"
    )

    account = parser.add_argument_group(
        "account", "without --config these alone define the account to register"
    )
    account.add_argument(
        "--aor", metavar="URI", help="address of record, e.g. sips:alice@example.test"
    )
    account.add_argument("--username", help="digest user name (default: the AOR's user)")
    account.add_argument(
        "--password-file",
        metavar="FILE",
        help="file holding the password (no --password flag: arguments are visible to others; "
        "or set SIPUA_PASSWORD)",
    )
    # No flag takes the password itself: any user can read a process's arguments (ps,
    # /proc/PID/cmdline). `--password` exists only to refuse clearly, without echoing the value,
    # and so that argparse does not take it as an abbreviation of --password-file.
    account.add_argument("--password", action=_RefusePassword, help=argparse.SUPPRESS)
    account.add_argument(
        "--proxy",
        metavar="HOST:PORT",
        help="registrar/outbound proxy (IPv6 as [addr]:port); default: RFC 3263 lookup of the "
        "AOR's domain",
    )
    account.add_argument(
        "--tls-name", metavar="NAME", help="name the registrar's certificate must carry"
    )
    account.add_argument("--expires", metavar="SECONDS", help="registration lifetime (default 600)")
    account.add_argument(
        "--keepalive",
        metavar="SECONDS",
        help="RFC 5626 keep-alive interval (default: random 95-120 s)",
    )

    tls = parser.add_argument_group("TLS and trust policy")
    tls.add_argument(
        "--trusted-cert",
        metavar="FILE",
        action="append",
        help="trusted certificate, PEM or DER: a CA, or a server's own (e.g. self-signed) "
        "certificate, trusted as itself (repeatable; replaces the file's list)",
    )
    tls.add_argument(
        "--only-trusted",
        action=argparse.BooleanOptionalAction,
        help="refuse peers whose certificate does not verify (default: on)",
    )
    tls.add_argument(
        "--ca-type",
        choices=("default", "custom", "all"),
        help="which trusted CAs count (default: all)",
    )
    tls.add_argument(
        "--cn-validation",
        action=argparse.BooleanOptionalAction,
        help="check the peer's name, RFC 5922 (default: on)",
    )
    tls.add_argument(
        "--allow-wildcards",
        action=argparse.BooleanOptionalAction,
        help="accept *.domain certificates (default: off, RFC 5922 §7.2)",
    )
    tls.add_argument(
        "--device-cert",
        choices=("default", "generic", "custom"),
        help="our certificate for the listener and mutual TLS: default (unique for the MAC, "
        "else generic), generic, or custom (imported)",
    )
    tls.add_argument("--mac", help="device MAC address selecting the unique device certificate")
    tls.add_argument(
        "--tls-min-version", choices=_TLS_VERSIONS, help="lowest TLS version (default 1.2)"
    )
    tls.add_argument(
        "--tls-max-version", choices=_TLS_VERSIONS, help="highest TLS version (default: newest)"
    )
    tls.add_argument("--ciphers", metavar="LIST", help="OpenSSL cipher list for TLS <= 1.2")
    tls.add_argument(
        "--tls13-ciphers",
        metavar="SUITES",
        help="TLS 1.3 cipher suites, e.g. TLS_AES_128_GCM_SHA256 (default: OpenSSL's)",
    )
    tls.add_argument(
        "--tls-groups",
        metavar="GROUPS",
        help="key-exchange groups, e.g. X25519 (default: OpenSSL's, post-quantum hybrid first)",
    )
    tls.add_argument(
        "--keylog-file", metavar="FILE", help="append TLS keys for Wireshark (secret material!)"
    )

    keys = parser.add_argument_group(
        "certificates through their life", "key continuity, expiry and provisioning"
    )
    keys.add_argument(
        "--pin",
        metavar="sha256/BASE64",
        action="append",
        help="accept the registrar only if its chain holds this SPKI key (RFC 7469 form; "
        "repeatable; checked after the chain and the name)",
    )
    keys.add_argument(
        "--trust-on-first-use",
        action=argparse.BooleanOptionalAction,
        help="record the registrar's key on first contact and refuse a changed key (like SSH)",
    )
    keys.add_argument(
        "--expiry-warning-days",
        metavar="DAYS",
        help="warn when a trusted or device certificate expires within DAYS (default 30)",
    )
    keys.add_argument(
        "--trusted-certificates-url",
        metavar="URL",
        help="fetch custom trusted certificates from URL (https://, file://)",
    )
    keys.add_argument(
        "--server-certificates-url",
        metavar="URL",
        help="fetch the custom device certificate and its key from URL (https://, file://)",
    )
    keys.add_argument(
        "--provision-interval",
        metavar="SECONDS",
        help="fetch the provisioning URLs again this often (default: at start only)",
    )
    keys.add_argument(
        "--allow-http-provisioning",
        action="store_const",
        const=True,
        help="allow plain http:// provisioning URLs (no integrity; only on a network you own)",
    )

    listener = parser.add_argument_group("listener")
    listen = listener.add_mutually_exclusive_group()
    listen.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="accept inbound TLS here (default 127.0.0.1 on a free port, which the Contact "
        "tells the registrar; e.g. 0.0.0.0:5061, [::]:5061)",
    )
    listen.add_argument(
        "--no-listen",
        dest="listen_enabled",
        action="store_const",
        const=False,
        help="do not open a listener",
    )
    listener.add_argument(
        "--servers-only",
        action=argparse.BooleanOptionalAction,
        help="accept inbound connections only from the registrar/proxy's addresses (default: off)",
    )

    media = parser.add_argument_group("media")
    media.add_argument(
        "--srtp",
        choices=("disabled", "optional", "compulsory"),
        help="RTP encryption (SRTP, SDES keys over TLS): optional (default) offers it and "
        "accepts plain RTP, compulsory refuses plain RTP, disabled never offers it",
    )
    media.add_argument(
        "--symmetric-rtp",
        action=argparse.BooleanOptionalAction,
        help="send RTP to where the peer's RTP comes from (default: on)",
    )
    media.add_argument(
        "--media-ports",
        metavar="LOW-HIGH",
        help="UDP ports for RTP/RTCP, an even/odd pair per call (default 16384-32767)",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--log-format", choices=("console", "json"), help="console (default) or json lines"
    )
    output.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="default info"
    )
    output.add_argument(
        "--trace",
        action="store_const",
        const=True,
        help="log every SIP message (credentials redacted)",
    )


def overrides_from_args(args: argparse.Namespace) -> list[Override]:
    """Turns the flags that were given into loader overrides (flags left out are skipped).

    Args:
        args: The parsed arguments of a parser that `add_common_flags` set up.
    """
    from sipua.settings.load import Override

    overrides: list[Override] = []
    for dest, (key, flag) in _FLAG_SETTINGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides.append(Override(key, value, flag))
    if getattr(args, "listen_enabled", None) is False:
        overrides.append(Override("listen.enabled", False, "--no-listen"))
    return overrides


def settings_from_args(
    args: argparse.Namespace,
    env: Mapping[str, str] = os.environ,
    *,
    require_account: bool = True,
) -> Settings:
    """Loads the settings the command line asks for: file, then environment, then flags.

    Args:
        args: The parsed arguments of a parser that `add_common_flags` set up.
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
