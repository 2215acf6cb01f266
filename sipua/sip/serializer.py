"""`serialize`: a `Request` or `Response` to wire bytes.

Content-Length is always computed from the body, never trusted (RFC 3261 §18.3 makes it
mandatory on streams, and a stale value would desynchronise the peer's framer). An existing
Content-Length field keeps its position and spelling ("l" stays "l") with the value replaced;
without one, "Content-Length" is appended. Header values are encoded as UTF-8 with
`surrogateescape`, the inverse of the parser's decoding, so unusual bytes round-trip.
"""

from __future__ import annotations

from sipua.sip.headers import header_key
from sipua.sip.message import SIP_VERSION, Request, Response


def serialize(msg: Request | Response) -> bytes:
    """Encode a message for the wire.

    Args:
        msg: the message.

    Returns:
        Start line, header fields, CRLF and body; Content-Length equals `len(msg.body)`.
    """
    if isinstance(msg, Request):
        lines = [f"{msg.method} {msg.uri} {SIP_VERSION}"]
    else:
        lines = [f"{SIP_VERSION} {msg.status} {msg.reason}"]
    length = str(len(msg.body))
    headers = msg.headers
    if "content-length" not in headers._get_index():
        # The usual case for a message sipua built: no key to compute per field.
        lines += [f"{name}: {value}" for name, value in headers._items]
        lines.append(f"Content-Length: {length}\r\n\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + msg.body
    wrote_length = False
    for name, value in headers._items:
        if header_key(name) == "content-length":
            if wrote_length:
                continue
            value = length
            wrote_length = True
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + msg.body
