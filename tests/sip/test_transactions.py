from __future__ import annotations

from typing import TypeVar

import pytest

from sipua.sip import Request, Response, make_response, parse_message, transactions
from sipua.sip.errors import LocalProtocolError, ParseError, RemoteProtocolError
from sipua.sip.events import (
    AckReceived,
    ClientTxKey,
    DeliverRequest,
    DeliverResponse,
    LegacyServerTxKey,
    SendMessage,
    ServerTxKey,
    StrayResponse,
    TerminationReason,
    TransactionAction,
    TransactionTerminated,
    TransactionTimedOut,
)
from sipua.sip.transaction import ServerInviteTransaction, ServerNonInviteTransaction, State
from sipua.sip.transactions import (
    ReliableClientTable,
    TransactionTable,
    client_key,
    server_key,
)
from tests.support.pairs import MAX_ROUNDS, CorePair, RoundLimitExceeded, make_request

_T = TypeVar("_T")


def _only(events: list[TransactionAction], kind: type[_T]) -> list[_T]:
    return [e for e in events if isinstance(e, kind)]


def _delivered_request(pair: CorePair) -> DeliverRequest:
    (delivered,) = _only(pair.server.take_events(), DeliverRequest)
    assert isinstance(delivered, DeliverRequest)
    return delivered


def _answer(pair: CorePair, delivered: DeliverRequest, status: int) -> Response:
    response = make_response(delivered.request, status, to_tag="uas")
    pair.server.table.send_response(delivered.key, response, pair.now)
    pair.pump()
    return response


# --- end to end over TLS (reliable) -----------------------------------------------------------


def test_register_round_trip_over_tls_leaves_both_tables_empty() -> None:
    pair = CorePair()
    key = pair.client.table.send_request(make_request("REGISTER"), 0.0)
    assert key == ClientTxKey(branch="z9hG4bKclient1", method="REGISTER")
    rounds = pair.pump()
    assert rounds <= 2
    delivered = _delivered_request(pair)
    assert delivered.key == ServerTxKey(
        branch="z9hG4bKclient1", sent_by="client.example.com:5061", method="REGISTER"
    )
    _answer(pair, delivered, 200)
    events = pair.client.take_events()
    assert [type(e) for e in events] == [DeliverResponse, TransactionTerminated]
    assert isinstance(events[0], DeliverResponse)
    assert events[0].response.status == 200
    assert events[0].key == key
    (terminated,) = _only(pair.server.take_events(), TransactionTerminated)
    assert terminated.reason is TerminationReason.COMPLETED
    assert (len(pair.client.table), len(pair.server.table)) == (0, 0)
    assert pair.client.table.next_deadline() is None


def test_invite_rejected_the_client_acks_and_the_server_matches_the_ack() -> None:
    pair = CorePair()
    pair.client.table.send_request(make_request("INVITE"), 0.0)
    pair.pump()
    delivered = _delivered_request(pair)
    _answer(pair, delivered, 100)
    _answer(pair, delivered, 486)
    # Client: 100 and 486 delivered, ACK sent (same branch), over at once (Timer D = 0).
    assert [s.method for s in pair.client.sent if isinstance(s, Request)] == ["INVITE", "ACK"]
    client_events = pair.client.take_events()
    statuses = [e.response.status for e in _only(client_events, DeliverResponse)]
    assert statuses == [100, 486]
    # Server: the ACK matched the INVITE transaction (no AckReceived), Timer I = 0 ends it.
    server_events = pair.server.take_events()
    assert _only(server_events, AckReceived) == []
    assert len(_only(server_events, TransactionTerminated)) == 1
    assert (len(pair.client.table), len(pair.server.table)) == (0, 0)


