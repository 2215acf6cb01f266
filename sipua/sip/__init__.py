"""The sans-IO SIP core: messages, parsing, framing (and, beside them, transactions and auth).

Only the standard library is used here: no sockets, no clocks, no global randomness.
"""

from __future__ import annotations

from sipua.sip.errors import FramingError, ParseError
from sipua.sip.fields import Contact, CSeq, NameAddress, Via
from sipua.sip.framing import (
    NEED_DATA,
    KeepalivePing,
    KeepalivePong,
    MessageFramed,
    StreamFramer,
)
from sipua.sip.headers import Headers
from sipua.sip.message import Request, Response, make_response, reason_phrase
from sipua.sip.parser import DEFAULT_MAX_MESSAGE_BYTES, parse_message
from sipua.sip.serializer import serialize
from sipua.sip.uri import AbsoluteUri, SipUri, TelUri, Uri, parse_uri

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "NEED_DATA",
    "AbsoluteUri",
    "CSeq",
    "Contact",
    "FramingError",
    "Headers",
    "KeepalivePing",
    "KeepalivePong",
    "MessageFramed",
    "NameAddress",
    "ParseError",
    "Request",
    "Response",
    "SipUri",
    "StreamFramer",
    "TelUri",
    "Uri",
    "Via",
    "make_response",
    "parse_message",
    "parse_uri",
    "reason_phrase",
    "serialize",
]
