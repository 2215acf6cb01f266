"""`sipua cert`: manage trusted and device certificates, and verify a chain offline.

Subcommands: list, show, import-trusted, remove-trusted, import-device, remove-device,
export-ca, verify, accept-key, forget-key, provision. Each takes `--data-dir DIR` (or
`SIPUA_DATA_DIR`); `verify` and `provision` take the flags of the settings they use, declared
with those settings (`sipua.settings.flags.add_setting_flags`), so each means what it means for
`sipua register`.

Exit codes: 0 done (for `verify`: the policy accepts the chain); 1 `verify` rejected the chain;
2 an operational error (unreadable file, refused import...), printed as one line by the CLI.
Heavy imports (cryptography) happen inside `run`, so `sipua cert --help` stays fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, cast

if TYPE_CHECKING:
    from sipua.tls.certs import CertSummary
    from sipua.tls.stores.files import StoredCertificate
    from sipua.tls.stores.store import CertStore

EXIT_REJECTED = 1


#: The settings `sipua cert verify` judges a chain with, as `sipua register` would apply them.
VERIFY_SETTINGS: Final = (
    "tls.trusted_certs",
    "tls.only_trusted",
    "tls.ca_type",
    "tls.cn_validation",
    "tls.allow_wildcards",
    "tls.min_version",
)
#: The settings `sipua cert provision` takes as flags (the rest come from `--config`).
PROVISION_SETTINGS: Final = (
    "certificates.trusted_certificates_url",
    "certificates.server_certificates_url",
    "certificates.allow_http",
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds the `cert` subcommands and their flags."""
    from sipua.settings.flags import add_selector_flags, add_setting_flags

    sub = parser.add_subparsers(dest="cert_command", metavar="SUBCOMMAND", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_setting_flags(command, ("data_dir",))
        return command

    listing = add("list", "list trusted and device certificates, with the days each has left")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.add_argument(
        "--defaults",
        action="store_true",
        help="also list each default (operating system) trusted certificate",
    )
    show = add("show", "show one certificate in detail")
    show.add_argument("id", metavar="ID", help="SHA-256 fingerprint (or a unique prefix) or name")
    show.add_argument("--json", action="store_true", help="print JSON")
    imp = add(
        "import-trusted",
        "trust the certificate(s) in FILE (.pem .cer .crt .der): CAs, or a server's own "
        "certificate, which is then trusted as itself",
    )
    imp.add_argument("file", type=Path, metavar="FILE")
    rem = add("remove-trusted", "stop trusting a custom trusted certificate")
    rem.add_argument("id", metavar="ID", help="SHA-256 fingerprint (or a unique prefix) or name")
    dev = add("import-device", "import the custom device certificate and key (.pem .cer)")
    dev.add_argument("cert", type=Path, metavar="CERT")
    dev.add_argument("--key", type=Path, default=None, metavar="KEY", help="separate key file")
    dev.add_argument(
        "--passphrase-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="file holding the passphrase of an encrypted key",
    )
    add("remove-device", "remove the custom device certificate")
    accept = add(
        "accept-key",
        "accept a registrar's new key for trust on first use (after checking it out of band)",
    )
    accept.add_argument("name", metavar="NAME", help="the registrar's TLS name")
    accept.add_argument("pin", metavar="sha256/BASE64", help="the new key's pin")
    forget = add("forget-key", "forget the key recorded for a registrar (re-learnt on next use)")
    forget.add_argument("name", metavar="NAME", help="the registrar's TLS name")
    prov = add(
        "provision",
        "fetch the provisioning URLs once (trusted certificates, device certificate) and store "
        "what they serve; one outcome line per URL",
    )
    add_selector_flags(prov, account=False)
    add_setting_flags(prov, PROVISION_SETTINGS)
    prov.add_argument("--json", action="store_true", help="print JSON lines")
    export = add("export-ca", "print the device CA certificate (PEM) for registrars to trust")
    export.add_argument("--out", type=Path, default=None, metavar="FILE", help="write to FILE")
    verify = add("verify", "verify a certificate chain against the trust policy, offline")
    verify.add_argument("chain", type=Path, metavar="CHAIN", help="PEM/DER file, leaf first")
    verify.add_argument("--name", required=True, metavar="DOMAIN", help="the SIP domain")
    verify.add_argument("--at", default=None, metavar="TIME", help="ISO 8601 time (default now)")
    add_setting_flags(
        verify,
        VERIFY_SETTINGS,
        help_texts={
            "tls.trusted_certs": "also trust this certificate, a CA or a server's own (counts "
            "as custom; repeatable)",
            "tls.min_version": "judge the chain as `sipua register` with this --tls-min-version "
            "would: 1.0 or 1.1 also accept the weak keys and signatures of old peers "
            "(default: 1.2)",
        },
        env=False,
    )
    verify.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    """Runs one `sipua cert` subcommand and returns the exit code."""
    from sipua.settings.flags import overrides_from_args
    from sipua.settings.load import setting_value
    from sipua.tls.stores.store import CertStore

    store = CertStore(cast(Path, setting_value("data_dir", overrides_from_args(args))))
    handlers = {
        "list": _list,
        "show": _show,
        "import-trusted": _import_trusted,
        "remove-trusted": _remove_trusted,
        "import-device": _import_device,
        "remove-device": _remove_device,
        "export-ca": _export_ca,
        "verify": _verify,
        "accept-key": _accept_key,
        "provision": _provision,
        "forget-key": _forget_key,
    }
    code = handlers[args.cert_command](store, args)
    for problem in store.problems:
        print(f"sipua: warning: {problem}", file=sys.stderr)
    return code


def _when(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _summary_lines(
    summary: CertSummary, indent: str = "  ", *, now: dt.datetime | None = None
) -> list[str]:
    from sipua.tls.expiry import describe_expiry

    moment = now if now is not None else dt.datetime.now(dt.UTC)
    left = describe_expiry(summary.not_after, moment)
    return [
        f"{indent}subject:     {summary.subject}",
        f"{indent}issuer:      {summary.issuer}",
        f"{indent}valid:       {_when(summary.not_before)} .. {_when(summary.not_after)} ({left})",
        f"{indent}sha256:      {summary.fingerprint}",
    ]


def _with_days(stored: StoredCertificate, now: dt.datetime) -> dict[str, object]:
    from sipua.tls.expiry import days_left

    return {**stored.as_json(), "days_left": days_left(stored.summary.not_after, now)}


def _list(store: CertStore, args: argparse.Namespace) -> int:
    from sipua.tls.expiry import days_left, describe_expiry

    now = dt.datetime.now(dt.UTC)
    defaults = store.trusted.default()
    custom = store.trusted.custom()
    devices = store.devices.certificates()
    known = store.known.records()
    if args.json:
        document = {
            "data_dir": str(store.data_dir),
            "trusted": {
                "default": {
                    "count": len(defaults),
                    "source": str(store.trusted.system.path) if store.trusted.system.path else None,
                    "names": [s.name for s in defaults],
                    "certificates": [
                        {
                            "name": s.name,
                            "fingerprint_sha256": s.fingerprint,
                            "not_after": s.summary.not_after.isoformat(),
                            "days_left": days_left(s.summary.not_after, now),
                        }
                        for s in defaults
                    ],
                },
                "custom": [
                    {**_with_days(s, now), "end_entity": not s.summary.is_ca} for s in custom
                ],
            },
            "device": [_with_days(s, now) for s in devices],
            "known_keys": known,
            "problems": store.problems,
        }
        print(json.dumps(document, indent=2))
        return 0
    source = store.trusted.system.path or "no OS bundle found"
    print(f"Trusted certificates, default: {len(defaults)} (from {source})")
    if defaults:
        soonest = min(defaults, key=lambda s: s.summary.not_after)
        left = describe_expiry(soonest.summary.not_after, now)
        print(f"  soonest to expire: {soonest.name} ({left})")
    if args.defaults:
        for stored in sorted(defaults, key=lambda s: s.summary.not_after):
            left = describe_expiry(stored.summary.not_after, now)
            print(f"  - {stored.name} ({left}, sha256 {stored.fingerprint[:16]})")
    print(f"Trusted certificates, custom: {len(custom)} of 10")
    for stored in custom:
        print(f"- {stored.name} [custom, {_trusted_as(stored)}]")
        print("\n".join(_summary_lines(stored.summary, now=now)))
    print(f"Device certificates: {len(devices)}")
    for stored in devices:
        print(f"- {stored.name} [{stored.kind}, type {stored.type}]")
        print("\n".join(_summary_lines(stored.summary, now=now)))
    if not any(d.kind in ("unique", "generic") for d in devices):
        print("  (the default device certificate is issued on first use)")
    if known:
        print(f"Registrar keys recorded on first use: {len(known)}")
        for name, pin in known.items():
            print(f"- {name} {pin}")
    return 0


def _accept_key(store: CertStore, args: argparse.Namespace) -> int:
    from sipua.errors import ConfigError

    try:
        before = store.known.accept(args.name, args.pin)
    except ValueError as exc:
        raise ConfigError(f"{args.pin[:60]!r}: {exc}") from None
    if before is None:
        print(f"recorded: {args.name} {args.pin.strip()}")
    elif before == args.pin.strip():
        print(f"unchanged: {args.name} {before}")
    else:
        print(f"accepted: {args.name} {args.pin.strip()} (was {before})")
    return 0


def _provision(store: CertStore, args: argparse.Namespace) -> int:
    import trio

    from sipua.errors import ConfigError
    from sipua.provision.run import provision
    from sipua.settings.flags import settings_from_args

    settings = settings_from_args(args, require_account=False)
    if not settings.certificates.provisioning:
        raise ConfigError(
            "nothing to provision: give --trusted-certificates-url or --server-certificates-url, "
            "or a --config with URLs in its [certificates] section"
        )
    outcomes = trio.run(provision, settings)
    for outcome in outcomes:
        if args.json:
            event = "provisioned" if outcome.ok else "provisioning-failed"
            print(json.dumps({"event": event, **outcome.fields()}), flush=True)
        else:
            print(outcome.line(), flush=True)
    return next((o.exit_code for o in outcomes if not o.ok), 0)


def _forget_key(store: CertStore, args: argparse.Namespace) -> int:
    pin = store.known.forget(args.name)
    print(f"forgotten: {args.name} {pin} (the next connection records the key it meets)")
    return 0


def _trusted_as(stored: StoredCertificate) -> str:
    """What a trusted entry is: a CA, or an end-entity certificate trusted as itself."""
    if stored.summary.is_ca:
        return "CA"
    return "end-entity certificate, not a CA: trusts only itself"


def _show(store: CertStore, args: argparse.Namespace) -> int:
    from sipua.tls.trust.pins import spki_pin

    stored = store.find(args.id)
    now = dt.datetime.now(dt.UTC)
    pin = spki_pin(stored.certificate)
    if args.json:
        print(json.dumps({**_with_days(stored, now), "spki_pin": pin}, indent=2))
        return 0
    summary = stored.summary
    print(f"{stored.name} [{stored.role}, {stored.kind}]")
    print("\n".join(_summary_lines(summary, now=now)))
    print(f"  pin:         {pin}")
    print(f"  serial:      {summary.serial}")
    print(f"  key:         {summary.key}")
    print(f"  signature:   {summary.signature_hash}")
    print(f"  CA:          {'yes' if summary.is_ca else 'no'}")
    if summary.subject_alt_names:
        print(f"  alt names:   {', '.join(summary.subject_alt_names)}")
    if stored.path is not None:
        print(f"  stored in:   {stored.path}")
    return 0


def _import_trusted(store: CertStore, args: argparse.Namespace) -> int:
    for stored in store.trusted.import_file(args.file):
        print(f"trusted: {stored.name} [{_trusted_as(stored)}] (sha256 {stored.fingerprint})")
    return 0


def _remove_trusted(store: CertStore, args: argparse.Namespace) -> int:
    stored = store.trusted.remove(args.id)
    print(f"removed: {stored.name} (sha256 {stored.fingerprint})")
    return 0


def _read_passphrase(path: Path) -> bytes:
    """The passphrase in `path` (its first line's end trimmed), refusing an empty one."""
    from sipua.errors import ConfigError
    from sipua.storage import read_private

    passphrase = read_private(path, what="passphrase file").strip(b"\r\n")
    if not passphrase:
        raise ConfigError(f"the passphrase file {path} is empty; put the key's passphrase in it")
    return passphrase


def _import_device(store: CertStore, args: argparse.Namespace) -> int:
    passphrase = None
    if args.passphrase_file is not None:
        passphrase = _read_passphrase(args.passphrase_file)
    stored = store.devices.import_files(args.cert, args.key, passphrase=passphrase)
    print(f"device certificate: {stored.name} (sha256 {stored.fingerprint})")
    print("select it with the device certificate setting 'custom'")
    return 0


def _remove_device(store: CertStore, args: argparse.Namespace) -> int:
    stored = store.devices.remove()
    if stored is None:
        print("removed custom device certificate (its file held no readable certificate)")
    else:
        print(f"removed custom device certificate: {stored.name} (sha256 {stored.fingerprint})")
    return 0


def _export_ca(store: CertStore, args: argparse.Namespace) -> int:
    from sipua.storage import atomic_write
    from sipua.tls.certs import certificate_pem

    stored = store.devices.ca()
    pem = certificate_pem(stored.certificate)
    if args.out is None:
        sys.stdout.write(pem.decode("ascii"))
    else:
        atomic_write(args.out, pem)
        print(f"device CA certificate written to {args.out}")
    return 0


def _parse_time(text: str) -> dt.datetime:
    from sipua.errors import ConfigError

    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(
            f"--at {text!r} is not an ISO 8601 time; use e.g. 2030-01-31T12:00:00Z"
        ) from exc
    if moment.tzinfo is None:
        # A time without a zone is taken as UTC: certificate validity is defined in UTC.
        return moment.replace(tzinfo=dt.UTC)
    try:
        # In UTC here, so a time whose offset moves it past year 1 or 9999 is refused now,
        # not when the verifier converts it.
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise ConfigError(
            f"--at {text!r} is out of range: in UTC it must lie between "
            "0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
        ) from None


def _verify(store: CertStore, args: argparse.Namespace) -> int:
    from sipua.settings.flags import overrides_from_args
    from sipua.settings.load import load_settings
    from sipua.tls.certs import load_certificate_file, load_certificates, read_input_file
    from sipua.tls.trust.policy import TrustPolicy, verify_chain

    # The flags (and the defaults) alone: a chain is judged offline, whatever this shell's
    # SIPUA_* variables say.
    tls = load_settings(env={}, overrides=overrides_from_args(args)).tls
    at = _parse_time(args.at) if args.at is not None else None
    chain = load_certificates(read_input_file(args.chain), source=str(args.chain))
    trusted = store.trusted.anchors("custom")
    for path in tls.trusted_certs:
        trusted.extend(load_certificate_file(path))
    # The policy `sipua register` would apply with the same settings (one builder of it).
    policy = TrustPolicy.from_settings(tls)
    result = verify_chain(chain, name=args.name, trusted=trusted, at=at, policy=policy)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "verified": result.verified,
                    "code": result.code,
                    "reason": result.reason,
                    "problems": [
                        {"code": p.code, "reason": p.reason, "subject": p.subject}
                        for p in result.problems
                    ],
                    "expected": result.expected,
                    "identities": list(result.identities),
                    "anchor": result.anchor,
                    "path": [s.as_json() for s in result.path],
                },
                indent=2,
            )
        )
    else:
        print(result)
        for problem in result.problems[1:]:
            print(f"  also ({problem.code}): {problem.reason}")
        if result.identities:
            print(f"  identities: {', '.join(result.identities)}")
    return 0 if result.ok else EXIT_REJECTED
