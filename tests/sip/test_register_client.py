"""`RegisterClient` and the registration table: REGISTER in client transactions, sans-IO.

Every case is a table of inputs with a given `now`; no socket, no clock.
"""

from __future__ import annotations

import dataclasses

import pytest

from sipua.sip import Request, Response
from sipua.sip.errors import LocalProtocolError
from sipua.sip.registration import (
    TABLE,
    RegisterClient,
    Registered,
    RegistrationFailed,
    RegistrationInput,
    RegistrationOutput,
    RegistrationState,
    SendRequest,
    Unregistered,
)
from sipua.sip.timers import TimerConfig
from tests.sip.test_registration import answer, make, our_contact


def client(timers: TimerConfig | None = None) -> RegisterClient:
    if timers is None:
        return RegisterClient(make())
    return RegisterClient(make(), timer_f=timers.for_transport(reliable=True).f)


def sent(outputs: list[RegistrationOutput]) -> Request:
    [output] = outputs
    assert isinstance(output, SendRequest)
    return output.request


def with_branch(response: Response, branch: str) -> Response:
    """The same response, as if it answered another request (another Via branch)."""
    headers = response.headers.copy()
    via = headers.get("Via") or ""
    old = via.split("branch=")[1].split(";")[0]
    headers.set("Via", via.replace(old, branch))
    return dataclasses.replace(response, headers=headers)


def test_timer_f_of_the_transaction_fails_the_register_with_408() -> None:
    reg = client()
    sent(reg.register(10.0))
    assert reg.next_deadline() == 10.0 + 32.0  # Timer F = 64*T1 (RFC 3261 §17.1.2.2)
    assert reg.handle_timer(41.9) == []
    [failed] = reg.handle_timer(42.0)
    assert isinstance(failed, RegistrationFailed)
    assert failed.status == 408
    assert "32 s" in failed.reason
    assert reg.state is RegistrationState.FAILED
    assert reg.next_deadline() is None


def test_timer_f_follows_t1() -> None:
    reg = client(TimerConfig(t1=0.125))
    sent(reg.register(0.0))
    assert reg.next_deadline() == 8.0
    [failed] = reg.handle_timer(8.0)
    assert isinstance(failed, RegistrationFailed)
    assert failed.status == 408


def test_a_200_with_another_branch_is_stray_and_ignored() -> None:
    reg = client()
    request = sent(reg.register(0.0))
    ok = answer(request, 200, our_contact(600))
    assert reg.receive_response(with_branch(ok, "z9hG4bKsomeoneelse"), 0.5) == []
    assert reg.stray_responses == 1
    assert reg.state is RegistrationState.REGISTERING
    [registered] = reg.receive_response(ok, 1.0)
    assert isinstance(registered, Registered)


def test_a_retransmitted_200_is_absorbed() -> None:
    reg = client()
    request = sent(reg.register(0.0))
    ok = answer(request, 200, our_contact(600))
    [registered] = reg.receive_response(ok, 1.0)
    assert isinstance(registered, Registered)
    assert reg.receive_response(ok, 1.5) == []
    assert reg.state is RegistrationState.REGISTERED
    assert reg.next_deadline() == 1.0 + 300.0  # only the refresh is left


def test_a_response_without_via_matches_nothing() -> None:
    reg = client()
    request = sent(reg.register(0.0))
    ok = answer(request, 200, our_contact(600))
    headers = ok.headers.copy()
    headers.remove("Via")
    assert reg.receive_response(dataclasses.replace(ok, headers=headers), 0.5) == []
    assert reg.stray_responses == 1


def test_challenge_then_200_each_request_in_its_own_transaction() -> None:
    reg = client()
    request = sent(reg.register(0.0))
    header = 'WWW-Authenticate: Digest realm="example.test", nonce="abc", qop="auth"'
    retry = sent(reg.receive_response(answer(request, 401, header), 0.2))
    assert retry.top_via.branch != request.top_via.branch  # RFC 3261 §8.1.1.7
    assert retry.headers.get("Authorization") is not None
    # The first request's 401 again (a retransmission): its transaction is over.
    assert reg.receive_response(answer(request, 401, header), 0.3) == []
    # Timer F runs afresh for the new transaction.
    assert reg.next_deadline() == 0.2 + 32.0
    [registered] = reg.receive_response(answer(retry, 200, our_contact(600)), 0.4)
    assert isinstance(registered, Registered)


