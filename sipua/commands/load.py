"""`sipua load`: register many accounts, each over its own TLS connection.

With ``--processes N|auto`` the registrations are sharded over worker processes
(`sipua.load.workers`); the progress line and the report are still one, merged.

The accounts come from a user pattern (``--users 'load{0000..1999}' --domain example.test``,
one password from ``--password-file``) or a CSV file (``--accounts FILE``); the connection
and trust flags are those of `sipua register` (``--proxy``, ``--trusted-cert``, ``--ca-type``,
``--data-dir``...). A progress line goes to stderr while it runs, a summary to stdout at the
end, and with ``--json FILE`` a report (`sipua.load.stats.LoadReport.to_json`).

Exit code: 0 when every registration succeeded; otherwise the code of the most frequent
failure (3 TLS or certificate, 4 refused, 5 network or timeout, 1 anything else).

Heavy imports (trio, OpenSSL) happen inside `run`, so `sipua load --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from sipua.commands.register import output_file_argument

if TYPE_CHECKING:
    from sipua.load.accounts import LoadAccount
    from sipua.load.engine import LoadPlan
    from sipua.load.stats import LoadReport, LoadStats
    from sipua.settings.model import Settings

_EXIT_BY_REASON = {
    "untrusted": 3,
    "tls-handshake": 3,
    "tls-alert": 3,
    "auth": 4,
    "status-403": 4,
    "connect": 5,
    "timeout": 5,
    "connection-lost": 5,
}


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds the flags of `sipua load`."""
    from sipua.settings.flags import add_common_flags

    load = parser.add_argument_group("load")
    source = load.add_mutually_exclusive_group()
    source.add_argument(
        "--users",
        metavar="PATTERN",
        help="user names, one {LOW..HIGH} range allowed: 'load{0000..1999}' (with --domain)",
    )
    source.add_argument(
        "--accounts",
        metavar="CSV",
        help="CSV file with a header row: username[,password][,aor]",
    )
    load.add_argument(
        "--domain", help="the accounts' domain: AOR sips:USER@DOMAIN (default: --aor's domain)"
    )
    load.add_argument(
        "--count",
        type=_positive_int,
        metavar="N",
        help="registrations to run (default: one per account; more cycles through them)",
    )
    load.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="registrations in flight at once (default 50; with --rate, 10000)",
    )
    load.add_argument(
        "--rate", type=_positive_float, metavar="PER_S", help="start at most this many per second"
    )
    load.add_argument(
        "--hold",
        type=_positive_float,
        metavar="SECONDS",
        default=0.0,
        help="keep every account registered (connection open, refreshing) this long after "
        "the last registration, then close (measures how many one process holds)",
    )
    load.add_argument(
        "--reuse-connection",
        action="store_true",
        help="send every registration over one TLS connection",
    )
    load.add_argument(
        "--processes",
        type=_processes,
        metavar="N|auto",
        default=1,
        help="worker processes the registrations are sharded over (auto: one per core; "
        "default 1); one merged progress line and report",
    )
    load.add_argument(
        "--json",
        metavar="FILE",
        type=output_file_argument,
        help="write the report as JSON to FILE",
    )
    load.add_argument(
        "--progress",
        type=float,
        metavar="SECONDS",
        default=1.0,
        help="progress line interval on stderr (0: none; default 1)",
    )
    add_common_flags(parser)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def _processes(text: str) -> int:
    from sipua.load.workers import process_count

    try:
        return process_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def run(args: argparse.Namespace) -> int:
    """Runs the command; returns the exit code."""
    import trio

    from sipua.logs import configure_logging

    if args.hold and args.reuse_connection:
        from sipua.errors import ConfigError

        raise ConfigError(
            "--hold measures one connection per account; it cannot be combined with "
            "--reuse-connection"
        )
    settings, accounts = _accounts(args)
    configure_logging(settings.log_format, settings.log_level)
    plan, tls_name = trio.run(_plan, args, settings, accounts)
    if args.processes > 1:
        return _run_sharded(args, plan, settings, tls_name)
    return trio.run(_run, args, plan)


