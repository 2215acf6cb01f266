from __future__ import annotations

from collections.abc import Callable

import pytest

from sipua.sip import Request, Response, make_response
from sipua.sip.errors import LocalProtocolError
from sipua.sip.events import (
    AckReceived,
    ClientTxKey,
    DeliverRequest,
    DeliverResponse,
    SendMessage,
    ServerTxKey,
    TerminationReason,
    TransactionAction,
    TransactionTerminated,
    TransactionTimedOut,
)
from sipua.sip.timers import TimerConfig
from sipua.sip.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    Input,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    Timer,
    Transaction,
    build_ack,
)
from tests.support.pairs import make_request

UDP = TimerConfig().for_transport(reliable=False)
TLS = TimerConfig().for_transport(reliable=True)

Machine = (
    type[ClientInviteTransaction]
    | type[ClientNonInviteTransaction]
    | type[ServerInviteTransaction]
    | type[ServerNonInviteTransaction]
)
MACHINES: list[Machine] = [
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
]


def _new(machine: Machine, *, reliable: bool = False) -> Transaction:
    timers = TLS if reliable else UDP
    client = machine in (ClientInviteTransaction, ClientNonInviteTransaction)
    invite = machine in (ClientInviteTransaction, ServerInviteTransaction)
    request = make_request("INVITE" if invite else "OPTIONS")
    key: ClientTxKey | ServerTxKey
    if client:
        key = ClientTxKey(branch="z9hG4bKclient1", method=request.method)
    else:
        key = ServerTxKey(
            branch="z9hG4bKclient1", sent_by="client.example.com:5061", method="INVITE"
        )
    return machine(request, key=key, timers=timers)  # type: ignore[arg-type]


def _response(tx: Transaction, status: int) -> Response:
    return make_response(tx.request, status, to_tag=None if status == 100 else "srv")


def _ack(tx: Transaction) -> Request:
    return build_ack(tx.request, _response(tx, 486))


