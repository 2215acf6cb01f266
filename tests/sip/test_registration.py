from __future__ import annotations

import hashlib
import random

import pytest

from sipua.sip import Request, Response, SipUri, parse_message, serialize
from sipua.sip.errors import LocalProtocolError
from sipua.sip.registration import (
    ContactAddress,
    CredentialsRejected,
    DigestResponder,
    Registered,
    Registration,
    RegistrationFailed,
    RegistrationOutput,
    RegistrationState,
    SendRequest,
    Unregistered,
    backoff_delay,
    refresh_delay,
)

INSTANCE = "7b0a8c2e-4c5a-4a51-9e4e-2d0f7bbf3a11"


class FakePassword:
    def reveal(self) -> str:
        return "s3cret"


class NoAuth:
    def authorize(self, challenge: Response, request: Request) -> list[tuple[str, str]]:
        raise CredentialsRejected("no credentials in this test")

    def accepted(self) -> None:
        pass

    def forget(self) -> None:
        pass

    def preemptive(self, request: Request) -> list[tuple[str, str]]:
        return []


def make(expires: int = 600, responder: object | None = None, seed: int = 1) -> Registration:
    return Registration(
        aor=SipUri.parse("sips:alice@example.test"),
        contact=ContactAddress(
            uri=SipUri.parse("sips:alice@127.0.0.1:40000"), sent_by="127.0.0.1:40000"
        ),
        instance_id=INSTANCE,
        rng=random.Random(seed),
        responder=responder
        or DigestResponder(username="alice", password=FakePassword(), rng=random.Random(2)),  # type: ignore[arg-type]
        expires=expires,
    )


def sent(outputs: list[RegistrationOutput]) -> Request:
    assert len(outputs) == 1
    output = outputs[0]
    assert isinstance(output, SendRequest)
    # What goes on the wire parses back: the request is valid SIP.
    reparsed = parse_message(serialize(output.request))
    assert isinstance(reparsed, Request)
    return output.request


