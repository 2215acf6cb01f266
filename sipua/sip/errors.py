"""Protocol errors of the sans-IO core.

Two kinds, as in h11: a `LocalProtocolError` is our own misuse (calling a state machine with an
input its state does not allow); a `RemoteProtocolError` is the peer's fault (bytes that are not
valid SIP). A remote error carries `status_hint`, the SIP status a UAS should answer with (400 for
a bad header, 505 for a bad version, 513 for a message too large), and the message says what was
wrong and where.
"""

from __future__ import annotations

from typing import Final

# Error messages quote the peer's bytes to say what was wrong. A peer controls those bytes, so a
# message is bounded: it keeps its beginning and its end (where the explanation usually is) and
# elides the middle. This keeps logs readable and their size independent of the input.
MAX_ERROR_MESSAGE_CHARS: Final = 512
_ELISION: Final = " ... "


def bounded_message(message: str, limit: int = MAX_ERROR_MESSAGE_CHARS) -> str:
    """Returns `message`, shortened to at most `limit` characters by eliding its middle."""
    if len(message) <= limit:
        return message
    keep = limit - len(_ELISION)
    head = keep // 2
    return message[:head] + _ELISION + message[len(message) - (keep - head) :]


class ProtocolError(Exception):
    """Base of every error the SIP core raises."""

    def __init__(self, message: str, *, status_hint: int = 400) -> None:
        super().__init__(bounded_message(message))
        self.status_hint = status_hint


class LocalProtocolError(ProtocolError):
    """We asked the core to do something SIP does not allow in the current state."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that is not valid SIP."""


class ParseError(RemoteProtocolError):
    """A message could not be parsed; the message names the part that is wrong."""


class FramingError(RemoteProtocolError):
    """A byte stream cannot be split into messages (RFC 3261 §18.3); fatal for the connection."""
