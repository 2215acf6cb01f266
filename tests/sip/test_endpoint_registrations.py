"""Accounts in the endpoint (sans-IO): registration, refresh, digest, 423, failover, back-off,
dead flows and unregistering, each a table of inputs with a given `now`; no socket, no clock.

Every REGISTER goes through the endpoint's transaction table: the responses below are built
from the request the endpoint sent (its own fresh branch each time), and a response with
another branch matches nothing.
"""

from __future__ import annotations

import dataclasses
import random

from sipua.sip import Request, SipUri
from sipua.sip.endpoint import AnswerPolicy, Endpoint, Link
from sipua.sip.registration import ContactAddress, DigestResponder, Registration
from sipua.sip.registrations import (
    STABLE_FLOW_SECONDS,
    AccountRegistered,
    AccountRegistrationFailed,
    AccountUnregistered,
    CloseConnection,
    FlowLost,
    FlowTarget,
    LocateTargets,
    OpenConnection,
    RegistrationRetry,
    SendKeepalive,
)
from sipua.ua.call_media import MediaDescriber
from tests.sip.test_endpoint import World
from tests.sip.test_registration import INSTANCE, FakePassword, answer, our_contact

A = FlowTarget("192.0.2.1", 5061, "example.test")
B = FlowTarget("192.0.2.2", 5061, "example.test")
CONTACT = "sips:alice@127.0.0.1:40000"
LOCAL = "127.0.0.1:40000"
DIGEST = 'WWW-Authenticate: Digest realm="example.test", nonce="abc", qop="auth"'


class Fixed(random.Random):
    """Seeded ids; every jitter draw is the top of its range (deterministic back-off)."""

    def uniform(self, a: float, b: float) -> float:
        return b


@dataclasses.dataclass
class Accounts(World):
    """The endpoint with one account `alice`, and shorthands for the UA's reports."""

    def register(self, now: float) -> None:
        self.endpoint.registrations.register("alice", now)
        self.drain()

    def maintain(self, now: float) -> None:
        self.endpoint.registrations.maintain("alice", now)
        self.drain()

    def located(self, now: float, *targets: FlowTarget) -> None:
        self.endpoint.registrations.targets_located("alice", list(targets), now)
        self.drain()

    def opened(self, handle: str, now: float) -> None:
        self.endpoint.registrations.connection_opened("alice", handle, CONTACT, LOCAL, now)
        self.drain()

    def failed(self, cause: str, now: float, *, tls: bool = False) -> None:
        self.endpoint.registrations.connection_failed("alice", cause, now, tls=tls)
        self.drain()

    def closed(self, handle: str, now: float) -> None:
        self.endpoint.connection_closed(handle, "closed by peer", now)
        self.drain()

    def registers(self) -> list[Request]:
        return [m for _h, m in self.sent if isinstance(m, Request) and m.method == "REGISTER"]

    def last_register(self) -> Request:
        return self.registers()[-1]

    def answer(self, status: int, *extra: str, on: str = "f1", now: float = 0.0) -> None:
        self.endpoint.receive(answer(self.last_register(), status, *extra), flow(on), now)
        self.drain()


def flow(handle: str) -> Link[str]:
    return Link(handle=handle, peer="192.0.2.1:5061", local=LOCAL, contact=CONTACT, outbound=True)


def accounts(*, expires: int = 600, keepalive: float | None = None) -> Accounts:
    rng = Fixed(3)
    endpoint: Endpoint[str] = Endpoint(
        policy=AnswerPolicy(), describer=MediaDescriber(rng), rng=rng, users=frozenset({"alice"})
    )
    registration = Registration(
        aor=SipUri.parse("sips:alice@example.test"),
        contact=ContactAddress(uri=SipUri.parse("sips:alice@example.test"), sent_by="0.0.0.0:0"),
        instance_id=INSTANCE,
        rng=rng,
        responder=DigestResponder(username="alice", password=FakePassword(), rng=rng),
        expires=expires,
    )
    endpoint.registrations.add(
        "alice", registration, keepalive_interval=keepalive, pong_timeout=10.0, backoff_base=30.0
    )
    return Accounts(endpoint)


def registered(w: Accounts, now: float = 0.0, handle: str = "f1") -> None:
    w.register(now)
    w.located(now, A)
    w.opened(handle, now)
    w.answer(200, our_contact(600), on=handle, now=now)


def kinds(w: Accounts) -> list[type[object]]:
    return [type(e) for e in w.events]


# -- registering ---------------------------------------------------------------------------