def answer(request: Request, status: int, *extra: str, reason: str = "Whatever") -> Response:
    via = request.headers.get("Via")
    lines = [
        f"SIP/2.0 {status} {reason}",
        f"Via: {via};received=127.0.0.1",
        f"From: {request.headers.get('From')}",
        f"To: {request.headers.get('To')};tag=reg1",
        f"Call-ID: {request.call_id}",
        f"CSeq: {request.cseq.seq} REGISTER",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    response = parse_message("\r\n".join(lines).encode())
    assert isinstance(response, Response)
    return response


def our_contact(expires: int) -> str:
    return (
        f'Contact: <sips:alice@127.0.0.1:40000>;+sip.instance="<urn:uuid:{INSTANCE}>"'
        f";reg-id=1;expires={expires}"
    )


def test_first_register_is_sips_with_outbound_contact() -> None:
    registration = make()
    request = sent(registration.register(0.0))
    assert request.method == "REGISTER"
    assert str(request.uri) == "sips:example.test"
    assert request.top_via.transport.upper() == "TLS"
    assert request.top_via.branch is not None
    assert request.top_via.branch.startswith("z9hG4bK")
    wire = serialize(request).decode()
    assert "transport=tls" not in wire.lower()
    contact = request.headers.get("Contact")
    assert contact is not None
    assert contact.startswith("<sips:alice@127.0.0.1:40000>")
    assert f'+sip.instance="<urn:uuid:{INSTANCE}>"' in contact
    assert "reg-id=1" in contact
    assert request.expires == 600
    assert "outbound" in request.supported
    assert request.from_.tag
    assert request.to.tag is None
    assert registration.state is RegistrationState.REGISTERING


def test_200_grants_our_contact_expiry_and_schedules_refresh() -> None:
    registration = make()
    request = sent(registration.register(100.0))
    other = 'Contact: <sips:alice@192.0.2.9:5061>;+sip.instance="<urn:uuid:other>";expires=3600'
    ok = answer(request, 200, other, our_contact(300), "Expires: 900", "Flow-Timer: 25")
    [event] = registration.receive_response(ok, 101.0)
    assert event == Registered(expires=300, refresh_at=101.0 + 150.0, flow_timer=25)
    assert registration.next_deadline() == 251.0
    assert registration.handle_timer(250.0) == []
    refresh = sent(registration.handle_timer(251.0))
    assert refresh.call_id == request.call_id  # RFC 3261 §10.2.4: same Call-ID
    assert refresh.cseq.seq == request.cseq.seq + 1
    assert refresh.top_via.branch != request.top_via.branch
    [again] = registration.receive_response(answer(refresh, 200, our_contact(300)), 252.0)
    assert isinstance(again, Registered)
    assert again.refreshed


def test_expires_header_used_when_contact_has_none() -> None:
    registration = make()
    request = sent(registration.register(0.0))
    [event] = registration.receive_response(answer(request, 200, "Expires: 120"), 0.0)
    assert isinstance(event, Registered)
    assert event.expires == 120
    assert event.refresh_at == 60.0


def test_requested_expiry_when_registrar_says_nothing() -> None:
    registration = make(expires=3600)
    request = sent(registration.register(0.0))
    [event] = registration.receive_response(answer(request, 200), 0.0)
    assert isinstance(event, Registered)
    assert event.expires == 3600


@pytest.mark.parametrize(
    ("granted", "delay"), [(600, 300.0), (60, 28.0), (40, 10.0), (3600, 1800.0)]
)
def test_refresh_delay_is_midpoint_or_margin(granted: int, delay: float) -> None:
    assert refresh_delay(granted) == delay


def test_digest_challenge_is_answered_then_registered() -> None:
    registration = make()
    request = sent(registration.register(0.0))
    challenge = answer(
        request,
        401,
        'WWW-Authenticate: Digest realm="example.test", nonce="abc", qop="auth", algorithm=MD5',
    )
    retry = sent(registration.receive_response(challenge, 0.5))
    authorization = retry.headers.get("Authorization")
    assert authorization is not None
    assert 'username="alice"' in authorization
    assert 'uri="sips:example.test"' in authorization
    assert "s3cret" not in authorization
    # The response is the RFC 2617 digest of the password we gave.
    cnonce = authorization.split('cnonce="')[1].split('"')[0]
    ha1 = hashlib.md5(b"alice:example.test:s3cret").hexdigest()
    ha2 = hashlib.md5(b"REGISTER:sips:example.test").hexdigest()
    expected = hashlib.md5(f"{ha1}:abc:00000001:{cnonce}:auth:{ha2}".encode()).hexdigest()
    assert f'response="{expected}"' in authorization
    assert retry.cseq.seq == request.cseq.seq + 1
    [event] = registration.receive_response(answer(retry, 200, our_contact(600)), 1.0)
    assert isinstance(event, Registered)


def test_second_challenge_for_the_same_nonce_is_rejected_credentials() -> None:
    registration = make()
    request = sent(registration.register(0.0))
    header = 'WWW-Authenticate: Digest realm="example.test", nonce="abc"'
    retry = sent(registration.receive_response(answer(request, 401, header), 0.0))
    [event] = registration.receive_response(answer(retry, 401, header), 0.0)
    assert isinstance(event, RegistrationFailed)
    assert event.auth
    assert event.status == 401
    assert "s3cret" not in event.reason
    assert registration.state is RegistrationState.FAILED


def test_stale_nonce_is_retried() -> None:
    registration = make()
    request = sent(registration.register(0.0))
    first = 'Proxy-Authenticate: Digest realm="example.test", nonce="n1"'
    retry = sent(registration.receive_response(answer(request, 407, first), 0.0))
    assert retry.headers.get("Proxy-Authorization") is not None
    stale = 'Proxy-Authenticate: Digest realm="example.test", nonce="n2", stale=true'
    retry2 = sent(registration.receive_response(answer(retry, 407, stale), 0.0))
    value = retry2.headers.get("Proxy-Authorization")
    assert value is not None
    assert 'nonce="n2"' in value


def test_challenge_without_responder_credentials_fails_as_auth() -> None:
    registration = make(responder=NoAuth())
    request = sent(registration.register(0.0))
    header = 'WWW-Authenticate: Digest realm="x", nonce="abc"'
    [event] = registration.receive_response(answer(request, 401, header), 0.0)
    assert isinstance(event, RegistrationFailed)
    assert event.auth


def test_423_retries_with_min_expires() -> None:
    registration = make(expires=60)
    request = sent(registration.register(0.0))
    retry = sent(registration.receive_response(answer(request, 423, "Min-Expires: 1800"), 0.0))
    assert retry.expires == 1800
    [event] = registration.receive_response(answer(retry, 200, our_contact(1800)), 0.0)
    assert isinstance(event, Registered)
    assert event.expires == 1800


def test_423_without_usable_min_expires_fails() -> None:
    registration = make(expires=60)
    request = sent(registration.register(0.0))
    [event] = registration.receive_response(answer(request, 423), 0.0)
    assert isinstance(event, RegistrationFailed)
    assert event.status == 423


def test_403_fails_and_503_carries_retry_after() -> None:
    registration = make()
    request = sent(registration.register(0.0))
    [event] = registration.receive_response(answer(request, 403, reason="Forbidden"), 0.0)
    assert event == RegistrationFailed(status=403, reason="Forbidden")
    request = sent(registration.register(1.0))
    [event] = registration.receive_response(answer(request, 503, "Retry-After: 30"), 1.0)
    assert isinstance(event, RegistrationFailed)
    assert event.retry_after == 30


def test_403_to_our_credentials_says_they_were_sent() -> None:
    # Kamailio's auth module answers a wrong password with 403, not a second challenge.
    registration = make()
    request = sent(registration.register(0.0))
    header = 'WWW-Authenticate: Digest realm="example.test", nonce="abc", qop="auth"'
    retry = sent(registration.receive_response(answer(request, 401, header), 0.0))
    [event] = registration.receive_response(answer(retry, 403, reason="Forbidden"), 0.5)
    assert event == RegistrationFailed(status=403, reason="Forbidden", credentials_sent=True)


def test_provisional_responses_change_nothing() -> None:
    registration = make()
    request = sent(registration.register(0.0))
    assert registration.receive_response(answer(request, 100, reason="Trying"), 0.0) == []
    assert registration.state is RegistrationState.REGISTERING


def test_a_response_with_nothing_in_flight_is_the_owners_bug() -> None:
    # The transaction layer routes only the live transaction's responses here.
    registration = make()
    with pytest.raises(LocalProtocolError, match="no REGISTER in flight"):
        registration.receive_response(answer(sent(make(seed=9).register(0.0)), 200), 0.0)


def test_timed_out_fails_as_408_and_the_registration_keeps_no_timer() -> None:
    registration = make()
    sent(registration.register(0.0))
    assert registration.next_deadline() is None  # Timer F is the transaction's
    [event] = registration.timed_out(32.0, "no response within 32 s")
    assert event == RegistrationFailed(status=408, reason="no response within 32 s")
    assert registration.state is RegistrationState.FAILED


def test_unregister_sends_expires_zero_and_ends_unregistered() -> None:
    registration = make()
    request = sent(registration.register(0.0))
    registration.receive_response(answer(request, 200, our_contact(600)), 0.0)
    bye = sent(registration.unregister(5.0))
    assert bye.expires == 0
    assert (bye.headers.get("Contact") or "").startswith("<sips:alice@127.0.0.1:40000>")
    assert registration.next_deadline() is None  # no refresh any more
    [event] = registration.receive_response(answer(bye, 200), 6.0)
    assert event == Unregistered(status=200, reason="Whatever")
    assert registration.state is RegistrationState.UNREGISTERED
    assert registration.next_deadline() is None


def test_unregister_with_challenge_keeps_expires_zero() -> None:
    registration = make()
    bye = sent(registration.unregister(0.0))
    header = 'WWW-Authenticate: Digest realm="example.test", nonce="u1"'
    retry = sent(registration.receive_response(answer(bye, 401, header), 0.0))
    assert retry.expires == 0
    assert retry.headers.get("Authorization") is not None


def test_connection_lost_forgets_pending_and_refresh() -> None:
    registration = make()
    sent(registration.register(0.0))
    registration.connection_lost()
    assert registration.next_deadline() is None
    assert registration.state is RegistrationState.IDLE
    sent(registration.register(1.0))


def test_sip_aor_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="sips"):
        Registration(
            aor=SipUri.parse("sip:alice@example.test"),
            contact=ContactAddress(uri=SipUri.parse("sips:a@127.0.0.1"), sent_by="127.0.0.1:1"),
            instance_id=INSTANCE,
            rng=random.Random(1),
            responder=NoAuth(),
        )


