from __future__ import annotations

import pytest

from sipua.sip import Headers, ParseError
from sipua.sip.headers import split_list


def test_compact_forms_equal_full_names() -> None:
    h = Headers([("v", "SIP/2.0/TLS a"), ("Via", "SIP/2.0/TLS b"), ("i", "id"), ("m", "<sip:x@y>")])
    assert h.get("VIA") == "SIP/2.0/TLS a"
    assert h.get_all("via") == ["SIP/2.0/TLS a", "SIP/2.0/TLS b"]
    assert h.get("Call-ID") == "id"
    assert "contact" in h
    assert "Route" not in h
    assert h.get("Route") is None


def test_list_headers_split_respecting_quotes_and_brackets() -> None:
    h = Headers(
        [
            ("Contact", '"Doe, John" <sip:a@b;x=1,2>, <sip:c@d>'),
            ("Supported", "timer, ,replaces"),
            ("WWW-Authenticate", 'Digest realm="a", nonce="b"'),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
        ]
    )
    assert h.get_all("m") == ['"Doe, John" <sip:a@b;x=1,2>', "<sip:c@d>"]
    assert h.get_all("k") == ["timer", "replaces"]
    assert h.get_all("WWW-Authenticate") == ['Digest realm="a", nonce="b"']
    assert h.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]


def test_split_rejects_unbalanced_and_empty_when_asked() -> None:
    with pytest.raises(ParseError):
        split_list('"open, a')
    with pytest.raises(ParseError):
        split_list("a,,b", allow_empty=False)
    with pytest.raises(ParseError):
        split_list("a,", allow_empty=False)


def test_add_set_remove_and_order() -> None:
    h = Headers([("A", "1"), ("B", "2"), ("a", "3")])
    h.add("C", " 4 ")
    assert list(h) == [("A", "1"), ("B", "2"), ("a", "3"), ("C", "4")]
    h.set("a", "9")
    assert list(h) == [("a", "9"), ("B", "2"), ("C", "4")]
    assert h.remove("b") == 1
    assert h.remove("b") == 0
    assert len(h) == 2
    assert h == Headers([("A", "9"), ("c", "4")])


def test_cache_is_dropped_on_change() -> None:
    h = Headers([("X", "1")])
    assert h.cached("x", lambda hh: hh.get("X")) == "1"
    h.set("X", "2")
    assert h.cached("x", lambda hh: hh.get("X")) == "2"


@pytest.mark.parametrize(("name", "value"), [("Bad Name", "v"), ("X", "a\r\nInjected: 1")])
def test_invalid_fields_rejected(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Headers([(name, value)])


def test_repr_hides_credentials() -> None:
    h = Headers([("Authorization", 'Digest response="secret"')])
    assert "secret" not in repr(h)