def test_invite_accepted_2xx_ack_goes_to_the_tu_and_timers_l_m_end_both() -> None:
    pair = CorePair()
    pair.client.table.send_request(make_request("INVITE"), 0.0)
    pair.pump()
    delivered = _delivered_request(pair)
    ok = _answer(pair, delivered, 200)
    assert pair.client.table.get(ClientTxKey(branch="z9hG4bKclient1", method="INVITE"))
    server_tx = pair.server.table.get(delivered.key)
    assert server_tx is not None
    assert server_tx.state is State.ACCEPTED
    # The TU sends the 2xx ACK itself, in a new transaction's branch, straight to the wire.
    ack = make_request("ACK", branch="z9hG4bKack1", to_tag="uas")
    pair.server.table.receive(ack, pair.now)
    pair.pump()
    (ack_event,) = _only(pair.server.take_events(), AckReceived)
    assert ack_event.key is None
    # The UAS core retransmits its 2xx through the transaction; the client passes it on.
    pair.client.take_events()
    pair.server.table.send_response(delivered.key, ok, pair.now)
    pair.pump()
    assert [e.response.status for e in _only(pair.client.take_events(), DeliverResponse)] == [200]
    pair.advance(32.0)
    assert (len(pair.client.table), len(pair.server.table)) == (0, 0)
    # A 2xx retransmission after Timer M matches nothing: the dialog gets it to re-ACK.
    pair.client.table.receive(ok, pair.now)
    pair.pump()
    assert _only(pair.client.take_events(), StrayResponse) != []


def test_invite_timeout_over_tls_reports_timer_b() -> None:
    pair = CorePair(drop=lambda message: True)
    pair.client.table.send_request(make_request("INVITE"), 0.0)
    pair.pump()
    assert len(pair.client.sent) == 1  # no retransmissions on TLS
    pair.advance(31.9)
    assert pair.client.take_events() == []
    pair.advance(0.2)
    events = pair.client.take_events()
    assert [type(e) for e in events] == [TransactionTimedOut, TransactionTerminated]
    assert isinstance(events[0], TransactionTimedOut)
    assert events[0].timer == "B"
    assert len(pair.client.sent) == 1


def test_lost_request_over_udp_is_retransmitted_by_timer_e() -> None:
    losses = {"left": 2}

    def drop(message: Request | Response) -> bool:
        if isinstance(message, Request) and losses["left"]:
            losses["left"] -= 1
            return True
        return False

    pair = CorePair(drop=drop)
    pair.client.table.send_request(make_request("OPTIONS", transport="UDP"), 0.0)
    pair.pump()
    assert pair.server.take_events() == []
    pair.advance(1.0)  # Timer E at 0.5 s: lost again
    assert pair.server.take_events() == []
    pair.advance(1.0)  # Timer E at 1.5 s: through
    delivered = _delivered_request(pair)
    _answer(pair, delivered, 200)
    assert [e.response.status for e in _only(pair.client.take_events(), DeliverResponse)] == [200]
    # UDP: both sides linger to absorb retransmissions (Timer K = 5 s, Timer J = 32 s).
    assert (len(pair.client.table), len(pair.server.table)) == (1, 1)
    pair.advance(5.0)
    assert (len(pair.client.table), len(pair.server.table)) == (0, 1)
    pair.advance(30.0)
    assert (len(pair.client.table), len(pair.server.table)) == (0, 0)


def test_lost_response_over_udp_is_recovered_by_the_retransmitted_request() -> None:
    dropped: list[int] = []

    def drop(message: Request | Response) -> bool:
        if isinstance(message, Response) and not dropped:
            dropped.append(message.status)
            return True
        return False

    pair = CorePair(drop=drop)
    pair.client.table.send_request(make_request("OPTIONS", transport="UDP"), 0.0)
    pair.pump()
    delivered = _delivered_request(pair)
    _answer(pair, delivered, 200)
    assert dropped == [200]
    pair.advance(0.6)  # Timer E resends OPTIONS; the server resends its 200
    assert [e.response.status for e in _only(pair.client.take_events(), DeliverResponse)] == [200]
    assert _only(pair.server.take_events(), DeliverRequest) == []  # not delivered twice


# --- matching ---------------------------------------------------------------------------------


def test_cancel_has_its_own_transaction_and_finds_its_invite() -> None:
    pair = CorePair()
    invite = make_request("INVITE")
    pair.client.table.send_request(invite, 0.0)
    pair.pump()
    invite_delivered = _delivered_request(pair)
    _answer(pair, invite_delivered, 180)
    # §9.1: the CANCEL carries the INVITE's branch; client keys differ by method.
    cancel = make_request("CANCEL")
    cancel_key = pair.client.table.send_request(cancel, 0.1)
    assert cancel_key == ClientTxKey(branch="z9hG4bKclient1", method="CANCEL")
    assert len(pair.client.table) == 2
    pair.pump()
    cancel_delivered = _delivered_request(pair)
    assert cancel_delivered.request.method == "CANCEL"
    assert cancel_delivered.key != invite_delivered.key
    assert pair.server.table.invite_for_cancel(cancel_delivered.request) == invite_delivered.key
    _answer(pair, cancel_delivered, 200)
    _answer(pair, invite_delivered, 487)
    statuses = [e.response.status for e in _only(pair.client.take_events(), DeliverResponse)]
    assert statuses == [180, 200, 487]
    assert (len(pair.client.table), len(pair.server.table)) == (0, 0)


