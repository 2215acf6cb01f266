"""`sipua call URI`: place a call over TLS through the account's registrar, report how it went.

sipua registers the account (the same flags, trust checks and lock reporting as `sipua
register`), then sends an INVITE for URI on the registration flow, answers a 401/407 with the
account's credentials, rings until the callee answers or `--ring-timeout` passes (then it
CANCELs), ACKs the answer, and hangs up with a BYE after `--duration` (or when the callee
does). SIGINT or SIGTERM hangs up at once. It then unregisters and exits.

The call carries media: a port of the media range, RTP or SRTP (SDES keys) under the account's
`--srtp` policy, playing `--media` (a tone by default), and a `call-media` report at its end.

The outcome is one line on standard output (`--log-format json`: an `outcome` object), and the
exit code says what happened: 0 the call was answered, media arrived, and it ended normally;
6 the call was not answered (refused with a final response, cancelled after the ring timeout,
no answer at all) or its answer was refused by the SRTP policy; 7 it was answered but not one
RTP packet arrived; and as for `sipua register`: 2 configuration, 3 TLS or certificate,
4 registration refused, 5 network (the flow was lost during the call, or no media port free).

Heavy imports happen inside `run`, so `sipua call --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sipua.commands.register import media_argument, output_file_argument, seconds_argument

if TYPE_CHECKING:
    from sipua.media.sources import MediaSpec
    from sipua.settings.model import Settings
    from sipua.sip.endpoint import CallEnded
    from sipua.ua.agent import UserAgent
    from sipua.ua.calls import PlacedCall

DEFAULT_RING_TIMEOUT: Final = 30.0
DEFAULT_DURATION: Final = 5.0


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds the flags of `sipua call`."""
    from sipua.settings.flags import add_common_flags

    parser.add_argument(
        "target",
        metavar="URI",
        type=_target,
        help="whom to call, e.g. sips:bob@example.test",
    )
    parser.add_argument(
        "--ring-timeout",
        metavar="SECONDS",
        type=seconds_argument,
        default=DEFAULT_RING_TIMEOUT,
        help=f"CANCEL the call if it is not answered within this time "
        f"(default: {DEFAULT_RING_TIMEOUT:g})",
    )
    parser.add_argument(
        "--duration",
        metavar="SECONDS",
        type=seconds_argument,
        default=DEFAULT_DURATION,
        help=f"hang up this long after the answer (default: {DEFAULT_DURATION:g})",
    )
    parser.add_argument(
        "--dtmf",
        metavar="DIGITS",
        type=_digits,
        default="",
        help="send these DTMF digits (RFC 4733 telephone-event) once the call's media runs",
    )
    parser.add_argument(
        "--record",
        metavar="PATH.wav",
        type=output_file_argument,
        help="record the audio the callee sends (8 kHz mono 16-bit WAV)",
    )
    parser.add_argument(
        "--media",
        metavar="MEDIA",
        type=media_argument,
        help="what the call plays: tone (default), tone:HZ, echo, silence or file:PATH.wav "
        "(8 kHz mono 16-bit)",
    )
    add_common_flags(parser)


def _target(text: str) -> str:
    # The grammar the call's INVITE is built with (`SipUri.parse`), checked before registering.
    from sipua.sip.errors import ProtocolError
    from sipua.sip.uri import SipUri

    try:
        SipUri.parse(text)
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; give a sip: or sips: URI") from None
    return text


def _digits(text: str) -> str:
    from sipua.media.dtmf import DIGITS
    from sipua.media.session import MAX_QUEUED_DIGITS

    if len(text) > MAX_QUEUED_DIGITS or any(ch.upper() not in DIGITS for ch in text):
        raise argparse.ArgumentTypeError(
            f"expected up to {MAX_QUEUED_DIGITS} DTMF digits from {DIGITS!r}, got {text[:40]!r}"
        )
    return text.upper()


def run(args: argparse.Namespace) -> int:
    """Runs the command; returns the exit code."""
    import trio

    from sipua.logs import configure_logging
    from sipua.settings.flags import settings_from_args

    settings = settings_from_args(args)
    configure_logging(settings.log_format, settings.log_level, explain_failures=False)
    return trio.run(
        _call,
        settings,
        args.target,
        args.ring_timeout,
        args.duration,
        args.media,
        args.dtmf,
        args.record,
    )


