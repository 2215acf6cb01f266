"""What must hold for any input: one check per fuzz target, shared by the harnesses and the tests.

Each `check_*` function takes the raw input bytes of one fuzz case and returns normally when the
code under test behaved. It raises:

- `PropertyViolation` when a property of the target is broken (a parsed message does not
  survive a serialize/parse round trip, the framer buffers more than its cap, a loop does not
  end, an error message echoes the input without bound...);
- any other exception when one escaped the code under test that its contract does not allow
  (the contract of each target is in its docstring).

The harnesses in this directory call these under atheris; `tests/robustness` replays every saved
reproducer through the same function, so a fuzz finding and its regression test cannot drift
apart.

Input layouts (so a reproducer file is self-contained):

- parse_message, sip_uri: the bytes are the message / the text (UTF-8 with surrogateescape).
- stream_framer: byte 0 picks the framer's cap, bytes 1-2 seed the chunking, the rest is the
  stream. Chunk sizes are drawn from `random.Random(seed)`, from 1 byte to 4 KiB.
- digest_challenge: `challenge [NUL request-uri]`; the URI defaults to `sips:example.com`.
- certificates: the file contents (PEM or DER).
- sdp_offer: the SDP body of an INVITE.
- endpoint: a sequence of SIP messages separated by `ENDPOINT_SEPARATOR`; byte 0 of each picks
  the connection it arrives on and how much time passes before it.
- rtp_packet: byte 0 picks the SRTP suite (or none) the datagram is unprotected with, the rest
  is the datagram.
- sdp_crypto: byte 0 picks the SRTP policy, the TLS flag and whether the bytes are an offer to
  answer or an answer to our offer; the rest is the SDP.
- http_response: byte 0 picks the body limit (`64 << (byte % 8)` bytes), bytes 1-2 seed the
  chunking (as stream_framer), the rest is what a provisioning server answered.
- provisioned_files: byte 0 even: the content of a trusted certificates URL; odd: a device
  certificate URL's bundle (certificate, key, chain); the rest is the file.
- known_keys: the known-keys file (trust on first use).
- phone_config: a phone auto-provisioning `.cfg` file.
"""

from __future__ import annotations

import json
import random
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Final

from sipua.errors import CertificateError
from sipua.media import rtcp
from sipua.media.dtmf import DtmfReceiver
from sipua.media.errors import MediaRefused, RtpError, SrtpError
from sipua.media.negotiation import accept_answer, answer_offer, make_offer
from sipua.media.rtp import build_rtp, is_rtcp, parse_rtp
from sipua.media.sdp import SdpError, build_answer, build_offer, parse_offer
from sipua.media.srtp import SUITES, SrtpContext
from sipua.provision.content import trusted_certificates
from sipua.provision.fetch import FetchError, ResponseReader
from sipua.settings.model import SRTP_POLICIES
from sipua.settings.phone import PhoneConfigError, parse_phone_config, translate
from sipua.sip import (
    NEED_DATA,
    KeepalivePing,
    KeepalivePong,
    MessageFramed,
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_message,
    parse_uri,
    serialize,
)
from sipua.sip.digest import (
    DigestChallengeError,
    DigestSession,
    NoUsableChallenge,
    build_credentials,
    parse_challenge,
    redact_credentials,
)
from sipua.sip.endpoint import AnswerPolicy, Endpoint, Link, Send
from sipua.sip.errors import FramingError, ParseError, ProtocolError
from sipua.sip.fields import (
    NameAddress,
    Via,
    parse_contacts,
    parse_name_address,
    parse_name_address_list,
    parse_via,
)
from sipua.sip.headers import Headers
from sipua.sip.parser import DEFAULT_MAX_MESSAGE_BYTES
from sipua.sip.rejection import error_response, unreadable_response_key
from sipua.sip.uri import SipUri
from sipua.tls.certs import (
    CertSummary,
    key_matches,
    load_certificate_file,
    load_certificates,
    load_private_key,
)
from sipua.tls.stores.device import parse_device_bundle
from sipua.tls.stores.known import KnownKeysError, format_known_keys, parse_known_keys
from sipua.tls.stores.trusted import MAX_CUSTOM_TRUSTED
from sipua.tls.trust.identity import check_identity
from sipua.ua.call_media import MediaDescriber