def test_cancel_for_an_unknown_invite() -> None:
    table = TransactionTable()
    assert table.invite_for_cancel(make_request("CANCEL")) is None
    table.receive(make_request("OPTIONS"), 0.0)  # same branch, but not an INVITE
    assert table.invite_for_cancel(make_request("CANCEL")) is None


def test_same_branch_different_sent_by_are_different_server_transactions() -> None:
    table = TransactionTable()
    table.receive(make_request("INVITE", sent_by="a.example.com"), 0.0)
    table.receive(make_request("INVITE", sent_by="b.example.com:5061"), 0.0)
    assert len(table) == 2


def test_sent_by_host_is_case_insensitive() -> None:
    table = TransactionTable()
    table.receive(make_request("INVITE", sent_by="A.Example.com"), 0.0)
    table.receive(make_request("INVITE", sent_by="a.example.COM"), 0.0)
    assert len(table) == 1


def test_retransmitted_request_is_not_delivered_twice() -> None:
    table = TransactionTable()
    table.receive(make_request("INVITE"), 0.0)
    table.receive(make_request("INVITE"), 0.1)
    actions = _drain(table)
    assert len(_only(actions, DeliverRequest)) == 1


def _drain(table: TransactionTable) -> list[TransactionAction]:
    out = []
    while (action := table.next_action()) is not None:
        out.append(action)
    return out


def test_ack_without_transaction_is_for_the_tu() -> None:
    table = TransactionTable()
    ack = make_request("ACK", to_tag="uas")
    table.receive(ack, 0.0)
    assert _drain(table) == [AckReceived(request=ack)]
    assert len(table) == 0


def test_legacy_rfc2543_requests_match_on_the_fallback_fields() -> None:
    table = TransactionTable()
    invite = make_request("INVITE", branch="")
    table.receive(invite, 0.0)
    (delivered,) = _only(_drain(table), DeliverRequest)
    assert isinstance(delivered.key, LegacyServerTxKey)
    assert delivered.key.method == "INVITE"
    tx = table.get(delivered.key)
    assert isinstance(tx, ServerInviteTransaction)
    table.receive(make_request("INVITE", branch=""), 0.1)  # retransmission
    assert _only(_drain(table), DeliverRequest) == []
    table.send_response(delivered.key, make_response(invite, 486, to_tag="uas"), 0.2)
    # The ACK for the 486 (same fields, To tag added) matches and confirms the transaction.
    table.receive(make_request("ACK", branch="", to_tag="uas"), 0.3)
    assert any(isinstance(a, TransactionTerminated) for a in _drain(table))
    assert len(table) == 0


def test_legacy_cancel_finds_its_invite() -> None:
    table = TransactionTable()
    table.receive(make_request("INVITE", branch=""), 0.0)
    (delivered,) = _only(_drain(table), DeliverRequest)
    assert table.invite_for_cancel(make_request("CANCEL", branch="")) == delivered.key


def test_pending_actions_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transactions, "MAX_PENDING_ACTIONS", 2)
    table = TransactionTable()
    table.receive(make_request("OPTIONS", branch="z9hG4bK1"), 0.0)
    table.receive(make_request("OPTIONS", branch="z9hG4bK2"), 0.0)
    with pytest.raises(LocalProtocolError, match="must drain next_action"):
        table.receive(make_request("OPTIONS", branch="z9hG4bK3"), 0.0)


def test_legacy_branch_without_cookie_and_different_cseq_are_new_transactions() -> None:
    table = TransactionTable()
    table.receive(make_request("OPTIONS", branch="1234", cseq=1), 0.0)
    table.receive(make_request("OPTIONS", branch="1234", cseq=2), 0.0)
    assert len(table) == 2
    assert isinstance(server_key(make_request("OPTIONS", branch="1234")), LegacyServerTxKey)


