from __future__ import annotations

import random

import pytest

from sipua.sip import Request, parse_message
from sipua.sip.dialog import Dialog, DialogId
from sipua.sip.errors import LocalProtocolError, RemoteProtocolError


def invite(
    *,
    record_route: list[str] | None = None,
    from_tag: str = ";tag=bt",
    contact: bool = True,
    uri: str = "sips:alice@127.0.0.1",
) -> Request:
    lines = [
        f"INVITE {uri} SIP/2.0",
        "Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK1",
        f"From: <sips:bob@example.test>{from_tag}",
        "To: <sips:alice@example.test>",
        "Call-ID: c1",
        "CSeq: 7 INVITE",
        *[f"Record-Route: {rr}" for rr in record_route or []],
    ]
    if contact:
        lines.append("Contact: <sips:bob@192.0.2.1:5061>")
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def in_dialog(method: str, cseq: int) -> Request:
    raw = (
        f"{method} sips:alice@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK2\r\n"
        "From: <sips:bob@example.test>;tag=bt\r\nTo: <sips:alice@example.test>;tag=at\r\n"
        f"Call-ID: c1\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


def test_uas_dialog_state_from_invite() -> None:
    dialog = Dialog.from_uas(invite(record_route=["<sips:p1.test;lr>", "<sips:p2.test;lr>"]), "at")
    assert dialog.id == DialogId("c1", "at", "bt")
    assert dialog.remote_target == "sips:bob@192.0.2.1:5061"
    assert dialog.route_set == ["<sips:p1.test;lr>", "<sips:p2.test;lr>"]  # in order, §12.1.1
    assert dialog.remote_seq == 7
    assert dialog.secure
    assert dialog.remote_uri == "sips:bob@example.test"


def test_cseq_must_grow_except_ack() -> None:
    dialog = Dialog.from_uas(invite(), "at")
    assert dialog.matches(in_dialog("BYE", 8))
    dialog.receive_request(in_dialog("ACK", 7))
    with pytest.raises(RemoteProtocolError) as info:
        dialog.receive_request(in_dialog("BYE", 7))
    assert info.value.status_hint == 500
    dialog.receive_request(in_dialog("BYE", 8))
    assert dialog.remote_seq == 8


def test_new_request_uses_route_set_and_counts_cseq() -> None:
    dialog = Dialog.from_uas(invite(record_route=["<sips:p1.test;lr>"]), "at")
    bye = dialog.new_request("BYE", sent_by="127.0.0.1:5062", rng=random.Random(1))
    again = dialog.new_request("BYE", sent_by="127.0.0.1:5062", rng=random.Random(2))
    assert str(bye.uri) == "sips:bob@192.0.2.1:5061"
    assert bye.headers.get_all("Route") == ["<sips:p1.test;lr>"]
    assert (bye.cseq.seq, again.cseq.seq) == (1, 2)
    assert bye.top_via.branch != again.top_via.branch
    with pytest.raises(LocalProtocolError):
        dialog.new_request("ACK", sent_by="x:1", rng=random.Random(1))


def test_a_strict_router_first_takes_the_request_uri_and_the_target_goes_last() -> None:
    # RFC 3261 §12.2.1.1: an RFC 2543 proxy (no ;lr) gets the Request-URI; the remote target
    # becomes the last Route. The route set is the INVITE's Record-Route in order (UAS side).
    dialog = Dialog.from_uas(
        invite(record_route=["<sips:strict.test;maddr=192.0.2.9?x=y>", "<sips:p2.test;lr>"]), "at"
    )
    bye = dialog.new_request("BYE", sent_by="127.0.0.1:5062", rng=random.Random(1))
    assert str(bye.uri) == "sips:strict.test;maddr=192.0.2.9"  # URI headers stripped (§19.1.1)
    assert bye.headers.get_all("Route") == ["<sips:p2.test;lr>", "<sips:bob@192.0.2.1:5061>"]


def test_a_route_that_is_not_sip_in_an_existing_dialog_is_reported() -> None:
    dialog = Dialog.from_uas(invite(record_route=["<sips:p1.test;lr>"]), "at")
    dialog.route_set = ["<tel:+1234>"]
    with pytest.raises(LocalProtocolError, match="not SIP"):
        dialog.new_request("BYE", sent_by="x:1", rng=random.Random(1))


@pytest.mark.parametrize(
    ("uri", "contact"),
    [
        ("sips:alice@127.0.0.1", "<tel:+1234>"),
        ("sips:alice@127.0.0.1", "<mailto:bob@example.test>"),
        ("sips:alice@127.0.0.1", "*"),
        ("sip:alice@127.0.0.1", "<tel:+1234>"),
    ],
)
def test_unusable_remote_target_is_refused(uri: str, contact: str) -> None:
    request = invite(uri=uri, contact=False)
    request.headers.add("Contact", contact)
    with pytest.raises(RemoteProtocolError) as info:
        Dialog.from_uas(request, "at")
    assert info.value.status_hint == 400


def test_non_sip_record_route_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="Record-Route"):
        Dialog.from_uas(invite(record_route=["<sips:p1.test;lr>", "<tel:+1>"]), "at")


def test_sip_contact_under_a_sips_request_uri_is_accepted() -> None:
    # What a proxy retargeting a sip: call to our registered sips: Contact produces.
    request = invite(contact=False)
    request.headers.add("Contact", "<sip:bob@192.0.2.1:5060>")
    assert Dialog.from_uas(request, "at").secure


def test_sip_contact_is_fine_for_a_sip_request_uri() -> None:
    request = invite(uri="sip:alice@127.0.0.1", contact=False)
    request.headers.add("Contact", "<sip:bob@192.0.2.1:5060>")
    dialog = Dialog.from_uas(request, "at")
    assert dialog.remote_target == "sip:bob@192.0.2.1:5060"


def test_missing_tag_or_contact_is_remote_error() -> None:
    with pytest.raises(RemoteProtocolError):
        Dialog.from_uas(invite(from_tag=""), "at")
    with pytest.raises(RemoteProtocolError):
        Dialog.from_uas(invite(contact=False), "at")


def test_sip_request_uri_is_not_secure() -> None:
    assert not Dialog.from_uas(invite(uri="sip:alice@127.0.0.1"), "at").secure