def test_refresh_then_unregister() -> None:
    reg = client()
    request = sent(reg.register(0.0))
    reg.receive_response(answer(request, 200, our_contact(120)), 0.0)
    assert reg.next_deadline() == 60.0
    refresh = sent(reg.handle_timer(60.0))
    assert refresh.call_id == request.call_id
    [again] = reg.receive_response(answer(refresh, 200, our_contact(120)), 60.1)
    assert isinstance(again, Registered)
    assert again.refreshed
    bye = sent(reg.unregister(61.0))
    assert bye.expires == 0
    [gone] = reg.receive_response(answer(bye, 200), 61.1)
    assert gone == Unregistered(status=200, reason="Whatever")
    assert reg.next_deadline() is None


def test_unregister_that_gets_no_answer_ends_unregistered_408() -> None:
    reg = client()
    sent(reg.unregister(0.0))
    [gone] = reg.handle_timer(32.0)
    assert isinstance(gone, Unregistered)
    assert gone.status == 408


def test_connection_lost_drops_the_transaction_and_the_binding() -> None:
    reg = client()
    request = sent(reg.register(0.0))
    reg.connection_lost(1.0)
    assert reg.state is RegistrationState.IDLE
    assert reg.next_deadline() is None
    # A late answer to the lost flow's request matches nothing.
    assert reg.receive_response(answer(request, 200, our_contact(600)), 2.0) == []
    sent(reg.register(3.0))


# -- the table ----------------------------------------------------------------------------

S, In = RegistrationState, RegistrationInput

TRANSITIONS = [
    (S.IDLE, In.REGISTER, S.REGISTERING),
    (S.REGISTERED, In.REFRESH_DUE, S.REGISTERING),
    (S.REGISTERING, In.ACCEPTED, S.REGISTERED),
    (S.REGISTERING, In.CHALLENGED, S.REGISTERING),
    (S.REGISTERING, In.CREDENTIALS_REFUSED, S.FAILED),
    (S.REGISTERING, In.INTERVAL_TOO_BRIEF, S.REGISTERING),
    (S.REGISTERING, In.REFUSED, S.FAILED),
    (S.REGISTERING, In.TIMED_OUT, S.FAILED),
    (S.REGISTERED, In.UNREGISTER, S.UNREGISTERING),
    (S.UNREGISTERING, In.ACCEPTED, S.UNREGISTERED),
    (S.UNREGISTERING, In.TIMED_OUT, S.UNREGISTERED),
    (S.REGISTERED, In.FLOW_LOST, S.IDLE),
]


@pytest.mark.parametrize(("state", "event", "after"), TRANSITIONS)
def test_table_transitions(state: S, event: In, after: S) -> None:
    assert TABLE[(state, event)] is after


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.REGISTERING, In.REGISTER),  # one REGISTER in flight at a time (§10.2)
        (S.UNREGISTERING, In.UNREGISTER),
        (S.IDLE, In.ACCEPTED),  # a response with nothing in flight
        (S.REGISTERED, In.TIMED_OUT),
        (S.FAILED, In.REFRESH_DUE),
    ],
)
def test_what_the_table_lacks_is_refused(state: S, event: In) -> None:
    assert (state, event) not in TABLE


def test_a_second_register_in_flight_is_refused_by_the_table() -> None:
    reg = client()
    reg.register(0.0)
    with pytest.raises(LocalProtocolError, match="not possible in state registering"):
        reg.register(0.1)


def test_every_state_survives_a_lost_flow() -> None:
    for state in S:
        assert (state, In.FLOW_LOST) in TABLE


def test_seeded_runs_are_reproducible() -> None:
    a, b = RegisterClient(make(seed=5)), RegisterClient(make(seed=5))
    assert sent(a.register(0.0)).top_via.branch == sent(b.register(0.0)).top_via.branch