def test_register_locates_connects_sends_on_the_flow_and_reports() -> None:
    w = accounts()
    w.register(0.0)
    assert w.events == [LocateTargets(account="alice")]
    w.located(0.1, A, B)
    assert w.events[-1] == OpenConnection(account="alice", target=A)
    w.opened("f1", 0.2)
    [(handle, request)] = w.sent
    assert handle == "f1"
    assert isinstance(request, Request)
    assert request.method == "REGISTER"
    assert (request.headers.get("Via") or "").startswith(f"SIP/2.0/TLS {LOCAL};branch=z9hG4bK")
    assert "<sips:alice@127.0.0.1:40000>" in (request.headers.get("Contact") or "")
    w.answer(200, our_contact(600), now=0.3)
    assert w.events[-1] == AccountRegistered(
        account="alice", handle="f1", expires=600, refresh_at=0.3 + 300.0
    )


def test_digest_challenge_is_answered_in_a_new_transaction() -> None:
    w = accounts()
    w.register(0.0)
    w.located(0.0, A)
    w.opened("f1", 0.0)
    first = w.last_register()
    w.answer(401, DIGEST, now=0.1)
    retry = w.last_register()
    assert retry is not first
    assert retry.top_via.branch != first.top_via.branch
    assert retry.headers.get("Authorization") is not None
    w.answer(200, our_contact(600), now=0.2)
    assert isinstance(w.events[-1], AccountRegistered)


def test_407_proxy_challenge_is_answered() -> None:
    w = accounts()
    w.register(0.0)
    w.located(0.0, A)
    w.opened("f1", 0.0)
    w.answer(407, DIGEST.replace("WWW-Authenticate", "Proxy-Authenticate"), now=0.1)
    assert w.last_register().headers.get("Proxy-Authorization") is not None
    w.answer(200, our_contact(600), now=0.2)
    assert isinstance(w.events[-1], AccountRegistered)


def test_423_retries_with_min_expires() -> None:
    w = accounts(expires=60)
    w.register(0.0)
    w.located(0.0, A)
    w.opened("f1", 0.0)
    w.answer(423, "Min-Expires: 1800", now=0.1)
    assert w.last_register().expires == 1800
    w.answer(200, our_contact(1800), now=0.2)
    event = w.events[-1]
    assert isinstance(event, AccountRegistered)
    assert event.expires == 1800


def test_refresh_at_the_deadline_on_the_same_flow() -> None:
    w = accounts()
    registered(w)
    assert w.endpoint.next_deadline() is not None
    w.run_until(299.0)
    assert len(w.registers()) == 1
    w.run_until(300.0)
    refresh = w.last_register()
    assert len(w.registers()) == 2
    assert refresh.call_id == w.registers()[0].call_id
    w.answer(200, our_contact(600), now=300.5)
    event = w.events[-1]
    assert isinstance(event, AccountRegistered)
    assert event.refreshed


def test_stray_200_with_another_branch_is_ignored() -> None:
    w = accounts()
    w.register(0.0)
    w.located(0.0, A)
    w.opened("f1", 0.0)
    ok = answer(w.last_register(), 200, our_contact(600))
    headers = ok.headers.copy()
    via = headers.get("Via") or ""
    headers.set("Via", via.replace("branch=z9hG4bK", "branch=z9hG4bKother"))
    w.endpoint.receive(dataclasses.replace(ok, headers=headers), flow("f1"), 0.1)
    w.drain()
    assert not w.of(AccountRegistered)
    assert w.endpoint.stray_responses == 1
    w.answer(200, our_contact(600), now=0.2)
    assert len(w.of(AccountRegistered)) == 1
    # The same 200 again (a retransmission): its transaction is over, nothing happens.
    w.answer(200, our_contact(600), now=0.3)
    assert len(w.of(AccountRegistered)) == 1


def test_no_answer_fails_with_408_at_timer_f_of_the_transaction() -> None:
    w = accounts()
    w.register(0.0)
    w.located(0.0, A)
    w.opened("f1", 1.0)
    assert w.endpoint.next_deadline() == 1.0 + 32.0
    w.run_until(32.9)
    assert not w.of(AccountRegistrationFailed)
    w.run_until(33.0)
    [failed] = w.of(AccountRegistrationFailed)
    assert isinstance(failed, AccountRegistrationFailed)
    assert failed.failure is not None
    assert failed.failure.status == 408
    assert "32 s" in failed.reason