class Driver:
    """Feeds a transaction one Input at a time, tracking the clock."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.now = 0.0

    def start(self) -> list[TransactionAction]:
        tx = self.tx
        assert isinstance(
            tx,
            ClientInviteTransaction
            | ClientNonInviteTransaction
            | ServerInviteTransaction
            | ServerNonInviteTransaction,
        )
        return tx.start(self.now)

    def apply(self, event: Input) -> list[TransactionAction]:
        tx = self.tx
        statuses = {"1XX": 180, "2XX": 200, "300_699": 486}
        if event.name.startswith("TIMER_"):
            timer = Timer(event.name.removeprefix("TIMER_"))
            self.now = tx.pending_timers[timer]
            return tx.handle_timer(self.now)
        if event is Input.TRANSPORT_ERROR:
            return tx.transport_error(self.now)
        if event.name.startswith("RECEIVE_") and event.name.removeprefix("RECEIVE_") in statuses:
            assert isinstance(tx, ClientInviteTransaction | ClientNonInviteTransaction)
            status = statuses[event.name.removeprefix("RECEIVE_")]
            return tx.receive_response(_response(tx, status), self.now)
        assert isinstance(tx, ServerInviteTransaction | ServerNonInviteTransaction)
        if event is Input.RECEIVE_REQUEST:
            return tx.receive_request(tx.request, self.now)
        if event is Input.RECEIVE_ACK:
            return tx.receive_request(_ack(tx), self.now)
        status = statuses[event.name.removeprefix("SEND_")]
        return tx.send_response(_response(tx, status), self.now)


# How to reach each live state of each machine over UDP (no zero timers), from start().
PATHS: dict[Machine, dict[State, list[Input]]] = {
    ClientInviteTransaction: {
        State.CALLING: [],
        State.PROCEEDING: [Input.RECEIVE_1XX],
        State.COMPLETED: [Input.RECEIVE_300_699],
        State.ACCEPTED: [Input.RECEIVE_2XX],
        State.TERMINATED: [Input.TRANSPORT_ERROR],
    },
    ClientNonInviteTransaction: {
        State.TRYING: [],
        State.PROCEEDING: [Input.RECEIVE_1XX],
        State.COMPLETED: [Input.RECEIVE_2XX],
        State.TERMINATED: [Input.TRANSPORT_ERROR],
    },
    ServerInviteTransaction: {
        State.PROCEEDING: [],
        State.COMPLETED: [Input.SEND_300_699],
        State.CONFIRMED: [Input.SEND_300_699, Input.RECEIVE_ACK],
        State.ACCEPTED: [Input.SEND_2XX],
        State.TERMINATED: [Input.TRANSPORT_ERROR],
    },
    ServerNonInviteTransaction: {
        State.TRYING: [],
        State.PROCEEDING: [Input.SEND_1XX],
        State.COMPLETED: [Input.SEND_2XX],
        State.TERMINATED: [Input.TRANSPORT_ERROR],
    },
}


def _reach(machine: Machine, state: State) -> Driver:
    driver = Driver(_new(machine))
    driver.start()
    for event in PATHS[machine][state]:
        driver.apply(event)
    assert driver.tx.state is state
    return driver


TRANSITIONS = [
    pytest.param(machine, state, event, target, id=f"{machine.__name__}-{state.name}-{event.name}")
    for machine in MACHINES
    for (state, event), target in machine.TABLE.items()
]


@pytest.mark.parametrize(("machine", "state", "event", "target"), TRANSITIONS)
def test_every_table_transition(
    machine: Machine, state: State, event: Input, target: State
) -> None:
    driver = _reach(machine, state)
    actions = driver.apply(event)
    assert driver.tx.state is target
    terminated = [a for a in actions if isinstance(a, TransactionTerminated)]
    assert len(terminated) == (1 if target is State.TERMINATED else 0)


MESSAGE_INPUTS = [e for e in Input if not e.name.startswith("TIMER_")]
ILLEGAL = [
    pytest.param(machine, state, event, id=f"{machine.__name__}-{state.name}-{event.name}")
    for machine in MACHINES
    for state in PATHS[machine]
    for event in MESSAGE_INPUTS
    if (state, event) not in machine.TABLE
    and (
        # A client cannot be handed requests or asked to send responses at all (no method).
        event.name.startswith(("RECEIVE_1", "RECEIVE_2", "RECEIVE_3", "TRANSPORT"))
        if machine in (ClientInviteTransaction, ClientNonInviteTransaction)
        else not event.name.startswith(("RECEIVE_1", "RECEIVE_2", "RECEIVE_3"))
    )
]


@pytest.mark.parametrize(("machine", "state", "event"), ILLEGAL)
def test_every_illegal_input_raises_naming_state_and_input(
    machine: Machine, state: State, event: Input
) -> None:
    driver = _reach(machine, state)
    with pytest.raises(LocalProtocolError) as info:
        driver.apply(event)
    message = str(info.value)
    assert state.name in message
    assert event.value in message
    assert machine.__name__ in message
    assert driver.tx.state is state


def test_the_illegal_table_is_not_empty() -> None:
    # Guards the parametrisation above: it must cover the sticky terminal state and the
    # "send after final response" misuse.
    ids = {p.id for p in ILLEGAL}
    assert "ServerNonInviteTransaction-COMPLETED-SEND_2XX" in ids
    assert "ClientInviteTransaction-TERMINATED-RECEIVE_2XX" in ids
    assert "ServerInviteTransaction-TERMINATED-RECEIVE_REQUEST" in ids


@pytest.mark.parametrize("machine", MACHINES)
def test_terminated_is_sticky_and_live_states_accept_transport_errors(machine: Machine) -> None:
    live = {state for state, _ in machine.TABLE}
    assert State.TERMINATED not in live
    for state in live:
        assert machine.TABLE[(state, Input.TRANSPORT_ERROR)] is State.TERMINATED


@pytest.mark.parametrize("machine", MACHINES)
def test_inputs_before_start_and_double_start_are_refused(machine: Machine) -> None:
    driver = Driver(_new(machine))
    with pytest.raises(LocalProtocolError, match="before start"):
        driver.tx.handle_timer(0.0)
    with pytest.raises(LocalProtocolError, match="before start"):
        driver.tx.transport_error(0.0)
    driver.start()
    with pytest.raises(LocalProtocolError, match="already called"):
        driver.start()


def test_message_inputs_before_start_are_refused() -> None:
    client = _new(ClientNonInviteTransaction)
    assert isinstance(client, ClientNonInviteTransaction)
    with pytest.raises(LocalProtocolError, match="before start"):
        client.receive_response(_response(client, 200), 0.0)
    server = _new(ServerNonInviteTransaction)
    assert isinstance(server, ServerNonInviteTransaction)
    with pytest.raises(LocalProtocolError, match="before start"):
        server.receive_request(server.request, 0.0)
    with pytest.raises(LocalProtocolError, match="before start"):
        server.send_response(_response(server, 200), 0.0)


def test_status_outside_100_699_is_refused() -> None:
    driver = _reach(ServerNonInviteTransaction, State.TRYING)
    tx = driver.tx
    assert isinstance(tx, ServerNonInviteTransaction)
    bad = Response(700, "Nope", _response(tx, 200).headers)
    with pytest.raises(LocalProtocolError, match="700 is not a SIP response code"):
        tx.send_response(bad, 0.0)


def _kinds(actions: list[TransactionAction]) -> list[str]:
    out = []
    for action in actions:
        if isinstance(action, SendMessage):
            message = action.message
            what = message.method if isinstance(message, Request) else str(message.status)
            out.append(f"{'resend' if action.retransmission else 'send'} {what}")
        elif isinstance(action, DeliverResponse):
            out.append(f"deliver {action.response.status}")
        elif isinstance(action, DeliverRequest):
            out.append(f"deliver {action.request.method}")
        elif isinstance(action, AckReceived):
            out.append("ack to TU")
        elif isinstance(action, TransactionTimedOut):
            out.append(f"timed out {action.timer}")
        elif isinstance(action, TransactionTerminated):
            out.append(f"terminated {action.reason.value}")
        else:  # pragma: no cover - a new action type needs a name here
            raise AssertionError(action)
    return out


def _fire_all(tx: Transaction, until: float) -> list[tuple[float, list[str]]]:
    """Fire timers one deadline at a time up to `until`; return (time, actions) per firing."""
    log: list[tuple[float, list[str]]] = []
    for _ in range(100):
        deadline = tx.next_deadline()
        if deadline is None or deadline > until:
            return log
        log.append((deadline, _kinds(tx.handle_timer(deadline))))
    raise AssertionError("timers never stopped")


# --- client INVITE ----------------------------------------------------------------------------


def test_client_invite_udp_timer_a_doubles_until_timer_b() -> None:
    tx = _new(ClientInviteTransaction)
    assert isinstance(tx, ClientInviteTransaction)
    assert _kinds(tx.start(0.0)) == ["send INVITE"]
    assert tx.pending_timers == {Timer.A: 0.5, Timer.B: 32.0}
    log = _fire_all(tx, 100.0)
    # RFC 3261 §17.1.1.2: retransmit at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s, give up at 32 s.
    assert [t for t, _ in log] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 32.0]
    assert all(kinds == ["resend INVITE"] for _, kinds in log[:-1])
    assert log[-1][1] == ["timed out B", "terminated timed-out"]
    assert tx.next_deadline() is None


def test_client_invite_tls_has_no_timer_a() -> None:
    tx = _new(ClientInviteTransaction, reliable=True)
    assert isinstance(tx, ClientInviteTransaction)
    tx.start(0.0)
    assert tx.pending_timers == {Timer.B: 32.0}
    assert tx.reliable


def test_client_invite_provisional_stops_retransmissions_and_timer_b() -> None:
    driver = _reach(ClientInviteTransaction, State.CALLING)
    assert _kinds(driver.apply(Input.RECEIVE_1XX)) == ["deliver 180"]
    assert driver.tx.next_deadline() is None  # a UA waits for the final response
    assert _kinds(driver.apply(Input.RECEIVE_1XX)) == ["deliver 180"]


@pytest.mark.parametrize("reliable", [False, True], ids=["udp", "tls"])
def test_client_invite_non_2xx_final_is_acked_and_absorbed(reliable: bool) -> None:
    tx = _new(ClientInviteTransaction, reliable=reliable)
    assert isinstance(tx, ClientInviteTransaction)
    tx.start(0.0)
    busy = _response(tx, 486)
    actions = tx.receive_response(busy, 1.0)
    if reliable:
        # Timer D is zero: Completed and Terminated in the same call.
        assert _kinds(actions) == ["send ACK", "deliver 486", "terminated completed"]
        return
    assert _kinds(actions) == ["send ACK", "deliver 486"]
    assert tx.pending_timers == {Timer.D: 33.0}
    # A retransmitted final response is ACKed again but not delivered again.
    assert _kinds(tx.receive_response(busy, 2.0)) == ["resend ACK"]
    assert _kinds(tx.receive_response(_response(tx, 180), 2.0)) == []
    assert _kinds(tx.handle_timer(33.0)) == ["terminated completed"]


def test_ack_for_non_2xx_follows_section_17_1_1_3() -> None:
    invite = make_request("INVITE", cseq=7)
    invite.headers.add("Route", "<sips:proxy.example.com;lr>")
    invite.headers.add("Via", "SIP/2.0/TLS upstream.example.com;branch=z9hG4bKup")
    busy = make_response(invite, 486, to_tag="remote")
    ack = build_ack(invite, busy)
    assert ack.method == "ACK"
    assert ack.uri == invite.uri
    assert [str(v) for v in ack.vias] == [str(invite.top_via)]
    assert ack.to.tag == "remote"
    assert ack.from_.tag == "ftag"
    assert ack.call_id == invite.call_id
    assert (ack.cseq.seq, ack.cseq.method) == (7, "ACK")
    assert ack.headers.get_all("Route") == ["<sips:proxy.example.com;lr>"]
    assert ack.body == b""


def test_ack_needs_from_and_to() -> None:
    invite = make_request("INVITE")
    busy = make_response(invite, 486, to_tag="remote")
    busy.headers.remove("To")
    with pytest.raises(LocalProtocolError, match="To header is missing"):
        build_ack(invite, busy)


def test_client_invite_accepted_passes_2xx_retransmissions_then_timer_m() -> None:
    driver = _reach(ClientInviteTransaction, State.CALLING)
    assert _kinds(driver.apply(Input.RECEIVE_2XX)) == ["deliver 200"]
    assert driver.tx.state is State.ACCEPTED
    assert driver.tx.pending_timers == {Timer.M: 32.0}
    # RFC 6026 §8.4: the TU sees every 2xx (forked or retransmitted) to ACK it.
    assert _kinds(driver.apply(Input.RECEIVE_2XX)) == ["deliver 200"]
    assert _kinds(driver.apply(Input.RECEIVE_1XX)) == []
    assert _kinds(driver.apply(Input.RECEIVE_300_699)) == []
    assert _kinds(driver.apply(Input.TIMER_M)) == ["terminated completed"]


def test_client_transport_error_terminates() -> None:
    driver = _reach(ClientInviteTransaction, State.PROCEEDING)
    assert _kinds(driver.apply(Input.TRANSPORT_ERROR)) == ["terminated transport-error"]
    assert driver.tx.terminated


# --- client non-INVITE ------------------------------------------------------------------------


def test_client_non_invite_udp_timer_e_caps_at_t2_until_timer_f() -> None:
    tx = _new(ClientNonInviteTransaction)
    assert isinstance(tx, ClientNonInviteTransaction)
    assert _kinds(tx.start(0.0)) == ["send OPTIONS"]
    log = _fire_all(tx, 100.0)
    # RFC 3261 §17.1.2.2: 0.5, 1, 2, then every T2=4 s; Timer F at 64*T1 = 32 s.
    assert [t for t, _ in log] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0]
    assert log[-1][1] == ["timed out F", "terminated timed-out"]


def test_client_non_invite_proceeding_retransmits_every_t2() -> None:
    tx = _new(ClientNonInviteTransaction)
    assert isinstance(tx, ClientNonInviteTransaction)
    tx.start(0.0)
    assert _kinds(tx.receive_response(_response(tx, 100), 0.2)) == ["deliver 100"]
    log = _fire_all(tx, 9.0)
    assert [t for t, _ in log] == [0.5, 4.5, 8.5]


def test_client_non_invite_tls_final_response_terminates_at_once() -> None:
    tx = _new(ClientNonInviteTransaction, reliable=True)
    assert isinstance(tx, ClientNonInviteTransaction)
    tx.start(0.0)
    assert tx.pending_timers == {Timer.F: 32.0}
    actions = tx.receive_response(_response(tx, 200), 0.1)
    assert _kinds(actions) == ["deliver 200", "terminated completed"]


def test_client_non_invite_udp_completed_absorbs_for_timer_k() -> None:
    driver = _reach(ClientNonInviteTransaction, State.PROCEEDING)
    assert _kinds(driver.apply(Input.RECEIVE_300_699)) == ["deliver 486"]
    assert driver.tx.pending_timers == {Timer.K: 5.0}
    for event in (Input.RECEIVE_1XX, Input.RECEIVE_2XX, Input.RECEIVE_300_699):
        assert driver.apply(event) == []
    assert _kinds(driver.apply(Input.TIMER_K)) == ["terminated completed"]


# --- server INVITE ----------------------------------------------------------------------------


def test_server_invite_delivers_and_resends_the_last_provisional() -> None:
    tx = _new(ServerInviteTransaction)
    assert isinstance(tx, ServerInviteTransaction)
    assert _kinds(tx.start(0.0)) == ["deliver INVITE"]
    assert tx.next_deadline() is None
    # A retransmitted INVITE before any response: nothing to resend yet.
    assert _kinds(tx.receive_request(tx.request, 0.1)) == []
    assert _kinds(tx.send_response(_response(tx, 100), 0.1)) == ["send 100"]
    assert _kinds(tx.receive_request(tx.request, 0.2)) == ["resend 100"]
    assert _kinds(tx.send_response(_response(tx, 180), 0.3)) == ["send 180"]
    assert tx.last_response is not None
    assert tx.last_response.status == 180


def test_server_invite_udp_timer_g_until_timer_h() -> None:
    driver = _reach(ServerInviteTransaction, State.PROCEEDING)
    assert _kinds(driver.apply(Input.SEND_300_699)) == ["send 486"]
    assert driver.tx.pending_timers == {Timer.G: 0.5, Timer.H: 32.0}
    log = _fire_all(driver.tx, 100.0)
    # RFC 3261 §17.2.1: G doubles up to T2; H gives up waiting for the ACK.
    assert [t for t, _ in log] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0]
    assert all(kinds == ["resend 486"] for _, kinds in log[:-1])
    assert log[-1][1] == ["timed out H", "terminated timed-out"]


def test_server_invite_udp_ack_confirms_then_timer_i() -> None:
    driver = _reach(ServerInviteTransaction, State.COMPLETED)
    assert _kinds(driver.apply(Input.RECEIVE_REQUEST)) == ["resend 486"]
    assert driver.apply(Input.RECEIVE_ACK) == []
    assert driver.tx.state is State.CONFIRMED
    assert driver.tx.pending_timers == {Timer.I: 5.0}
    assert driver.apply(Input.RECEIVE_ACK) == []
    assert driver.apply(Input.RECEIVE_REQUEST) == []
    assert _kinds(driver.apply(Input.TIMER_I)) == ["terminated completed"]


def test_server_invite_tls_ack_terminates_at_once() -> None:
    tx = _new(ServerInviteTransaction, reliable=True)
    assert isinstance(tx, ServerInviteTransaction)
    tx.start(0.0)
    assert _kinds(tx.send_response(_response(tx, 486), 0.0)) == ["send 486"]
    assert tx.pending_timers == {Timer.H: 32.0}  # no Timer G on TLS
    assert _kinds(tx.receive_request(_ack(tx), 0.1)) == ["terminated completed"]


def test_server_invite_accepted_rfc6026() -> None:
    driver = _reach(ServerInviteTransaction, State.PROCEEDING)
    assert _kinds(driver.apply(Input.SEND_2XX)) == ["send 200"]
    assert driver.tx.state is State.ACCEPTED
    assert driver.tx.pending_timers == {Timer.L: 32.0}
    assert driver.apply(Input.RECEIVE_REQUEST) == []  # retransmitted INVITE absorbed
    assert _kinds(driver.apply(Input.SEND_2XX)) == ["send 200"]  # the TU's retransmission
    assert driver.tx.pending_timers == {Timer.L: 32.0}  # not restarted
    assert _kinds(driver.apply(Input.RECEIVE_ACK)) == ["ack to TU"]
    assert _kinds(driver.apply(Input.TIMER_L)) == ["terminated completed"]


def test_server_invite_cannot_send_after_a_final_response() -> None:
    driver = _reach(ServerInviteTransaction, State.COMPLETED)
    with pytest.raises(LocalProtocolError, match="COMPLETED cannot handle send 2xx"):
        driver.apply(Input.SEND_2XX)


# --- server non-INVITE ------------------------------------------------------------------------


def test_server_non_invite_udp() -> None:
    tx = _new(ServerNonInviteTransaction)
    assert isinstance(tx, ServerNonInviteTransaction)
    assert _kinds(tx.start(0.0)) == ["deliver OPTIONS"]
    assert tx.receive_request(tx.request, 0.1) == []  # Trying: discarded
    assert _kinds(tx.send_response(_response(tx, 100), 0.2)) == ["send 100"]
    assert _kinds(tx.receive_request(tx.request, 0.3)) == ["resend 100"]
    assert _kinds(tx.send_response(_response(tx, 200), 0.4)) == ["send 200"]
    assert tx.pending_timers == {Timer.J: 32.4}
    assert _kinds(tx.receive_request(tx.request, 0.5)) == ["resend 200"]
    assert _kinds(tx.handle_timer(32.4)) == ["terminated completed"]


def test_server_non_invite_tls_final_terminates_at_once() -> None:
    tx = _new(ServerNonInviteTransaction, reliable=True)
    assert isinstance(tx, ServerNonInviteTransaction)
    tx.start(0.0)
    assert _kinds(tx.send_response(_response(tx, 200), 0.0)) == [
        "send 200",
        "terminated completed",
    ]
    assert tx.terminated


def test_timer_handling_is_idempotent_before_the_deadline() -> None:
    tx = _new(ClientNonInviteTransaction)
    assert isinstance(tx, ClientNonInviteTransaction)
    tx.start(0.0)
    assert tx.handle_timer(0.49) == []
    assert tx.next_deadline() == 0.5


def test_a_late_wakeup_fires_each_due_timer_once() -> None:
    # The pump woke up 40 s late: A fires once (re-armed from now), then B ends it.
    tx = _new(ClientInviteTransaction)
    assert isinstance(tx, ClientInviteTransaction)
    tx.start(0.0)
    assert _kinds(tx.handle_timer(40.0)) == [
        "resend INVITE",
        "timed out B",
        "terminated timed-out",
    ]


def test_repr_names_machine_key_and_state() -> None:
    tx = _new(ServerInviteTransaction)
    text = repr(tx)
    assert "ServerInviteTransaction" in text
    assert "PROCEEDING" in text


def test_termination_reasons_cover_the_three_ways_to_end() -> None:
    reasons: dict[TerminationReason, Callable[[], list[TransactionAction]]] = {}
    done = _reach(ClientNonInviteTransaction, State.COMPLETED)
    reasons[TerminationReason.COMPLETED] = lambda: done.apply(Input.TIMER_K)
    waiting = _reach(ClientNonInviteTransaction, State.TRYING)
    reasons[TerminationReason.TIMED_OUT] = lambda: waiting.tx.handle_timer(32.0)
    broken = _reach(ClientNonInviteTransaction, State.TRYING)
    reasons[TerminationReason.TRANSPORT_ERROR] = lambda: broken.apply(Input.TRANSPORT_ERROR)
    for reason, run in reasons.items():
        last = run()[-1]
        assert isinstance(last, TransactionTerminated)
        assert last.reason is reason