def test_register_twice_in_flight_is_a_local_error() -> None:
    registration = make()
    registration.register(0.0)
    with pytest.raises(LocalProtocolError):
        registration.register(0.0)


def test_responder_repr_hides_password() -> None:
    responder = DigestResponder(username="alice", password=FakePassword(), rng=random.Random(1))
    assert "s3cret" not in repr(responder)


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(4)
    assert 15.0 <= backoff_delay(0, rng) <= 30.0
    assert 30.0 <= backoff_delay(1, rng) <= 60.0
    assert 900.0 <= backoff_delay(50, rng) <= 1800.0
    assert 0.5 <= backoff_delay(0, rng, base=1.0, maximum=10.0) <= 1.0


def test_later_registers_answer_the_last_challenge_preemptively() -> None:
    registration = make()
    request = sent(registration.register(0.0))
    header = 'WWW-Authenticate: Digest realm="example.test", nonce="abc", qop="auth"'
    retry = sent(registration.receive_response(answer(request, 401, header), 0.0))
    registration.receive_response(answer(retry, 200, our_contact(600)), 0.0)
    refresh = sent(registration.handle_timer(300.0))
    value = refresh.headers.get("Authorization")
    assert value is not None
    assert "nc=00000002" in value
    # A registrar that wants a fresh nonce challenges again: a retry, not a rejection.
    again = sent(registration.receive_response(answer(refresh, 401, header.replace("abc", "d")), 0))
    assert 'nonce="d"' in (again.headers.get("Authorization") or "")