async def _call(
    settings: Settings,
    target: str,
    ring_timeout: float,
    duration: float,
    media: MediaSpec | None = None,
    dtmf: str = "",
    record: Path | None = None,
) -> int:
    import dataclasses
    import signal

    import trio

    from sipua.commands.register import failed, shutdown
    from sipua.errors import (
        CallFailed,
        ConfigError,
        ConnectionLost,
        NoMediaReceived,
        SipuaError,
        TransportError,
    )
    from sipua.media.errors import MediaError
    from sipua.media.sources import MediaSpec
    from sipua.sip.errors import LocalProtocolError
    from sipua.sip.registration import DigestResponder
    from sipua.ua.agent import UserAgent

    async with UserAgent(settings) as ua:
        try:
            await ua.account.register()
        except SipuaError as exc:
            return failed(settings, ua, exc, result="registration failed")
        connection = ua.account.connection
        if connection is None:  # registered means a flow; a lost one is a network failure
            return failed(settings, ua, ConnectionLost("the registration flow is gone"))
        account = ua.account_settings
        password = account.password
        if ua.calls.media is not None:  # a tone unless told otherwise: audio to measure
            ua.calls.media = dataclasses.replace(ua.calls.media, play=media or MediaSpec("tone"))
        try:
            call_id = ua.calls.place_call(
                connection,
                target=target,
                from_uri=account.aor,
                responder=DigestResponder(
                    username=account.username,
                    password=password,
                    rng=ua.rng,
                ),
                ring_timeout=ring_timeout,
                duration=duration,
                dtmf=dtmf,
                record=record,
            )
        except LocalProtocolError as exc:
            await shutdown(ua)
            refused = ConfigError(f"{exc}; give a sip: or sips: URI")
            return failed(settings, ua, refused, result="call failed")
        except MediaError as exc:
            await shutdown(ua)
            no_media = TransportError(f"no media for the call: {exc}")
            return failed(settings, ua, no_media, result="call failed")
        ended: list[PlacedCall] = []
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def wait() -> None:
                    ended.append(await ua.calls.wait_ended(call_id))
                    nursery.cancel_scope.cancel()

                async def hang_up_on_signal() -> None:
                    async for _ in signals:
                        ua.calls.hangup(call_id)  # BYE, or CANCEL before the answer

                nursery.start_soon(wait)
                nursery.start_soon(hang_up_on_signal)
        await shutdown(ua)
    placed = ended[0]
    outcome, report, established = placed.outcome, placed.media_report, placed.established
    assert outcome is not None  # set before `ended` is
    if placed.media_refusal is not None:
        error: SipuaError = CallFailed(
            f"{target} answered media sipua refuses: {placed.media_refusal}"
        )
        return failed(settings, ua, error, result="call failed")
    if established and outcome.reason in ("local-bye", "remote-bye"):
        if report is not None and not report.get("packets_received"):
            error = NoMediaReceived(
                f"the call to {target} was answered but no RTP arrived from "
                f"{report.get('remote') or 'the callee'}; check the callee's media and any "
                "firewall between"
            )
            return failed(settings, ua, error, result="call without media")
        _summary(settings, ua, "call ended", 0, target, outcome, report)
        return 0
    if established or outcome.reason.startswith("connection-lost"):
        error = ConnectionLost(f"the call to {target} was cut: {outcome.reason}")
    else:
        error = CallFailed(_not_answered(target, outcome), status=outcome.status)
    return failed(settings, ua, error, result="call failed")


def _not_answered(target: str, outcome: CallEnded) -> str:
    status = f" ({outcome.status})" if outcome.status is not None else ""
    if outcome.reason == "cancelled":
        return f"{target} did not answer before the ring timeout; the call was cancelled{status}"
    if outcome.reason == "no-answer":
        return f"nothing answered the call to {target}{status}; check the target and the proxy"
    if outcome.reason == "refused":
        phrase = f" {outcome.phrase}" if outcome.phrase else ""
        return f"the call to {target} was refused: {outcome.status}{phrase}"
    return f"the call to {target} failed{status}: {outcome.reason}"


def _summary(
    settings: Settings,
    ua: UserAgent,
    result: str,
    exit_code: int,
    target: str,
    ended: CallEnded,
    media: dict[str, object] | None,
) -> None:
    lock = ua.account.lock
    if settings.log_format == "json":
        line = json.dumps(
            {
                "event": "outcome",
                "result": result,
                "target": target,
                "reason": ended.reason,
                "lock": lock.state.value,
                "media": media,
                "exit_code": exit_code,
            }
        )
    else:
        from sipua.commands.register import lock_summary

        audio = ""
        if media is not None:
            crypto = f"SRTP {media.get('srtp')}" if media.get("encrypted") else "plain RTP"
            audio = (
                f"; media: {media.get('packets_sent')} packets sent, "
                f"{media.get('packets_received')} received, {crypto}"
            )
        line = f"{result}: {target} ({ended.reason}){audio}; lock: {lock_summary(ua)}"
    print(line, file=sys.stdout, flush=True)
