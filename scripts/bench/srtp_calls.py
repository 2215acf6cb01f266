"""Concurrent SRTP echo calls held by one process: the most with < 1% loss, and CPU per packet.

The process under test holds N `MediaSession`s answering as `echo` (what a PBX's Echo() does),
SRTP compulsory (AES_CM_128_HMAC_SHA1_80, SDES keys from a real offer/answer), each sending 50
packets a second and playing back what it receives. A second process (the load: the callers)
holds the N calling sessions, each sending a 1 kHz tone at 50 packets a second, so the two
sides do not share an interpreter. Everything is on 127.0.0.1 over real UDP sockets.

For each N (a ramp, each step `--seconds` long) it reports, for the process under test: packets
received and sent, loss by sequence in both directions (callers -> echo as the echo sessions
count it, echo -> callers as the callers count it), the send rate against the 50 packets/s
due, and CPU (user + system, from rusage) per packet handled (received + sent). A step is held
when loss is under 1% both ways and the echo side sent at least 99% of the packets due.

Usage: python scripts/bench/srtp_calls.py [--calls 50 100 150 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import secrets
import sys
from multiprocessing.connection import Connection
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import trio  # noqa: E402

from sipua.media.negotiation import accept_answer, answer_offer, make_offer  # noqa: E402
from sipua.media.session import MediaSession, PortRange  # noqa: E402
from sipua.media.sources import EchoSource, MediaSpec, make_source  # noqa: E402

CALLER_PORTS = PortRange(20000, 29999)
ECHO_PORTS = PortRange(30000, 39999)
PPS = 50


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _callers(conn: Connection, calls: int, seconds: float) -> None:
    sessions = [MediaSession.open("127.0.0.1", CALLER_PORTS) for _ in range(calls)]
    offers = [
        make_offer(
            policy="compulsory",
            signalling_secure=True,
            address="127.0.0.1",
            port=session.port,
            session_id=session.port,
            random_bytes=secrets.token_bytes,
        )
        for session in sessions
    ]
    conn.send([offer.body for offer in offers])
    answers = conn.recv()
    plans = [
        accept_answer(offer, answer, policy="compulsory", signalling_secure=True)
        for offer, answer in zip(offers, answers, strict=True)
    ]
    conn.recv()  # go
    async with trio.open_nursery() as nursery:
        for session, plan in zip(sessions, plans, strict=True):
            nursery.start_soon(session.run, plan, make_source(MediaSpec("tone"), plan.codec))
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    reports = [session.report() for session in sessions]
    for session in sessions:
        session.close()
    conn.send(
        {
            "received": sum(r.packets_received for r in reports),
            "lost": sum(r.packets_lost for r in reports),
            "auth_failures": sum(r.srtp_auth_failures for r in reports),
        }
    )


def _caller_process(conn: Connection, calls: int, seconds: float) -> None:
    trio.run(_callers, conn, calls, seconds)


async def _echo_side(conn: Connection, calls: int, seconds: float) -> dict[str, float]:
    offers = conn.recv()
    sessions = [MediaSession.open("127.0.0.1", ECHO_PORTS) for _ in range(calls)]
    answers, plans = [], []
    for session, offer in zip(sessions, offers, strict=True):
        answer, plan = answer_offer(
            offer,
            policy="compulsory",
            signalling_secure=True,
            address="127.0.0.1",
            port=session.port,
            session_id=session.port,
            random_bytes=secrets.token_bytes,
        )
        answers.append(answer)
        plans.append(plan)
    conn.send(answers)
    async with trio.open_nursery() as nursery:
        for session, plan in zip(sessions, plans, strict=True):
            await nursery.start(session.run, plan, EchoSource(plan.codec))
        conn.send("go")
        cpu0, t0 = _cpu(), trio.current_time()
        await trio.sleep(seconds)
        cpu1, t1 = _cpu(), trio.current_time()
        nursery.cancel_scope.cancel()
    reports = [session.report() for session in sessions]
    for session in sessions:
        session.close()
    received = sum(r.packets_received for r in reports)
    sent = sum(r.packets_sent for r in reports)
    return {
        "received": received,
        "sent": sent,
        "lost": sum(r.packets_lost for r in reports),
        "auth_failures": sum(r.srtp_auth_failures for r in reports),
        "cpu": cpu1 - cpu0,
        "elapsed": t1 - t0,
    }


def run_step(calls: int, seconds: float) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_caller_process, args=(theirs, calls, seconds + 1.0))
    child.start()
    try:
        echo = trio.run(_echo_side, ours, calls, seconds)
        callers = ours.recv()
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    due = calls * PPS * echo["elapsed"]
    handled = echo["received"] + echo["sent"]
    inbound_expected = echo["received"] + echo["lost"]
    outbound_expected = callers["received"] + callers["lost"]
    return {
        "calls": calls,
        "loss_in": 100.0 * echo["lost"] / max(1, inbound_expected),
        "loss_out": 100.0 * callers["lost"] / max(1, outbound_expected),
        "send_rate": 100.0 * echo["sent"] / due,
        "received": echo["received"],
        "sent": echo["sent"],
        "auth_failures": echo["auth_failures"] + callers["auth_failures"],
        "cpu_us_per_packet": 1e6 * echo["cpu"] / max(1, handled),
        "cpu_share": 100.0 * echo["cpu"] / echo["elapsed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 100, 150, 200])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(
        f"{'calls':>5} {'loss in %':>9} {'loss out %':>10} {'sent/due %':>10} "
        f"{'received':>9} {'sent':>9} {'auth fail':>9} {'CPU us/pkt':>10} {'CPU %':>6}  held"
    )
    best = 0
    for calls in args.calls:
        r = run_step(calls, args.seconds)
        held = r["loss_in"] < 1 and r["loss_out"] < 1 and r["send_rate"] >= 99
        best = max(best, calls) if held else best
        print(
            f"{calls:>5} {r['loss_in']:>9.2f} {r['loss_out']:>10.2f} {r['send_rate']:>10.1f} "
            f"{r['received']:>9.0f} {r['sent']:>9.0f} {r['auth_failures']:>9.0f} "
            f"{r['cpu_us_per_packet']:>10.1f} {r['cpu_share']:>6.1f}  {'yes' if held else 'no'}",
            flush=True,
        )
    print(f"most concurrent SRTP echo calls held (< 1% loss, >= 99% of packets sent): {best}")


if __name__ == "__main__":
    main()
