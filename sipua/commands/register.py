"""`sipua register`: register an account over TLS, report the outcome and the lock state.

Without `--once` sipua stays registered (refreshing, keeping the flow alive, serving inbound
calls) until SIGINT or SIGTERM, then unregisters; SIGHUP re-reads the certificate stores
(`UserAgent.reload_certificates`: new connections use the new trust, the listener presents the
new device certificate on new handshakes, established flows and calls stay up). At the end it
prints the outcome and the final lock state. With `--once` it registers, prints the outcome and
the lock state, unregisters and exits; the exit code says what happened (0 registered,
2 configuration, 3 TLS or certificate, 4 refused, 5 network or timeout). `--once` does not
open the inbound listener: the Contact is the registration flow's own address.

The outcome is one line on standard output (`--log-format json`: an `outcome` object). A
failure is explained once, in full, by the `sipua: error:` line; the lock in the outcome line
names only the check that failed.

Heavy imports (trio, OpenSSL) happen inside `run`, so `sipua register --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pathlib import Path

    from sipua.errors import SipuaError
    from sipua.media.sources import MediaSpec
    from sipua.settings.model import Settings
    from sipua.ua.agent import UserAgent


#: How long hanging up and unregistering may take after SIGINT/SIGTERM (as `UserAgent` leaving).
SHUTDOWN_SECONDS: Final = 5.0


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds the flags of `sipua register`."""
    from sipua.settings.flags import add_common_flags

    parser.add_argument(
        "--once",
        action="store_true",
        help="register, print the outcome and the lock state, unregister and exit (for CI)",
    )
    parser.add_argument(
        "--hangup-after",
        metavar="SECONDS",
        type=seconds_argument,
        help="end each answered inbound call with a BYE this many seconds after answering "
        "(default: the caller ends it)",
    )
    parser.add_argument(
        "--answer-media",
        metavar="MEDIA",
        type=media_argument,
        help="what answered calls play: echo (default), tone, tone:HZ, silence or "
        "file:PATH.wav (8 kHz mono 16-bit); a call-media event reports each call's RTP",
    )
    add_common_flags(parser)


def media_argument(text: str) -> object:
    """An argparse type: what a call plays (echo, tone, tone:HZ, silence, file:PATH.wav)."""
    from sipua.media.errors import MediaSourceError
    from sipua.media.sources import parse_media_spec, read_wav

    try:
        spec = parse_media_spec(text)
        if spec.path is not None:
            read_wav(spec.path)  # refused now, not at the first call
    except MediaSourceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