def _registered_with_digest() -> Registration:
    registration = make()
    request = sent(registration.register(0.0))
    header = 'WWW-Authenticate: Digest realm="example.test", nonce="abc", qop="auth"'
    retry = sent(registration.receive_response(answer(request, 401, header), 0.0))
    registration.receive_response(answer(retry, 200, our_contact(600)), 0.0)
    return registration


def test_a_new_flow_starts_without_old_credentials() -> None:
    # A restarted registrar forgot its nonces: replaying the old ones would earn 403 for ever.
    registration = _registered_with_digest()
    registration.connection_lost()
    fresh = sent(registration.register(10.0))
    assert fresh.headers.get("Authorization") is None


def test_a_refused_registration_forgets_the_challenge() -> None:
    registration = _registered_with_digest()
    refresh = sent(registration.handle_timer(300.0))
    assert refresh.headers.get("Authorization") is not None
    failed = registration.receive_response(answer(refresh, 403), 300.0)
    assert isinstance(failed[0], RegistrationFailed)
    retry = sent(registration.register(330.0))
    assert retry.headers.get("Authorization") is None


def test_requests_follow_a_changed_contact_and_keep_the_constant_parts() -> None:
    rng = random.Random(7)
    registration = Registration(
        aor=SipUri.parse("sips:alice@example.com:5061"),
        contact=ContactAddress(
            uri=SipUri.parse("sips:alice@192.0.2.1:40000"), sent_by="192.0.2.1:40000"
        ),
        instance_id="00000000-0000-4000-8000-000000000001",
        rng=rng,
        responder=DigestResponder(username="alice", password=None, rng=rng),
    )
    first = registration.register(0.0)[0]
    assert isinstance(first, SendRequest)
    assert str(first.request.uri) == "sips:example.com:5061"
    assert first.request.headers.get("To") == "<sips:alice@example.com:5061>"
    registration.connection_lost()
    registration.set_contact(
        ContactAddress(uri=SipUri.parse("sips:alice@192.0.2.1:40001"), sent_by="192.0.2.1:40001")
    )
    second = registration.register(1.0)[0]
    assert isinstance(second, SendRequest)
    via = second.request.headers.get("Via") or ""
    assert via.startswith("SIP/2.0/TLS 192.0.2.1:40001;branch=z9hG4bK")
    assert "<sips:alice@192.0.2.1:40001>" in (second.request.headers.get("Contact") or "")
    assert second.request.headers.get("From") == first.request.headers.get("From")
    assert second.request.headers.get("CSeq") == "2 REGISTER"