def test_403_fails_with_the_registrars_reason_and_no_retry_unless_maintained() -> None:
    w = accounts()
    w.register(0.0)
    w.located(0.0, A)
    w.opened("f1", 0.0)
    w.answer(403, now=0.1)
    [failed] = w.of(AccountRegistrationFailed)
    assert isinstance(failed, AccountRegistrationFailed)
    assert failed.failure is not None
    assert failed.failure.status == 403
    assert not w.of(RegistrationRetry)
    assert w.endpoint.next_deadline() is None


# -- failover and back-off -------------------------------------------------------------------


def test_failover_to_the_next_target_then_register() -> None:
    w = accounts()
    w.register(0.0)
    w.located(0.0, A, B)
    w.failed("connection refused", 0.5)
    assert w.events[-1] == OpenConnection(account="alice", target=B)  # RFC 3263 §4.3
    w.opened("f2", 0.6)
    assert w.sent[-1][0] == "f2"
    w.answer(200, our_contact(600), on="f2", now=0.7)
    assert isinstance(w.events[-1], AccountRegistered)


def test_every_target_failed_reports_the_tls_cause_over_the_network_one() -> None:
    w = accounts()
    w.register(0.0)
    w.located(0.0, A, B)
    w.failed("certificate not trusted", 0.1, tls=True)
    w.failed("connection refused", 0.2)
    [failed] = w.of(AccountRegistrationFailed)
    assert isinstance(failed, AccountRegistrationFailed)
    assert failed.cause == "certificate not trusted"
    assert failed.failure is None


def test_maintained_account_backs_off_with_jitter_then_tries_again() -> None:
    w = accounts()
    w.maintain(0.0)
    w.located(0.0, A)
    w.failed("connection refused", 1.0)
    # RFC 5626 §4.5: base 30 s, drawn in [50%, 100%] (this source draws the top).
    assert w.events[-1] == RegistrationRetry(account="alice", delay=30.0)
    assert w.endpoint.next_deadline() == 31.0
    w.run_until(30.9)
    assert w.events[-1] == RegistrationRetry(account="alice", delay=30.0)
    w.run_until(31.0)
    assert w.events[-1] == LocateTargets(account="alice")
    w.located(31.0, A)
    w.failed("connection refused", 31.5)
    assert w.events[-1] == RegistrationRetry(account="alice", delay=60.0)  # doubled


def test_backoff_draws_from_the_injected_source() -> None:
    w = accounts()
    w.endpoint.registrations._rng = random.Random(11)  # a real draw between 15 and 30 s
    w.maintain(0.0)
    w.located(0.0, A)
    w.failed("connection refused", 0.0)
    retry = w.events[-1]
    assert isinstance(retry, RegistrationRetry)
    assert 15.0 <= retry.delay <= 30.0
    assert retry.delay == random.Random(11).uniform(15.0, 30.0)


def test_refusal_on_an_open_flow_retries_on_it_after_back_off() -> None:
    w = accounts()
    w.maintain(0.0)
    w.located(0.0, A)
    w.opened("f1", 0.0)
    w.answer(503, "Retry-After: 5", now=1.0)
    assert w.events[-1] == RegistrationRetry(account="alice", delay=30.0)
    w.run_until(31.0)
    assert len(w.registers()) == 2
    assert w.sent[-1][0] == "f1"  # the same flow, no new connection
    assert not [e for e in w.events[1:] if isinstance(e, LocateTargets)]


def test_a_working_flow_lost_is_replaced_at_once() -> None:
    w = accounts()
    w.maintain(0.0)
    w.located(0.0, A)
    w.opened("f1", 0.0)
    w.answer(200, our_contact(600), now=0.0)
    w.closed("f1", 50.0)
    assert kinds(w)[-2:] == [FlowLost, LocateTargets]  # RFC 5626 §4.4.1: no back-off
    lost = w.events[-2]
    assert isinstance(lost, FlowLost)
    assert lost.working
    w.located(50.0, A)
    w.opened("f2", 50.1)
    assert w.sent[-1][0] == "f2"
    # The old flow's binding is not refreshed any more: only the new one's REGISTER went.
    assert w.last_register().call_id == w.registers()[0].call_id


