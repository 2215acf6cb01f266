"""Structured logging for sipua: console or JSON lines, with secrets redacted.

Theory of operation. sipua logs *events*: a short kebab-case name (`registered`,
`lock-changed`) plus fields a person or a CI job can match on (`account`, `state`, `reason`,
`status`). `configure_logging` sets structlog up once at start-up with this chain:

    contextvars -> level -> timestamp -> tracebacks as text -> redaction -> renderer

Redaction runs after everything that adds data and before anything is rendered, so no renderer
ever sees a secret. It removes values of keys that name a secret (`password`, `secret`,
`private_key`, ...), every `Secret` object, the `response=`/`rspauth=` values of digest
credentials inside any text (a SIP trace shows `Authorization: Digest ... response="<redacted>"`:
the response is a password hash an attacker can attack offline, RFC 7616 §5.12), and PEM
private-key blocks. Traceback text is redacted too, because it is rendered before redaction.

The renderers: `json` writes one JSON object per line with `event`, `timestamp`, `level` and the
fields; `console` writes one readable line per event, and gives the events a person watches
(`lock-changed`, `registered`, `registration-failed`, `unregistered`, `call-*`) a symbol and,
on a terminal without `NO_COLOR`, a colour: the lock icon of a desk phone.

Cost on hot paths: loggers are `make_filtering_bound_logger` classes, whose methods below the
configured level are a bare `return None`, and `cache_logger_on_first_use` resolves the
configuration once per logger. So `log.debug(...)` at level info costs a method call, and the
processors (redaction included) run only for events that are written. Configure logging before
the first event is logged: a logger used before `configure_logging` keeps the old settings.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import PurePath
from typing import Final, Literal, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

from sipua.media.sdp import redact_sdes_keys
from sipua.settings.secret import Secret
from sipua.sip.digest import redact_digest_proofs

LogFormat = Literal["console", "json"]

#: What a redacted value is replaced with.
REDACTED: Final = "<redacted>"

#: A key whose lower-cased name contains one of these holds a secret (`password`,
#: `sip_password`, `private_key_pem`, ...), except names of where a secret is kept
#: (`password_file`, `password_env`, `private_key_path`), which help debugging and are not secret.
SECRET_KEY_PARTS: Final = ("password", "passwd", "secret", "private_key", "privkey", "token", "ha1")
_NOT_SECRET_SUFFIXES: Final = ("_file", "_env", "_path")

#: Nested containers deeper than this are cut, so a self-referencing value cannot loop.
MAX_REDACT_DEPTH: Final = 8

# Only text that looks like digest auth is searched, and only its lines that carry a proof
# (`response=`, `rspauth=`) go through the digest module's quoted-string-aware redaction.
_DIGEST_HINT = re.compile(r"digest|rspauth", re.I)
_PROOF_PARAM = re.compile(r"(?:response|rspauth)\s*=", re.I)
# RFC 7468 §2 PEM; covers PRIVATE KEY, RSA/EC/ENCRYPTED/OPENSSH PRIVATE KEY. An unterminated
# block (a truncated paste) is redacted to the end of the text.
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.S
)

#: The lock states the user agent reports (`lock-changed` events, field `state`).
LOCK_STATES: Final = ("negotiating", "locked", "locked-unverified", "unlocked")

_LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# ANSI SGR colours (ECMA-48); only written when the stream is a terminal and NO_COLOR is unset.
_GREEN: Final = "\x1b[32m"
_YELLOW: Final = "\x1b[33m"
_RED: Final = "\x1b[31m"
_BOLD: Final = "\x1b[1m"
_DIM: Final = "\x1b[2m"
_RESET: Final = "\x1b[0m"

# state -> (symbol, colour, words)
_LOCK_LOOK: Final[Mapping[str, tuple[str, str, str]]] = {
    "negotiating": ("…", _DIM, "negotiating TLS"),
    "locked": ("🔒", _GREEN, "locked"),
    "locked-unverified": ("⚠", _YELLOW, "locked, peer not verified"),
    "unlocked": ("🔓", _RED, "unlocked"),
}
# event -> (symbol, colour, words)
_EVENT_LOOK: Final[Mapping[str, tuple[str, str, str]]] = {
    "registered": ("✔", _GREEN, "registered"),
    "registration-failed": ("✘", _RED, "registration failed"),
    "unregistered": ("○", _DIM, "unregistered"),
    "call-incoming": ("☎", _BOLD, "incoming call"),
    "call-answered": ("☎", _GREEN, "call answered"),
    "call-ended": ("☎", _DIM, "call ended"),
    "call-placing": ("☎", _BOLD, "calling"),
    "call-progress": ("☎", _BOLD, "call progress"),
    "call-established": ("☎", _GREEN, "call established"),
    "call-media": ("♪", _DIM, "call media"),
}
# Fields the console line shows in its own place, not as key=value.
_SHOWN_APART: Final = frozenset(
    {"event", "timestamp", "level", "account", "state", "reason", "check"}
)


# --- redaction ---------------------------------------------------------------------------------


def is_secret_key(key: str) -> bool:
    """Tells whether a field called `key` holds a secret and must be redacted whole."""
    lowered = key.lower()
    if lowered.endswith(_NOT_SECRET_SUFFIXES):
        return False
    return any(part in lowered for part in SECRET_KEY_PARTS)


def redact_text(text: str) -> str:
    """Removes digest proofs (`response=`, `rspauth=`), PEM private keys and SDES SRTP keys
    (`a=crypto:... inline:<key>` in SDP) from `text`.

    Args:
        text: Any text: a log message, a header value, a whole SIP message.

    Returns:
        The text with those values replaced by `<redacted>` (the same object if none found).
    """
    if "PRIVATE KEY-----" in text:
        text = _PEM_PRIVATE_KEY.sub(
            lambda m: f"-----BEGIN {m[1]}PRIVATE KEY-----{REDACTED}-----END {m[1]}PRIVATE KEY-----",
            text,
        )
    text = redact_sdes_keys(text)
    if "=" in text and _DIGEST_HINT.search(text) and _PROOF_PARAM.search(text):
        text = "\n".join(
            redact_digest_proofs(line) if _PROOF_PARAM.search(line) else line
            for line in text.split("\n")
        )
    return text


def redact_value(value: object, depth: int = 0) -> object:
    """Returns `value` with every secret inside it redacted.

    Strings are cleaned with `redact_text`, bytes likewise (as Latin-1, so any byte survives),
    `Secret` objects and values under secret keys are replaced, containers are walked. Any other
    object is replaced by its redacted `repr`, since renderers would print that `repr` anyway.
    """
    if value is None or isinstance(value, bool | int | float | PurePath):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Secret):
        return REDACTED
    if depth >= MAX_REDACT_DEPTH:
        return "<nested too deep>"
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("latin-1")
        cleaned = redact_text(text)
        return value if cleaned is text else cleaned.encode("latin-1")
    if isinstance(value, Mapping):
        return {
            key: REDACTED
            if isinstance(key, str) and is_secret_key(key)
            else redact_value(v, depth + 1)
            for key, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item, depth + 1) for item in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return redact_text(repr(value))


def redact_event(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """The structlog processor that removes secrets from an event (see `redact_value`)."""
    return {
        key: REDACTED if is_secret_key(key) else redact_value(value)
        for key, value in event_dict.items()
    }


# --- rendering ---------------------------------------------------------------------------------


def _use_colour(stream: TextIO, env: Mapping[str, str]) -> bool:
    # https://no-color.org: any non-empty NO_COLOR disables colour.
    if env.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or non-file stream
        return False


class ConsoleRenderer:
    """One readable line per event; the user agent's events get a symbol and a colour.

    A failure is explained once. The lock line of an account that lost its lock names the
    failed check (the event's `check`, when it has one), since the `registration-failed` line
    that follows explains it. With `explain_failures` off, that line names only the error
    class, for a command that prints the explanation itself as its `sipua: error:` line.

    Args:
        colors: Whether to write ANSI colours.
        explain_failures: Whether `registration-failed` lines carry their reason.
    """

    def __init__(self, *, colors: bool, explain_failures: bool = True) -> None:
        self._colors = colors
        self._explain_failures = explain_failures
        self._fallback = structlog.dev.ConsoleRenderer(colors=colors, pad_event_to=24)

    def _paint(self, colour: str, text: str) -> str:
        return f"{colour}{text}{_RESET}" if self._colors else text

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        event = event_dict.get("event")
        if event == "lock-changed":
            state = str(event_dict.get("state"))
            symbol, colour, words = _LOCK_LOOK.get(state, ("?", _YELLOW, f"lock state {state}"))
        elif isinstance(event, str) and event in _EVENT_LOOK:
            symbol, colour, words = _EVENT_LOOK[event]
        else:
            return self._fallback(logger, method_name, event_dict)
        parts = [str(event_dict.get("timestamp", "")), self._paint(colour, f"{symbol} {words}")]
        account = event_dict.get("account")
        if account is not None:
            parts.insert(1, f"[{account}]")
        reason = event_dict.get("reason")
        if event == "lock-changed" and event_dict.get("state") == "unlocked":
            reason = event_dict.get("check") or reason
        elif event == "registration-failed" and not self._explain_failures:
            reason = None
        if reason:
            parts.append(f"({reason})")
        extras = " ".join(
            f"{key}={value}" for key, value in sorted(event_dict.items()) if key not in _SHOWN_APART
        )
        if extras:
            parts.append(self._paint(_DIM, extras) if self._colors else extras)
        line = " ".join(part for part in parts if part)
        # Traceback text (format_exc_info) goes below the line, as structlog's renderer does.
        exception = event_dict.get("exception")
        return line if exception is None else f"{line}\n{exception}"


def _json_default(value: object) -> str:
    # After redaction only plain values remain: bytes (SIP traces) become text, Paths too.
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    return str(value)


# --- set-up ------------------------------------------------------------------------------------


def configure_logging(
    format: LogFormat = "console",  # noqa: A002  # the name the settings and flags use
    level: str | int = "info",
    stream: TextIO | None = None,
    *,
    colors: bool | None = None,
    env: Mapping[str, str] | None = None,
    explain_failures: bool = True,
) -> None:
    """Sets up structlog for the whole process (call once, before the first event).

    Args:
        format: `console` (a readable line per event) or `json` (one JSON object per line).
        level: The lowest level written: `debug`, `info`, `warning`, `error` or a
            `logging` level number.
        stream: Where lines go; standard error if omitted.
        colors: Force colours on or off; None decides from the stream and `NO_COLOR`.
        env: The environment for `NO_COLOR`; `os.environ` if omitted.
        explain_failures: Whether console `registration-failed` lines carry their reason
            (off when the command prints it as its error line).

    Raises:
        ValueError: An unknown format or level.
    """
    out = sys.stderr if stream is None else stream
    if isinstance(level, str):
        if level.lower() not in _LEVELS:
            raise ValueError(f"unknown log level {level!r}; use one of {', '.join(_LEVELS)}")
        level_number = _LEVELS[level.lower()]
    else:
        level_number = level
    renderer: structlog.typing.Processor
    if format == "json":
        renderer = structlog.processors.JSONRenderer(
            serializer=json.dumps, default=_json_default, ensure_ascii=False
        )
    elif format == "console":
        use_colours = _use_colour(out, os.environ if env is None else env)
        renderer = ConsoleRenderer(
            colors=use_colours if colors is None else colors, explain_failures=explain_failures
        )
    else:
        raise ValueError(f"unknown log format {format!r}; use 'console' or 'json'")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Tracebacks become text here, before redaction, so they are redacted too.
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_number),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        context_class=dict,
        cache_logger_on_first_use=True,
    )


def get_logger(**initial_values: object) -> FilteringBoundLogger:
    """Returns a logger, with `initial_values` bound (e.g. `component="transport"`)."""
    return cast(FilteringBoundLogger, structlog.get_logger(**initial_values))