def test_our_contact_is_found_by_uri_comparison_not_text() -> None:
    # RFC 3261 §19.1.4: hosts compare case-insensitively. The registrar echoes our Contact in
    # lower case with expires=120; the Expires header (3600) is not ours to use.
    registration = make()
    registration.set_contact(
        ContactAddress(
            uri=SipUri.parse("sips:alice@Phone.Example.test:5061"), sent_by="10.0.0.1:5061"
        )
    )
    request = sent(registration.register(0.0))
    echoed = "Contact: <sips:alice@phone.example.test:5061>;expires=120"
    (registered,) = registration.receive_response(
        answer(request, 200, echoed, "Expires: 3600"), 0.0
    )
    assert isinstance(registered, Registered)
    assert registered.expires == 120


def test_an_old_flows_binding_listed_first_is_not_ours() -> None:
    # After a reconnect our port changed; a registrar without outbound support still lists the
    # old binding (same +sip.instance) first. Our expiry is the one of our current Contact.
    registration = make()
    request = sent(registration.register(0.0))
    old = (
        f'Contact: <sips:alice@127.0.0.1:39999>;+sip.instance="<urn:uuid:{INSTANCE}>"'
        ";reg-id=1;expires=3400"
    )
    (registered,) = registration.receive_response(answer(request, 200, old, our_contact(600)), 0.0)
    assert isinstance(registered, Registered)
    assert registered.expires == 600


def test_malformed_expires_on_our_contact_fails_and_does_not_stick() -> None:
    registration = make()
    request = sent(registration.register(0.0))
    bad = "Contact: <sips:alice@127.0.0.1:40000>;expires=abc"
    (failed,) = registration.receive_response(answer(request, 200, bad), 0.0)
    assert isinstance(failed, RegistrationFailed)
    assert "malformed" in failed.reason
    assert registration.state is not RegistrationState.REGISTERING
    sent(registration.register(1.0))  # a new attempt is possible at once


def test_from_and_to_carry_the_bare_address_of_record() -> None:
    # RFC 5630 §3.1.3: never transport=tls on the wire, even if the configured AOR had it.
    registration = Registration(
        aor=SipUri.parse("sips:alice@Example.COM;transport=tls"),
        contact=ContactAddress(
            uri=SipUri.parse("sips:alice@127.0.0.1:40000"), sent_by="127.0.0.1:40000"
        ),
        instance_id=INSTANCE,
        rng=random.Random(1),
        responder=NoAuth(),
    )
    request = sent(registration.register(0.0))
    for name in ("From", "To"):
        value = request.headers.get(name) or ""
        assert value.startswith("<sips:alice@Example.COM>"), value
        assert "transport" not in value.lower()


def test_our_contact_among_many_bindings_in_one_list() -> None:
    # A registrar lists every binding of the AOR, here in one comma-separated field, ours
    # among others of other devices; the expiry is ours, whichever position it has.
    others = [
        f'<sips:alice@127.0.0.1:{40001 + i}>;+sip.instance="<urn:uuid:other-{i}>";expires={900 + i}'
        for i in range(8)
    ]
    mine = f'<sips:alice@127.0.0.1:40000>;+sip.instance="<urn:uuid:{INSTANCE.upper()}>";expires=450'
    for position in (0, 4, 8):
        listed = [*others[:position], mine, *others[position:]]
        registration = make()
        request = sent(registration.register(0.0))
        field = "Contact: " + ", ".join(listed)
        (registered,) = registration.receive_response(answer(request, 200, field), 0.0)
        assert isinstance(registered, Registered)
        assert registered.expires == 450


def test_our_uri_without_our_instance_is_still_ours() -> None:
    # A registrar that drops the +sip.instance parameter: our Contact is found by URI alone
    # (the look at elements carrying our instance finds nothing and every element is read).
    registration = make()
    request = sent(registration.register(0.0))
    decoy = (
        f'Contact: <sips:alice@127.0.0.1:39999>;+sip.instance="<urn:uuid:{INSTANCE}>";expires=3400'
    )
    echoed = "Contact: <sips:alice@127.0.0.1:40000>;expires=300"
    (registered,) = registration.receive_response(answer(request, 200, decoy, echoed), 0.0)
    assert isinstance(registered, Registered)
    assert registered.expires == 300