def test_a_flow_lost_soon_after_registering_backs_off_and_keeps_counting() -> None:
    # A registrar that answers 200 and drops the connection: without this, a new handshake
    # and REGISTER followed at once, hundreds of times a second, each 200 clearing the count.
    w = accounts()
    w.maintain(0.0)
    now = 0.0
    delays = []
    for n, handle in enumerate(("f1", "f2", "f3")):
        w.located(now, A)
        w.opened(handle, now)
        w.answer(200, our_contact(600), on=handle, now=now)
        assert isinstance(w.events[-1], AccountRegistered)
        w.closed(handle, now + STABLE_FLOW_SECONDS - 1)
        lost, retry = w.events[-2:]
        assert isinstance(lost, FlowLost)
        assert lost.working
        assert isinstance(retry, RegistrationRetry), n
        delays.append(retry.delay)
        now = now + STABLE_FLOW_SECONDS - 1 + retry.delay
        w.run_until(now)
        assert isinstance(w.events[-1], LocateTargets)
    assert delays == [30.0, 60.0, 120.0]  # RFC 5626 §4.5, doubling: the 200s did not reset it
    # A flow that then stays up clears the count: its loss is replaced at once.
    w.located(now, A)
    w.opened("f4", now)
    w.answer(200, our_contact(600), on="f4", now=now)
    w.closed("f4", now + STABLE_FLOW_SECONDS)
    assert kinds(w)[-2:] == [FlowLost, LocateTargets]
    w.located(now + STABLE_FLOW_SECONDS, A)
    w.failed("connection refused", now + STABLE_FLOW_SECONDS)
    assert w.events[-1] == RegistrationRetry(account="alice", delay=30.0)


def test_flow_lost_while_registering_fails_and_backs_off() -> None:
    w = accounts()
    w.maintain(0.0)
    w.located(0.0, A)
    w.opened("f1", 0.0)
    w.closed("f1", 0.5)
    assert kinds(w)[-3:] == [FlowLost, AccountRegistrationFailed, RegistrationRetry]


# -- keep-alive ------------------------------------------------------------------------------


def test_keepalive_pings_and_a_missing_pong_kills_the_flow() -> None:
    w = accounts(keepalive=20.0)
    w.maintain(0.0)
    w.located(0.0, A)
    w.opened("f1", 0.0)
    w.answer(200, our_contact(600), now=0.0)
    w.run_until(20.0)  # jitter at the top: every 20 s
    assert w.events[-1] == SendKeepalive(handle="f1")
    # The registrar answers the first ping: from now on a missing pong counts.
    w.endpoint.registrations.pong_received("f1", 20.1)
    w.run_until(40.0)
    assert w.events[-1] == SendKeepalive(handle="f1")
    w.run_until(49.9)
    assert not w.of(CloseConnection)
    w.run_until(50.0)  # RFC 5626 §4.4.1: 10 s without the pong
    close = w.of(CloseConnection)
    assert close == [
        CloseConnection(handle="f1", reason="flow dead: no pong within 10 s (RFC 5626 §4.4.1)")
    ]
    assert kinds(w)[-2:] == [FlowLost, LocateTargets]  # a new flow at once


def test_a_registrar_that_never_answers_pings_keeps_its_flow() -> None:
    w = accounts(keepalive=20.0)
    registered(w)
    w.run_until(200.0)
    assert len(w.of(SendKeepalive)) == 10
    assert not w.of(CloseConnection)


# -- unregistering ---------------------------------------------------------------------------


def test_unregister_sends_expires_zero_and_reports() -> None:
    w = accounts()
    registered(w)
    assert w.endpoint.registrations.unregister("alice", 10.0)
    w.drain()
    bye = w.last_register()
    assert bye.expires == 0
    w.answer(200, now=10.1)
    assert w.events[-1] == AccountUnregistered(account="alice", status=200, reason="Whatever")
    assert w.endpoint.next_deadline() is None  # no refresh, no keep-alive, no retry


def test_unregister_with_nothing_bound_sends_nothing() -> None:
    w = accounts()
    assert not w.endpoint.registrations.unregister("alice", 0.0)
    assert w.sent == []


def test_unregister_answered_by_nothing_ends_with_timer_f() -> None:
    w = accounts()
    registered(w)
    w.endpoint.registrations.unregister("alice", 10.0)
    w.drain()
    w.run_until(42.0)
    assert w.events[-1] == AccountUnregistered(
        account="alice", status=408, reason="no response from the registrar within 32 s"
    )


def test_a_fatal_cause_is_not_retried() -> None:
    # A setting retrying cannot fix (the user agent says which) ends the maintenance.
    w = accounts()
    w.maintain(0.0)
    w.located(0.0, A, B)
    w.endpoint.registrations.connection_failed("alice", "bad setting", 0.1, tls=False, fatal=True)
    w.drain()
    [failed] = w.of(AccountRegistrationFailed)
    assert isinstance(failed, AccountRegistrationFailed)
    assert failed.cause == "bad setting"
    assert not w.of(RegistrationRetry)
    assert w.endpoint.next_deadline() is None