def seconds_argument(text: str) -> float:
    """An argparse type: seconds, 0 to 86400 (shared by the commands that take durations)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"expected 0 to 86400 seconds, got {text}")
    return value


def output_file_argument(text: str) -> Path:
    """An argparse type: a file the command writes once it has run (a recording, a report),
    checked now so that a typo does not cost the run: its directory exists and is writable,
    and it is not a directory itself."""
    import os
    from pathlib import Path

    path = Path(text)
    parent = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name in it")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{text}: not writable by this user")
    return path


def run(args: argparse.Namespace) -> int:
    """Runs the command; returns the exit code."""
    import trio

    from sipua.logs import configure_logging
    from sipua.settings.flags import settings_from_args

    settings = settings_from_args(args)
    # --once ends a failure with its error line: the log's failure line need not repeat it.
    configure_logging(settings.log_format, settings.log_level, explain_failures=not args.once)
    if args.once:
        return trio.run(_once, settings)
    return trio.run(_serve, settings, args.hangup_after, args.answer_media)


def _summary(settings: Settings, ua: UserAgent, result: str, exit_code: int, detail: str) -> None:
    lock = ua.account.lock
    if settings.log_format == "json":
        line = json.dumps(
            {
                "event": "outcome",
                "result": result,
                "aor": ua.account_settings.aor,
                "lock": lock.state.value,
                "lock_reason": lock.reason,
                # What a lock rests on (ca-verified, pinned, first-use), when locked.
                **({"lock_basis": lock.basis} if lock.basis else {}),
                "detail": detail,
                "exit_code": exit_code,
            }
        )
    else:
        what = f"{ua.account_settings.aor} {detail}" if detail else ua.account_settings.aor
        line = f"{result}: {what}; lock: {lock_summary(ua)}"
    print(line, flush=True)


def lock_summary(ua: UserAgent) -> str:
    """The lock as an outcome line shows it: symbol, state, and the check that failed (or
    what a held lock rests on: ca-verified, pinned, first-use)."""
    lock = ua.account.lock
    symbol = {"locked": "🔒", "locked-unverified": "⚠", "negotiating": "…"}.get(
        lock.state.value, "🔓"
    )
    # The check that failed, without the explanation (the error line has that).
    reason = f" ({lock.check})" if lock.check else ""
    if lock.basis and not lock.check:
        reason = f" [{lock.basis}]"
    return f"{symbol} {lock.state.value}{reason}"


def failed(
    settings: Settings, ua: UserAgent, exc: SipuaError, *, result: str = "registration failed"
) -> int:
    """Prints the outcome of a failure and its one full explanation; returns the exit code."""
    from sipua.cli import ERROR_PREFIX

    detail = str(exc) if settings.log_format == "json" else ""
    _summary(settings, ua, result, exc.exit_code, detail)
    print(f"{ERROR_PREFIX}{exc}", file=sys.stderr, flush=True)
    return exc.exit_code


async def _once(settings: Settings) -> int:
    from sipua.errors import SipuaError
    from sipua.ua.agent import UserAgent

    async with UserAgent(settings, listen=False) as ua:
        try:
            registered = await ua.account.register()
        except SipuaError as exc:
            return failed(settings, ua, exc)
        _summary(settings, ua, "registered", 0, f"for {registered.expires} s")
        await ua.account.unregister()
    return 0


async def _serve(
    settings: Settings, hangup_after: float | None = None, answer_media: MediaSpec | None = None
) -> int:
    import dataclasses
    import signal

    import trio

    from sipua.errors import SipuaError
    from sipua.ua.agent import UserAgent

    failure: list[SipuaError] = []
    async with UserAgent(settings) as ua:
        if hangup_after is not None:
            ua.calls.policy = dataclasses.replace(ua.calls.policy, hangup_after=hangup_after)
        media = ua.calls.media
        if answer_media is not None and media is not None:
            ua.calls.media = dataclasses.replace(media, play=answer_media)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async with trio.open_nursery() as nursery:

                async def maintain() -> None:
                    try:
                        await ua.account.maintain()
                    except SipuaError as exc:  # a setting retrying cannot fix
                        failure.append(exc)
                        nursery.cancel_scope.cancel()

                nursery.start_soon(maintain)
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        # Re-read the certificate stores; flows and calls stay up.
                        ua.reload_certificates("sighup")
                        continue
                    break
                nursery.cancel_scope.cancel()
        unregistered = await shutdown(ua)
    # Printed once the flow is closed, so the lock is the final one.
    if failure:
        return failed(settings, ua, failure[0])
    result = "unregistered" if unregistered else "stopped"
    detail = "" if unregistered else "without unregistering (nothing was registered, or no answer)"
    _summary(settings, ua, result, 0, detail)
    return 0


async def shutdown(ua: UserAgent, seconds: float = SHUTDOWN_SECONDS) -> bool:
    """Hangs up every call and unregisters, shielded from cancellation but bounded in time.

    A caller whose TCP stopped taking data must not keep sipua from exiting after a signal:
    what is not done within `seconds` is abandoned (the registrar lets the binding expire).

    Returns:
        Whether the registrar confirmed the unregistration.
    """
    import contextlib

    import trio

    from sipua.errors import SipuaError

    unregistered = False
    with trio.CancelScope(shield=True), trio.move_on_after(seconds):
        with contextlib.suppress(SipuaError):
            await ua.calls.hangup_all()
        unregistered = await ua.account.unregister()
    return unregistered
