"""Round trips and robustness: serialize(parse(b)) parses equal; parse(serialize(m)) == m;
only ParseError ever escapes parse_message, whatever the bytes."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipua.sip import (
    Headers,
    ParseError,
    Request,
    Response,
    SipUri,
    parse_message,
    serialize,
)
from tests.support.messages import MIX

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "rfc4475"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())["cases"]
TORTURE = [(CORPUS / c["file"]).read_bytes() for c in EXPECTED.values()]


def _accepted() -> list[bytes]:
    out = []
    for data in [*TORTURE, *MIX]:
        try:
            parse_message(data)
        except ParseError:
            continue
        out.append(data)
    return out


def test_every_accepted_message_round_trips() -> None:
    accepted = _accepted()
    assert len(accepted) >= 30
    for data in accepted:
        msg = parse_message(data)
        again = parse_message(serialize(msg))
        assert again == msg
        assert serialize(again) == serialize(msg)


tokens = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
    min_size=1,
    max_size=12,
)
labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=3).map(lambda parts: ".".join(["h" + p for p in parts])),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.sampled_from(["[2001:db8::1]", "[::1]", "[fe80::1:2:3]"]),
)
user_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=1, max_size=10
)
uri_params = st.dictionaries(labels, st.one_of(st.none(), labels), max_size=3)
sip_uris = st.builds(
    SipUri,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.one_of(st.none(), user_text),
    host=hosts,
    port=st.one_of(st.none(), st.integers(1, 65535)),
    params=uri_params,
)
methods = st.one_of(st.sampled_from(["INVITE", "REGISTER", "OPTIONS", "BYE"]), tokens)
display = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12),
)
bodies = st.binary(max_size=300)
extra_headers = st.lists(
    st.tuples(
        st.sampled_from(["Subject", "X-Note", "Supported", "User-Agent", "Allow"]),
        st.text(alphabet='abc xyz,;="<>:/', max_size=20).map(str.strip),
    ),
    max_size=4,
)


def _na(name: str | None, uri: SipUri, tag: str | None) -> str:
    from sipua.sip import NameAddress

    return str(NameAddress(name, uri, {} if tag is None else {"tag": tag}))


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(methods)
    vias = draw(
        st.lists(
            st.tuples(hosts, st.one_of(st.none(), st.integers(1, 65535)), labels),
            min_size=1,
            max_size=3,
        )
    )
    items = [
        ("Via", f"SIP/2.0/TLS {h}{'' if p is None else f':{p}'};branch=z9hG4bK{b}")
        for h, p, b in vias
    ]
    items += [
        ("From", _na(draw(display), draw(sip_uris), draw(labels))),
        ("To", _na(draw(display), draw(sip_uris), draw(st.one_of(st.none(), labels)))),
        ("Call-ID", draw(tokens)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
        *[(n, v) for n, v in draw(extra_headers) if '"' not in v and "<" not in v],
    ]
    return Request(method, draw(sip_uris), Headers(items), draw(bodies))


@given(requests())
@settings(max_examples=150, deadline=None)
def test_parse_of_serialized_request_is_equal(msg: Request) -> None:
    assert parse_message(serialize(msg)) == msg


@given(requests(), st.integers(100, 699), st.text(alphabet="ab cdé", max_size=10))
@settings(max_examples=100, deadline=None)
def test_parse_of_serialized_response_is_equal(req: Request, status: int, reason: str) -> None:
    msg = Response(status, reason, req.headers, req.body)
    assert parse_message(serialize(msg)) == msg


def _only_parse_error(data: bytes) -> None:
    # Any other exception propagates and fails the test.
    with contextlib.suppress(ParseError):
        parse_message(data)


@given(st.binary(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_raise_only_parse_error(data: bytes) -> None:
    _only_parse_error(data)


@given(
    st.sampled_from(TORTURE + list(MIX)),
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 4000),
)
@settings(max_examples=400, deadline=None)
def test_mutated_torture_messages_raise_only_parse_error(
    data: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    buf = bytearray(data)
    for pos, byte in edits:
        buf[pos % len(buf)] = byte
    _only_parse_error(bytes(buf))
    _only_parse_error(bytes(buf[: cut % (len(buf) + 1)]))


def test_oversized_message_is_513() -> None:
    data = MIX[0] + b"x" * (64 * 1024)
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status_hint == 513