#: Longest error message accepted. Every error in the core quotes at most a few hundred
#: characters of the input; an error that echoes a whole 64 KiB message floods logs.
MAX_ERROR_CHARS: Final = 2048

#: A password no output may ever contain.
FUZZ_PASSWORD: Final = "fuzz-s3cret-PASSWORD"


class PropertyViolation(AssertionError):
    """A property of the target does not hold for this input."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise PropertyViolation(message)


def _check_error(exc: BaseException, peer_input: bytes) -> None:
    text = str(exc)
    _require(
        len(text) <= MAX_ERROR_CHARS,
        f"{type(exc).__name__} message is {len(text)} characters (limit {MAX_ERROR_CHARS}); "
        f"it echoes the input without bound: {text[:160]!r}...",
    )
    # Our password must never show; quoting what the peer itself sent leaks nothing of ours.
    if FUZZ_PASSWORD.encode() not in peer_input:
        _require(FUZZ_PASSWORD not in text, f"{type(exc).__name__} message contains the password")
    if isinstance(exc, ProtocolError):
        _require(
            100 <= exc.status_hint <= 699, f"status_hint {exc.status_hint} is not a SIP status"
        )


def _text(data: bytes) -> str:
    # What the parser hands to header and URI code: UTF-8 decoded with surrogateescape.
    return data.decode("utf-8", "surrogateescape")


# --- parse_message -----------------------------------------------------------------------------

_ACCESSORS: Final = (
    "call_id",
    "cseq",
    "vias",
    "top_via",
    "from_",
    "to",
    "contacts",
    "max_forwards",
    "expires",
    "min_expires",
    "content_type",
    "routes",
    "record_routes",
    "supported",
    "require",
)


def _typed_values(msg: Request | Response, data: bytes) -> Iterator[object]:
    """Every typed header value of `msg` (parsed from `data`) that parses; a malformed one may
    raise ParseError."""
    for name in _ACCESSORS:
        try:
            value = getattr(msg, name)
        except ParseError as exc:
            _check_error(exc, data)
            continue
        if isinstance(value, list):
            yield from value
        else:
            yield value


def _check_field_round_trip(value: object) -> None:
    """A typed value written back with str() must parse to the same value (dialogs do this)."""
    parse: Callable[[str], object]
    if isinstance(value, Via):
        text = str(value)
        parsed: object = parse_via(text)
        _require(parsed == [value], f"Via {text!r} re-parses as {parsed!r}, not {value!r}")
        return
    if isinstance(value, NameAddress):
        parse = parse_contacts if type(value) is not NameAddress else parse_name_address
        text = str(value)
        try:
            parsed = parse(text)
        except ParseError as exc:
            raise PropertyViolation(f"{value!r} formats as {text!r}, which fails: {exc}") from exc
        if isinstance(parsed, list):
            _require(parsed == [value], f"{text!r} re-parses as {parsed!r}, not {value!r}")
        else:
            _require(parsed == value, f"{text!r} re-parses as {parsed!r}, not {value!r}")


def check_parse_message(data: bytes) -> None:
    """`parse_message`: only ParseError escapes; what parses, round-trips.

    Properties: typed accessors raise only ParseError and their values format back to text that
    parses to the same value; `serialize` output parses to an equal message and is a fixed point;
    a response built with `make_response` to a parsed request serializes to a valid message.
    """
    try:
        msg = parse_message(data)
    except ParseError as exc:
        _check_error(exc, data)
        _check_rejection(data, exc)
        return
    for value in _typed_values(msg, data):
        _check_field_round_trip(value)
    wire = serialize(msg)
    if len(wire) > DEFAULT_MAX_MESSAGE_BYTES:
        return  # the added Content-Length pushed it over the limit: 513 is correct
    try:
        again = parse_message(wire)
    except ParseError as exc:
        raise PropertyViolation(f"serialized message does not parse ({exc}): {wire!r}") from exc
    _require(again == msg, f"round trip changed the message: {wire!r}")
    _require(serialize(again) == wire, f"serialize is not a fixed point for {wire!r}")
    if isinstance(msg, Request):
        response = make_response(msg, 400, to_tag="fuzz1")
        answer = serialize(response)
        try:
            parse_message(answer)
        except ParseError as exc:
            raise PropertyViolation(f"make_response gave an invalid response ({exc})") from exc


def _check_rejection(data: bytes, exc: ParseError) -> None:
    """What the connection does with a refused message: the error response it may send is
    one framed message with the hinted status (the garbled fields it copies verbatim, as RFC
    4475 asks, cannot break out of their lines), and reading the transaction of an unreadable
    response never raises."""
    response = error_response(data, exc.status_hint, str(exc), to_tag="fuzz1")
    if response is not None:
        wire = serialize(response)
        _require(
            wire.startswith(f"SIP/2.0 {exc.status_hint} ".encode()),
            f"error response status line: {wire[:60]!r}",
        )
        _require(
            wire.endswith(b"\r\n\r\n") and wire.count(b"\r\n\r\n") == 1,
            f"error response is not one bodiless message: {wire[-200:]!r}",
        )
        _require(b"\r\n " not in wire and b"\r\n\t" not in wire, "a folded copied line")
    key = unreadable_response_key(data)
    _require(key is None or (bool(key[0]) and bool(key[1])), f"an empty transaction key: {key!r}")


# --- StreamFramer ------------------------------------------------------------------------------

_CAPS: Final = (64, 256, 1024, 4096, DEFAULT_MAX_MESSAGE_BYTES)


def framer_cap(selector: int) -> int:
    """The framer cap chosen by byte 0 of a stream_framer input."""
    return _CAPS[selector % len(_CAPS)]


def _chunks(stream: bytes, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    pos = 0
    while pos < len(stream):
        size = rng.randint(1, 1 << rng.randint(0, 12))
        yield stream[pos : pos + size]
        pos += size


def _check_framed(data: bytes, cap: int) -> None:
    _require(len(data) <= cap, f"framed message of {len(data)} bytes exceeds the cap {cap}")
    try:
        msg = parse_message(data, max_bytes=max(cap, DEFAULT_MAX_MESSAGE_BYTES))
    except ParseError as exc:
        _check_error(exc, data)
        return
    # The framer and the parser must agree on where the message ends (RFC 3261 §18.3):
    # if they did not, a body could smuggle a second message past one of them.
    head_end = data.find(b"\r\n\r\n") + 4
    _require(
        msg.body == data[head_end:],
        f"framer framed a {len(data) - head_end}-byte body, parser read {len(msg.body)} bytes",
    )
    _require(
        "content-length" in msg.headers,
        "framer found a Content-Length that the parsed message does not have",
    )


def _drain(framer: StreamFramer, cap: int, out: bytearray) -> None:
    # Every event but NEED_DATA consumes at least two bytes, so this bound is generous.
    for _ in range(framer.buffered // 2 + 2):
        event = framer.next_event()
        if event is NEED_DATA:
            _require(
                framer.buffered <= cap,
                f"framer holds {framer.buffered} bytes after draining (cap {cap})",
            )
            return
        if isinstance(event, MessageFramed):
            _check_framed(event.data, cap)
            out += event.data
        elif isinstance(event, KeepalivePing):
            out += b"\r\n\r\n"
        elif isinstance(event, KeepalivePong):
            out += b"\r\n"
        else:
            raise PropertyViolation(f"unexpected framer event {event!r}")
    raise PropertyViolation("next_event keeps returning events without consuming input")


def check_stream_framer(data: bytes) -> None:
    """`StreamFramer` fed in random chunks: only FramingError escapes; bounded; lossless.

    Properties: after each chunk, at most cap + chunk bytes are buffered, and at most cap once
    drained; `next_event` reaches NEED_DATA; the events account for every byte of the stream,
    in order; each framed message that parses has the body the framer framed.
    """
    if len(data) < 3:
        return
    cap = framer_cap(data[0])
    stream = data[3:]
    framer = StreamFramer(max_message_bytes=cap)
    out = bytearray()
    try:
        for chunk in _chunks(stream, int.from_bytes(data[1:3], "big")):
            framer.receive_data(chunk)
            _require(
                framer.buffered <= cap + len(chunk),
                f"framer holds {framer.buffered} bytes: more than cap {cap} + chunk {len(chunk)}",
            )
            _drain(framer, cap, out)
        framer.receive_data(None)
        _drain(framer, cap, out)
    except FramingError as exc:
        _check_error(exc, data)
        return
    _require(framer.buffered == 0, f"{framer.buffered} bytes left unreported at EOF")
    _require(bytes(out) == stream, "framer events do not reproduce the stream byte for byte")


# --- URIs and name-addr ------------------------------------------------------------------------


def check_sip_uri(data: bytes) -> None:
    """`parse_uri`, `SipUri.parse`, name-addr, Contact and Via parsing: only ParseError escapes.

    Properties: every parsed value formats to text that parses to an equal value, str() is a
    fixed point after one round, and a SIP URI `matches` itself and its re-parsed form.
    """
    text = _text(data)
    try:
        uri = parse_uri(text)
    except ParseError as exc:
        _check_error(exc, data)
    else:
        written = str(uri)
        try:
            again = parse_uri(written)
        except ParseError as exc:
            raise PropertyViolation(
                f"{text!r} parses but its str {written!r} fails: {exc}"
            ) from exc
        _require(again == uri, f"{text!r} -> {written!r} re-parses as {again!r}, not {uri!r}")
        _require(str(again) == written, f"str() of {written!r} is not a fixed point")
        if isinstance(uri, SipUri):
            _require(uri.matches(uri), f"{written!r} does not match itself (RFC 3261 §19.1.4)")
            _require(uri.matches(again), f"{written!r} does not match its re-parsed form")
    with suppress(ParseError):
        SipUri.parse(text)
    for parse in (parse_name_address, parse_contacts, parse_name_address_list, parse_via):
        try:
            parsed: object = parse(text)
        except ParseError as exc:
            _check_error(exc, data)
            continue
        for value in parsed if isinstance(parsed, list) else [parsed]:
            _check_field_round_trip(value)


# --- digest challenges -------------------------------------------------------------------------


def check_digest_challenge(data: bytes) -> None:
    """`parse_challenge` and `DigestSession`: only their documented errors escape.

    Properties: credentials answering a parsed challenge are a valid header value (no CR/LF),
    read back (with the same auth-param grammar) as the values they were built from, never
    contain the password, and `redact_credentials` removes the response digest.
    """
    value, _, uri = _text(data).partition("\x00")
    uri = uri or "sips:example.com"
    try:
        challenge = parse_challenge(value)
    except DigestChallengeError as exc:
        _check_error(exc, data)
        return
    if "\r" in value or "\n" in value:
        return  # a parsed header value never holds CR or LF; the rest needs one
    session = DigestSession(username="alice", rng=random.Random(1))
    try:
        session.handle_challenges([value])
    except (DigestChallengeError, NoUsableChallenge) as exc:
        _check_error(exc, data)
    if not challenge.usable:
        return
    try:
        parse_uri(uri)
    except ParseError:
        return  # our Request-URI is always a URI we parsed
    creds = build_credentials(
        challenge,
        username="alice",
        password=FUZZ_PASSWORD,
        method="REGISTER",
        uri=uri,
        cnonce="0a4f113b",
    )
    header = creds.header_value()
    _require(FUZZ_PASSWORD not in header, "the credentials contain the password")
    try:
        Headers([(creds.header_name, header)])
    except ValueError as exc:
        raise PropertyViolation(f"credentials are not a valid header value: {exc}") from exc
    try:
        echoed = dict(parse_challenge(header, header=creds.header_name).params)
    except DigestChallengeError as exc:
        raise PropertyViolation(f"credentials {header!r} do not parse back: {exc}") from exc
    for name in ("realm", "nonce", "uri", "response", "opaque", "qop", "nc", "cnonce"):
        sent = getattr(creds, name)
        _require(
            echoed.get(name) == sent,
            f"credentials carry {name}={echoed.get(name)!r}, built from {sent!r}",
        )
    redacted = redact_credentials(header)
    _require(
        creds.response not in redacted,
        f"redact_credentials leaves the response digest in {redacted!r}",
    )
    for answered in session.credentials(method="REGISTER", uri=uri, password=FUZZ_PASSWORD):
        _require(FUZZ_PASSWORD not in repr(answered), "a Credentials repr shows the password")


# --- certificates ------------------------------------------------------------------------------


def check_certificates(data: bytes) -> None:
    """Certificate and key loading: only CertificateError escapes; loaded certs are usable.

    Properties: every certificate `load_certificates` returns can be summarised
    (`CertSummary.of`, what `sipua cert` shows) and checked for a SIP identity
    (`check_identity`, what every handshake does) without an exception.
    """
    try:
        certs = load_certificates(data, source="fuzz.pem")
    except CertificateError as exc:
        _check_error(exc, data)
        certs = []
    for cert in certs:
        # The handshake path first (a peer's certificate), then what `sipua cert` prints.
        check_identity(cert, "example.com", allow_wildcards=True)
        json.dumps(CertSummary.of(cert).as_json())
    for passphrase in (None, b"fuzz"):
        try:
            load_private_key(data, source="fuzz.key", passphrase=passphrase)
        except CertificateError as exc:
            _check_error(exc, data)
    if data[:1] == b"\x00":
        # Through a real file now and then (the path `sipua cert import` takes).
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "fuzz.crt")
            path.write_bytes(data)
            try:
                load_certificate_file(path)
            except CertificateError as exc:
                _check_error(exc, data)


def check_sdp_offer(data: bytes) -> None:
    """`parse_offer` and `build_answer`: only `SdpError` escapes, with a bounded message.

    Properties: an answer has exactly as many m= lines as the offer (RFC 3264 §6), announces
    our port on exactly one stream, and is itself SDP that `parse_offer` reads; an offer
    `build_offer` makes is answered by `build_answer`.
    """
    try:
        streams = parse_offer(data)
        answer = build_answer(data, address="192.0.2.1", port=4000, session_id=7)
    except SdpError as exc:
        _check_error(exc, data)
        return
    if answer is None:
        return
    try:
        answered = parse_offer(answer)
    except SdpError as exc:
        raise PropertyViolation(f"the answer is not SDP we read: {exc}") from exc
    _require(
        len(answered) == len(streams),
        f"answer has {len(answered)} m= lines for an offer with {len(streams)}",
    )
    _require(
        sum(1 for stream in answered if stream.port == 4000) == 1,
        "the answer accepts other than exactly one stream",
    )
    offer = build_offer(address="192.0.2.1", port=4000, session_id=7)
    _require(
        build_answer(offer, address="192.0.2.2", port=4002, session_id=8) is not None,
        "our own offer is not acceptable to our own answerer",
    )


#: Separates the messages of one `endpoint` input.
ENDPOINT_SEPARATOR: Final = b"\x00\x00--sipua--\x00\x00"
#: Messages fed per input (bounds the work of one case).
MAX_ENDPOINT_MESSAGES: Final = 16


def check_endpoint(data: bytes) -> None:
    """`Endpoint` fed any sequence of messages on two connections: nothing but its documented
    behaviour. Properties: no exception escapes `receive`, `handle_timer` or
    `connection_closed`; every message it wants sent serializes and parses back; time only
    moves it forward, and after every connection closed and all deadlines passed no call and
    no deadline is left (a peer that has gone holds nothing).
    """
    endpoint: Endpoint[int] = Endpoint(
        policy=AnswerPolicy(delay=0.5, hangup_after=2.0),
        describer=MediaDescriber(random.Random(1)),
        rng=random.Random(2),
        users=frozenset({"alice"}),
    )
    links = [
        Link(
            handle=h,
            peer=f"127.0.0.{h + 2}:5061",
            local="127.0.0.1:5061",
            contact="sips:alice@127.0.0.1:5061",
            outbound=h == 0,
        )
        for h in range(2)
    ]
    now = 0.0
    for chunk in data.split(ENDPOINT_SEPARATOR)[:MAX_ENDPOINT_MESSAGES]:
        if not chunk:
            continue
        selector, body = chunk[0], chunk[1:]
        now += (selector >> 1) / 8
        try:
            message = parse_message(body)
        except ParseError:
            continue
        endpoint.receive(message, links[selector & 1], now)
        _drain_endpoint(endpoint)
        endpoint.handle_timer(now)
        _drain_endpoint(endpoint)
    for link in links:
        endpoint.connection_closed(link.handle, "closed by peer", now)
    _drain_endpoint(endpoint)
    for _ in range(1000):
        deadline = endpoint.next_deadline()
        if deadline is None:
            break
        _require(deadline >= now - 1e-9, f"a deadline {deadline} lies before now {now}")
        now = max(now, deadline)
        endpoint.handle_timer(now)
        _drain_endpoint(endpoint)
    _require(endpoint.next_deadline() is None, "deadlines remain after 1000 timer rounds")
    _require(endpoint.active_calls == 0, f"{endpoint.active_calls} calls outlived their peers")


def _drain_endpoint(endpoint: Endpoint[int]) -> None:
    for _ in range(10_000):
        event = endpoint.next_event()
        if event is None:
            return
        if isinstance(event, Send):
            wire = serialize(event.message)
            try:
                parse_message(wire)
            except ParseError as exc:
                # A response copying a garbled field verbatim (RFC 3261 §8.2.6.2) may not
                # parse; it must still be one framed message with a status line.
                _require(
                    isinstance(event.message, Response) and wire.startswith(b"SIP/2.0 "),
                    f"the endpoint sent a message that does not parse: {exc}",
                )
    raise PropertyViolation("the endpoint queued more than 10000 events for one input")


# --- rtp_packet ---------------------------------------------------------------------------------

#: Fixed keys for the fuzzed SRTP contexts (the fuzzer cannot forge a tag; it exercises the
#: paths that refuse packets).
_FUZZ_KEY: Final = bytes(range(44))
_SRTP_CONTEXTS: Final = [
    SrtpContext(
        suite, local_key=_FUZZ_KEY[: suite.master_bytes], remote_key=_FUZZ_KEY[: suite.master_bytes]
    )
    for suite in SUITES
]


def check_rtp_packet(data: bytes) -> None:
    """`parse_rtp`, `parse_compound`, `DtmfReceiver.feed` and SRTP unprotect on a datagram.

    Only `RtpError` escapes the parsers and only `SrtpError` (auth failure included) escapes
    unprotect (the fuzzer cannot forge a tag: this covers the refusing paths; the round trips
    are unit tests); a parsed RTP packet rebuilds to the same packet; errors are bounded.
    """
    if not data:
        return
    selector, datagram = data[0], data[1:]
    if selector < len(_SRTP_CONTEXTS):
        context = _SRTP_CONTEXTS[selector]
        try:
            context.unprotect_rtcp(datagram) if is_rtcp(datagram) else context.unprotect(datagram)
        except SrtpError as exc:
            _check_error(exc, data)
    try:
        packet = parse_rtp(datagram)
    except RtpError as exc:
        _check_error(exc, data)
    else:
        again = parse_rtp(build_rtp(packet))
        _require(again == packet, f"RTP packet does not survive a round trip: {packet!r:.200}")
        with suppress(RtpError):
            DtmfReceiver().feed(packet.timestamp, packet.payload)
    try:
        rtcp.parse_compound(datagram)
    except RtpError as exc:
        _check_error(exc, data)


# --- sdp_crypto ---------------------------------------------------------------------------------


#: An SDES key parameter shown in clear (a quoted one reads `inline:<redacted>`).
_SDES_KEY_SHOWN: Final = re.compile(r"inline:(?!<redacted>)[A-Za-z0-9+/]", re.I)


def check_sdp_crypto(data: bytes) -> None:
    """The SRTP policy over a peer's SDP: `answer_offer` or `accept_answer` under each policy.

    Only `MediaRefused` escapes (status 488), its message is bounded and shows no `inline:` key
    unredacted; an
    answer we write is SDP we read, accepts one stream, and has a crypto line exactly when the
    plan is encrypted; a plan's remote port is the one announced.
    """
    if not data:
        return
    selector, body = data[0], data[1:]
    policy = SRTP_POLICIES[selector % 3]
    secure = bool(selector & 4)
    rng = random.Random(selector)
    try:
        if selector & 8:
            local = make_offer(
                policy=policy if secure else "optional",
                signalling_secure=secure,
                address="192.0.2.1",
                port=4000,
                session_id=7,
                random_bytes=rng.randbytes,
            )
            plan = accept_answer(local, body, policy=policy, signalling_secure=secure)
        else:
            answer, plan = answer_offer(
                body,
                policy=policy,
                signalling_secure=secure,
                address="192.0.2.1",
                port=4000,
                session_id=7,
                random_bytes=rng.randbytes,
            )
            streams = parse_offer(answer)
            _require(sum(1 for s in streams if s.port == 4000) == 1, "answer accepts one stream")
            crypto = [line for s in streams for line in s.crypto]
            _require(bool(crypto) == (plan.srtp is not None), "answer crypto and plan disagree")
    except MediaRefused as exc:
        _check_error(exc, data)
        _require(exc.status == 488, f"refusal status {exc.status}")
        _require(_SDES_KEY_SHOWN.search(str(exc)) is None, "a refusal quotes an SDES key")
        return
    _require(0 <= plan.remote_port <= 65535, "remote port out of range")
    _require(secure or plan.srtp is None, "SRTP keys accepted over a non-TLS hop")
    _require(policy != "compulsory" or plan.srtp is not None, "compulsory accepted plain RTP")


#: Fuzz target name -> oracle.
def check_http_response(data: bytes) -> None:
    """`ResponseReader` (h11) over a provisioning server's answer: only `FetchError` escapes.

    Properties: a body is returned at most once, never larger than the limit, and feeding ends
    (a body or an error) once the end of the stream has been fed.
    """
    if len(data) < 3:
        return
    limit = 64 << (data[0] % 8)
    rng = random.Random(int.from_bytes(data[1:3], "big"))
    stream = data[3:]
    reader = ResponseReader("https://fuzz.test/ca.pem", limit=limit)
    reader.request("fuzz.test", "/ca.pem")
    position = 0
    try:
        while True:
            size = rng.randint(1, 4096)
            chunk = stream[position : position + size]
            position += len(chunk)
            body = reader.feed(chunk)
            if body is not None:
                _require(len(body) <= limit, f"a body of {len(body)} bytes passed limit {limit}")
                return
            _require(bool(chunk), "the reader asked for more after the end of the stream")
    except FetchError as exc:
        _check_error(exc, data)


def check_provisioned_files(data: bytes) -> None:
    """What a provisioning URL serves: only `CertificateError` escapes its checks.

    Properties: at most `MAX_CUSTOM_TRUSTED` trusted certificates pass, never with a private
    key; a device bundle that passes has a key matching its leaf.
    """
    if not data:
        return
    body = data[1:]
    try:
        if data[0] % 2 == 0:
            certs = trusted_certificates(body, source="https://fuzz.test/ca.pem")
            _require(len(certs) <= MAX_CUSTOM_TRUSTED, f"{len(certs)} trusted certificates passed")
            _require(b"PRIVATE KEY-----" not in body or not certs, "a private key passed")
            for cert in certs:
                json.dumps(CertSummary.of(cert).as_json())
        else:
            key, leaf, _chain = parse_device_bundle(body, source="https://fuzz.test/dev.pem")
            _require(key_matches(leaf, key), "a device bundle passed with a foreign key")
    except CertificateError as exc:
        _check_error(exc, data)


def check_known_keys(data: bytes) -> None:
    """`parse_known_keys`: only `KnownKeysError` escapes; what it reads survives a rewrite."""
    try:
        records = parse_known_keys(data, source="known-keys")
    except KnownKeysError as exc:
        _check_error(exc, data)
        return
    again = parse_known_keys(format_known_keys(records), source="rewritten")
    _require(again == records, "the known keys changed through a rewrite")


def check_phone_config(data: bytes) -> None:
    """`parse_phone_config` and `translate`: only `PhoneConfigError` escapes.

    Properties: every imported account is a `sips:` AOR; no password reaches the lists of
    unused or refused keys (they are printed).
    """
    try:
        entries = parse_phone_config(data, source="phone.cfg")
        imported = translate(entries, source="phone.cfg")
    except PhoneConfigError as exc:
        _check_error(exc, data)
        return
    # A password that is also part of a key or another value (a host "example.test" and the
    # password "test") is not a leak when that key or value is shown.
    others = [*entries, *(v for k, v in entries.items() if not k.endswith(".password"))]
    passwords = {
        v
        for k, v in entries.items()
        if k.endswith(".password") and len(v) > 3 and not any(v in other for other in others)
    }
    shown = " ".join([*imported.unused, *imported.refused])
    for account in imported.accounts:
        _require(account.aor.startswith("sips:"), f"imported a non-SIPS AOR {account.aor!r}")
    for password in passwords:
        _require(password not in shown, "a password reached the printed key lists")


TARGETS: Final[dict[str, Callable[[bytes], None]]] = {
    "parse_message": check_parse_message,
    "stream_framer": check_stream_framer,
    "sip_uri": check_sip_uri,
    "digest_challenge": check_digest_challenge,
    "certificates": check_certificates,
    "sdp_offer": check_sdp_offer,
    "endpoint": check_endpoint,
    "rtp_packet": check_rtp_packet,
    "sdp_crypto": check_sdp_crypto,
    "http_response": check_http_response,
    "provisioned_files": check_provisioned_files,
    "known_keys": check_known_keys,
    "phone_config": check_phone_config,
}