def _accounts(args: argparse.Namespace) -> tuple[Settings, list[LoadAccount]]:
    from dataclasses import replace
    from pathlib import Path

    from sipua.errors import ConfigError
    from sipua.load.accounts import LoadAccount, csv_accounts, pattern_accounts
    from sipua.settings.flags import settings_from_args

    domain: str | None = args.domain
    if domain is None and args.aor:
        domain = args.aor.partition("@")[2].split(";")[0].split(":")[0] or None
    first: str | None = None
    rows: list[LoadAccount] = []
    if args.users is not None:
        if domain is None:
            raise ConfigError("--users needs --domain (e.g. --domain example.test)")
        rows = pattern_accounts(args.users, domain=domain, password=None)
        first = rows[0].username
    elif args.accounts is not None:
        rows = csv_accounts(Path(args.accounts), domain=domain, password=None)
        first = rows[0].username
        if domain is None:
            domain = rows[0].aor.partition("@")[2].split(";")[0].split(":")[0]
    template_args = argparse.Namespace(**vars(args))
    if first is not None:
        # The loader builds one template account (proxy, TLS name, expires, password) from the
        # flags; every load account is that template with its own AOR and user.
        if not args.aor:
            template_args.aor = f"sips:{first}@{domain}"
        if not args.username:
            template_args.username = first
    settings = settings_from_args(template_args)
    template = settings.accounts[0]
    if template.pins or template.trust_on_first_use:
        # Not silently ignored: a load run that claimed to check keys and did not would lie.
        raise ConfigError(
            "sipua load does not check pins or first-use keys; drop --pin and "
            "--trust-on-first-use (or pins / trust_on_first_use in the file) for load runs"
        )
    if rows:
        # Accounts without a password of their own (all of a pattern's) take the template's.
        accounts = [r if r.password else replace(r, password=template.password) for r in rows]
    else:
        accounts = [
            LoadAccount(aor=template.aor, username=template.username, password=template.password)
        ]
    return settings, accounts


async def _plan(
    args: argparse.Namespace, settings: Settings, accounts: list[LoadAccount]
) -> tuple[LoadPlan, str | None]:
    """The plan of the run and the TLS name of its target (workers rebuild the TLS settings)."""
    from sipua.errors import ConfigError
    from sipua.load.engine import LoadPlan, client_tls_config
    from sipua.ua.agent import locate_targets

    template = settings.accounts[0]
    targets = await locate_targets(template)
    if not targets:
        raise ConfigError(f"no registrar found for {template.aor}; pass --proxy HOST:PORT")
    target = targets[0]
    count = args.count if args.count is not None else len(accounts)
    concurrency = args.concurrency or (10_000 if args.rate else 50)
    plan = LoadPlan(
        accounts=accounts,
        host=target.host,
        port=target.port,
        tls=client_tls_config(settings, target.tls_name),
        count=count,
        concurrency=concurrency,
        rate=args.rate,
        hold=args.hold,
        reuse_connection=args.reuse_connection,
        expires=template.expires,
        handshake_timeout=settings.tls.handshake_timeout,
    )
    return plan, target.tls_name


async def _run(args: argparse.Namespace, plan: LoadPlan) -> int:
    from sipua.load.engine import LoadRun
    from sipua.load.stats import progress_line

    tty = sys.stderr.isatty()
    started: list[float] = []

    def show(stats: LoadStats, rate: float) -> None:
        import trio

        now = trio.current_time()
        if not started:
            started.append(now)
        line = progress_line(stats, total=plan.count, elapsed=now - started[0], window_rate=rate)
        if tty:
            print(f"\r\x1b[2K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    import trio

    started.append(trio.current_time())
    run = LoadRun(
        plan,
        progress=show if args.progress > 0 else None,
        progress_interval=args.progress if args.progress > 0 else 1.0,
    )
    report = await run.run()
    if tty and args.progress > 0:
        print(file=sys.stderr)
    return _finish(args, report, run.examples)


def _run_sharded(
    args: argparse.Namespace, plan: LoadPlan, settings: Settings, tls_name: str | None
) -> int:
    from sipua.load.stats import progress_line
    from sipua.load.workers import run_sharded

    tty = sys.stderr.isatty()

    def show(stats: LoadStats, rate: float, elapsed: float) -> None:
        line = progress_line(stats, total=plan.count, elapsed=elapsed, window_rate=rate)
        if tty:
            print(f"\r\x1b[2K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    report, examples = run_sharded(
        plan,
        settings=settings,
        tls_name=tls_name,
        processes=args.processes,
        progress=show if args.progress > 0 else None,
        progress_interval=args.progress if args.progress > 0 else 1.0,
    )
    if tty and args.progress > 0:
        print(file=sys.stderr)
    return _finish(args, report, examples)


def _finish(args: argparse.Namespace, report: LoadReport, examples: dict[str, str]) -> int:
    """Prints the summary and the failure examples, writes --json; returns the exit code."""
    import json

    from sipua.errors import ConfigError, StoreError
    from sipua.storage import atomic_write

    print(report.summary(), flush=True)
    for reason, example in sorted(examples.items()):
        print(f"  {reason}: {example}", file=sys.stderr)
    if args.json:
        document = report.to_json()
        document["failure_examples"] = dict(examples)
        try:
            atomic_write(args.json, (json.dumps(document, indent=2) + "\n").encode())
        except StoreError as exc:
            print(f"sipua: error: the JSON report was not written: {exc}", file=sys.stderr)
            return ConfigError.exit_code
    if not report.failures:
        return 0
    worst = max(report.failures.items(), key=lambda item: item[1])[0]
    return _EXIT_BY_REASON.get(worst, 1)