def test_response_matching() -> None:
    table = TransactionTable()
    request = make_request("OPTIONS")
    table.send_request(request, 0.0)
    _drain(table)
    # Same branch but another CSeq method: not ours (§17.1.3).
    other = make_response(make_request("REGISTER"), 200)
    table.receive(other, 0.0)
    assert _drain(table) == [StrayResponse(response=other)]
    # No branch at all: stray.
    branchless = make_response(make_request("OPTIONS", branch=""), 200)
    assert client_key(branchless) is None
    table.receive(branchless, 0.0)
    assert _drain(table) == [StrayResponse(response=branchless)]
    mine = make_response(request, 200)
    table.receive(mine, 0.0)
    assert [type(a) for a in _drain(table)] == [DeliverResponse, TransactionTerminated]


def test_a_request_without_via_is_a_parse_error() -> None:
    request = make_request("OPTIONS")
    request.headers.remove("Via")
    with pytest.raises(ParseError, match="Via"):
        TransactionTable().receive(request, 0.0)


# --- table API and limits ---------------------------------------------------------------------


def test_send_request_refuses_ack_bad_branches_and_duplicates() -> None:
    table = TransactionTable()
    with pytest.raises(LocalProtocolError, match="ACK is not sent through"):
        table.send_request(make_request("ACK"), 0.0)
    with pytest.raises(LocalProtocolError, match="z9hG4bK"):
        table.send_request(make_request("OPTIONS", branch="1234"), 0.0)
    with pytest.raises(LocalProtocolError, match="z9hG4bK"):
        table.send_request(make_request("OPTIONS", branch=""), 0.0)
    table.send_request(make_request("OPTIONS"), 0.0)
    with pytest.raises(LocalProtocolError, match="needs a new branch"):
        table.send_request(make_request("OPTIONS"), 0.0)


def test_the_table_is_bounded() -> None:
    table = TransactionTable(max_transactions=2)
    table.send_request(make_request("OPTIONS", branch="z9hG4bK1"), 0.0)
    table.receive(make_request("OPTIONS", branch="z9hG4bK2"), 0.0)
    with pytest.raises(LocalProtocolError, match="limit"):
        table.send_request(make_request("OPTIONS", branch="z9hG4bK3"), 0.0)
    with pytest.raises(RemoteProtocolError, match="503") as info:
        table.receive(make_request("OPTIONS", branch="z9hG4bK4"), 0.0)
    assert info.value.status_hint == 503
    # Retransmissions and ACKs of live transactions still get through.
    table.receive(make_request("OPTIONS", branch="z9hG4bK2"), 0.0)
    table.receive(make_request("ACK", branch="z9hG4bK5"), 0.0)


def test_send_response_to_an_unknown_or_client_key_is_refused() -> None:
    table = TransactionTable()
    response = make_response(make_request("OPTIONS"), 200)
    key = ServerTxKey(branch="z9hG4bKx", sent_by="h", method="OPTIONS")
    with pytest.raises(LocalProtocolError, match="no live server transaction"):
        table.send_response(key, response, 0.0)


def test_transport_error_terminates_and_unknown_keys_are_ignored() -> None:
    table = TransactionTable()
    key = table.send_request(make_request("INVITE"), 0.0)
    _drain(table)
    table.transport_error(ClientTxKey(branch="z9hG4bKnope", method="INVITE"), 0.0)
    assert _drain(table) == []
    table.transport_error(key, 1.0)
    assert _drain(table) == [
        TransactionTerminated(key=key, reason=TerminationReason.TRANSPORT_ERROR)
    ]
    assert len(table) == 0


def test_next_deadline_and_handle_timer_span_all_transactions() -> None:
    table = TransactionTable()
    table.send_request(make_request("OPTIONS", branch="z9hG4bK1", transport="UDP"), 0.0)
    table.send_request(make_request("OPTIONS", branch="z9hG4bK2"), 10.0)
    assert table.next_deadline() == 0.5  # UDP Timer E
    _drain(table)
    table.handle_timer(0.5)
    (resend,) = _drain(table)
    assert isinstance(resend, SendMessage)
    assert resend.retransmission
    table.handle_timer(32.0)  # one last Timer E, then Timer F, of the first
    assert [type(a) for a in _drain(table)] == [
        SendMessage,
        TransactionTimedOut,
        TransactionTerminated,
    ]
    assert table.next_deadline() == 42.0  # Timer F of the second (TLS)
    assert len(table) == 1


