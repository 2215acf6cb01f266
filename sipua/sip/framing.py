"""`StreamFramer`: split a reliable byte stream (TLS, TCP) into SIP messages.

Theory of operation. Bytes go in with `receive_data(data)` (`None` marks EOF); `next_event()`
hands out, one at a time:

- `KeepalivePing` for a CRLFCRLF between messages and `KeepalivePong` for a lone CRLF
  (RFC 5626 §4.4.1). RFC 3261 §7.5 says CRLFs before a start line are ignored; they are
  reported as keepalives so the transport can answer pings, and are otherwise harmless.
- `MessageFramed(data)` with the exact bytes of one message, start line to end of body. The
  framer does not parse the message: a malformed but framed message is answered with a 4xx
  by the UA (`parse_message` raises `ParseError` with a status hint) and the connection lives.
- `NEED_DATA` when the buffer holds no complete event (also after EOF once it is drained).

The end of a message is found with Content-Length, which is mandatory on a stream
(RFC 3261 §18.3). A missing, negative, unparseable or conflicting Content-Length, a header block
or message larger than `max_message_bytes`, or EOF inside a message raise `FramingError`: the
stream cannot be resynchronised, so the connection must be closed.

A lone CRLF at the very end of the buffer is ambiguous: a pong, or the first half of a ping
split across two reads. It is reported as a pong, because an endpoint that sends pings
(a client) is the one that receives pongs; a server receiving a split ping sees two pongs,
which costs nothing (a pong is never answered).

Linear time: the search for the end of the header block resumes where the previous one
stopped, and consumed bytes are dropped from the front of the buffer once per message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, final

from sipua.sip.errors import FramingError
from sipua.sip.parser import DEFAULT_MAX_MESSAGE_BYTES

# Content-Length or its compact form "l", at the start of a (possibly folded) header line.
_CONTENT_LENGTH_RE: Final = re.compile(
    rb"\r\n(?:content-length|l)[ \t]*+:[ \t]*+((?:[^\r\n]|\r\n[ \t])*+)", re.IGNORECASE
)
_CONTENT_LENGTH_FIRST_RE: Final = re.compile(
    rb"(?:content-length|l)[ \t]*+:[ \t]*+((?:[^\r\n]|\r\n[ \t])*+)", re.IGNORECASE
)
_WHITESPACE_RE: Final = re.compile(rb"\s+")


@final
@dataclass(frozen=True, slots=True)
class MessageFramed:
    """One whole message's bytes, ready for `parse_message`."""

    data: bytes


@final
@dataclass(frozen=True, slots=True)
class KeepalivePing:
    """A CRLFCRLF keepalive ping was received; answer it with a CRLF pong (RFC 5626 §4.4.1)."""


@final
@dataclass(frozen=True, slots=True)
class KeepalivePong:
    """A CRLF keepalive pong was received (RFC 5626 §4.4.1)."""


@final
class _NeedData:
    """Sentinel type of `NEED_DATA`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by `next_event` when more bytes are needed.
NEED_DATA: Final = _NeedData()

_PING: Final = KeepalivePing()
_PONG: Final = KeepalivePong()

FramerEvent = MessageFramed | KeepalivePing | KeepalivePong | _NeedData


class StreamFramer:
    """Frames SIP messages on a stream (RFC 3261 §18.3, RFC 5626 §4.4.1).

    Args:
        max_message_bytes: largest message (header block plus body) accepted.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._max = max_message_bytes
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already searched for CRLFCRLF
        # Length of the message at the head of the buffer, once its header block is complete:
        # a body arriving in small pieces is then waited for without re-reading the headers.
        self._total: int | None = None
        self._eof = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out."""
        return len(self._buffer)

    def pending(self, limit: int) -> bytes:
        """The first `limit` bytes received and not yet handed out.

        After a `FramingError` this is the head of the message that could not be framed, from
        which the transport can still try to answer it before closing (RFC 3261 §18.3).
        """
        return bytes(self._buffer[:limit])

    def receive_data(self, data: bytes | None) -> None:
        """Feed bytes from the stream; None means the peer closed it (EOF).

        Raises:
            FramingError: data after EOF.
        """
        if data is None:
            self._eof = True
        elif self._eof:
            raise FramingError("data received after EOF; the stream is closed")
        else:
            self._buffer += data

    def next_event(self) -> FramerEvent:
        """The next event, or `NEED_DATA`.

        Raises:
            FramingError: the stream cannot be framed; close the connection.
        """
        buf = self._buffer
        if buf.startswith(b"\r\n"):
            if buf.startswith(b"\r\n\r\n"):
                del buf[:4]
                return _PING
            if len(buf) > 2 or not self._eof or len(buf) == 2:
                del buf[:2]
                return _PONG
        if not buf:
            return NEED_DATA
        if self._total is not None:
            return self._body_event(self._total)
        end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
        if end < 0:
            if len(buf) > self._max:
                raise FramingError(
                    f"header block exceeds {self._max} bytes without an empty line",
                    status_hint=513,
                )
            self._scanned = len(buf)
            if self._eof:
                raise FramingError(
                    f"connection closed in the middle of a message ({len(buf)} bytes)"
                )
            return NEED_DATA
        total = end + 4 + self._content_length(buf, end + 2)
        if total > self._max:
            raise FramingError(
                f"message of {total} bytes exceeds the {self._max}-byte limit", status_hint=513
            )
        self._total = total
        return self._body_event(total)

    def _body_event(self, total: int) -> FramerEvent:
        buf = self._buffer
        if len(buf) < total:
            if self._eof:
                raise FramingError(
                    f"connection closed in the middle of a message body "
                    f"({len(buf)} of {total} bytes)"
                )
            return NEED_DATA
        data = bytes(buf[:total])
        del buf[:total]
        self._scanned = 0
        self._total = None
        return MessageFramed(data)

    def _content_length(self, buf: bytearray, head_end: int) -> int:
        # Searched in place (no copy of the header block); the start line is checked too, as
        # if a CRLF preceded it.
        found: list[bytes] = _CONTENT_LENGTH_RE.findall(buf, 0, head_end)
        first = _CONTENT_LENGTH_FIRST_RE.match(buf, 0, head_end)
        if first is not None:
            found.insert(0, first.group(1))
        if len(found) == 1:
            value = found[0]
            if value.isdigit() and len(value) <= 12:
                return int(value)  # the usual case, without the general rules below
        values = {_WHITESPACE_RE.sub(b"", m) for m in found}
        if not values:
            raise FramingError("message on a stream has no Content-Length (RFC 3261 §18.3)")
        if len(values) > 1:
            raise FramingError(f"conflicting Content-Length values {sorted(values)[:4]}")
        (value,) = values
        if not value.isdigit() or len(value) > 12:
            raise FramingError(f"Content-Length {value[:40]!r} is not a non-negative integer")
        return int(value)