def test_reliability_can_be_overridden() -> None:
    table = TransactionTable()
    table.send_request(make_request("OPTIONS", transport="UDP"), 0.0, reliable=True)
    assert table.next_deadline() == 32.0  # only Timer F: no retransmissions
    table.receive(make_request("INVITE", branch="z9hG4bKs"), 0.0, reliable=False)
    (tx,) = [
        t for t in (table.get(k) for k in _server_keys(table)) if t is not None and not t.reliable
    ]
    assert isinstance(tx, ServerInviteTransaction | ServerNonInviteTransaction)


def _server_keys(table: TransactionTable) -> list[ServerTxKey]:
    return [
        action.key
        for action in _drain(table)
        if isinstance(action, DeliverRequest) and isinstance(action.key, ServerTxKey)
    ]


def test_repr_shows_counts() -> None:
    table = TransactionTable()
    table.send_request(make_request("OPTIONS"), 0.0)
    assert repr(table) == "TransactionTable(live=1, pending=1)"


class EchoTable(TransactionTable):
    """A table whose user answers every delivered request by sending a new request."""

    __slots__ = ("_echoes",)

    def __init__(self) -> None:
        super().__init__()
        self._echoes = 0

    def next_action(self) -> TransactionAction | None:
        action = super().next_action()
        if isinstance(action, DeliverRequest):
            self._echoes += 1
            self.send_request(make_request("OPTIONS", branch=f"z9hG4bKecho{self._echoes}"), 0.0)
        return action


def test_the_pair_round_cap_stops_a_ping_pong() -> None:
    pair = CorePair()
    pair.client.table = EchoTable()
    pair.server.table = EchoTable()
    pair.client.table.send_request(make_request("OPTIONS"), 0.0)
    with pytest.raises(RoundLimitExceeded, match=str(MAX_ROUNDS)):
        pair.pump()


# -- the reduced table of reliable non-INVITE client transactions ----------------------------


def _register_response(branch: str, status: int) -> Response:
    raw = (
        f"SIP/2.0 {status} X\r\nVia: SIP/2.0/TLS 127.0.0.1:40000;branch={branch}\r\n"
        "From: <sips:a@example.test>;tag=1\r\nTo: <sips:a@example.test>\r\nCall-ID: c\r\n"
        "CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(raw)
    assert isinstance(message, Response)
    return message


def test_reliable_client_table_matches_by_branch_and_method_and_ends_on_a_final() -> None:
    table = ReliableClientTable(timer_f=32.0)
    key = ClientTxKey(branch="z9hG4bKr1", method="REGISTER")
    table.send(key, 10.0)
    assert table.next_deadline() == 42.0
    assert table.match(_register_response("z9hG4bKother", 200)) is None  # §17.1.3
    assert table.match(_register_response("z9hG4bKr1", 100)) == key  # provisional: still live
    assert table.match(_register_response("z9hG4bKr1", 200)) == key
    assert len(table) == 0  # Timer K is zero over TLS: a retransmitted 200 matches nothing
    assert table.match(_register_response("z9hG4bKr1", 200)) is None


def test_reliable_client_table_times_out_with_timer_f() -> None:
    table = ReliableClientTable(timer_f=32.0)
    key = ClientTxKey(branch="z9hG4bKr2", method="REGISTER")
    table.send(key, 0.0)
    assert table.expired(31.9) == []
    assert table.expired(32.0) == [key]
    assert table.next_deadline() is None
    assert table.match(_register_response("z9hG4bKr2", 200)) is None  # too late


@pytest.mark.parametrize(
    "key",
    [
        ClientTxKey(branch="z9hG4bKr3", method="INVITE"),
        ClientTxKey(branch="z9hG4bKr3", method="ACK"),
        ClientTxKey(branch="no-cookie", method="REGISTER"),
    ],
)
def test_reliable_client_table_refuses_what_it_cannot_run(key: ClientTxKey) -> None:
    with pytest.raises(LocalProtocolError):
        ReliableClientTable().send(key, 0.0)


def test_reliable_client_table_refuses_a_duplicate_and_is_bounded() -> None:
    table = ReliableClientTable(max_transactions=2)
    key = ClientTxKey(branch="z9hG4bKr4", method="REGISTER")
    table.send(key, 0.0)
    with pytest.raises(LocalProtocolError, match="already exists"):
        table.send(key, 1.0)
    assert table.next_deadline() == 32.0  # the first one's Timer F, untouched
    table.send(ClientTxKey(branch="z9hG4bKr5", method="REGISTER"), 0.0)
    with pytest.raises(LocalProtocolError, match="limit"):
        table.send(ClientTxKey(branch="z9hG4bKr6", method="REGISTER"), 0.0)
