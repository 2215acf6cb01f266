"""The SIP core's REGISTER round in memory: what `sipua load --reuse-connection` pays per
registration besides TLS, framing and trio.

One round, as the load engine runs it: a `Registration` and its `RegisterClient` made, the
REGISTER built and serialized, a Kamailio-like 401 (Digest, qop=auth) parsed and handled (the
digest computed, the REGISTER rebuilt with credentials and serialized), then a Kamailio-like 200
listing six bindings of the AOR in one Contact field (ours fourth) parsed and handled. Making the
responses from the sent request is not timed.

`--tree DIR` imports sipua from another checkout (say, an export of main) so that two versions
can be timed in turn by the same script. Reported: the median microseconds per round (CPU time of
this process, `time.process_time_ns`, in batches of 100 rounds; garbage collection off while
timing).

Usage: python scripts/bench/register_core.py [--rounds 3000] [--tree DIR]
No assertion is made.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

BATCH = 100
KAMAILIO = "Server: kamailio (5.6.3 (x86_64/linux))"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[2])
    args = parser.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    import sipua
    from sipua.sip import SipUri
    from sipua.sip.parser import parse_message
    from sipua.sip.registration import (
        ContactAddress,
        DigestResponder,
        RegisterClient,
        Registered,
        Registration,
        SendRequest,
    )
    from sipua.sip.serializer import serialize

    if not str(Path(sipua.__file__).resolve()).startswith(str(args.tree.resolve())):
        sys.exit(f"sipua was imported from {sipua.__file__}, not from {args.tree}")

    class Password:
        def reveal(self) -> str:
            return "bench-password"

    def reply(request: bytes, status: str, extra: list[str]) -> bytes:
        fields: dict[str, str] = {}
        for line in request.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:]:
            name, _, value = line.partition(":")
            fields.setdefault(name.strip(), value.strip())
        lines = [
            f"SIP/2.0 {status}",
            f"Via: {fields['Via']};received=127.0.0.1;rport=40000",
            f"From: {fields['From']}",
            f"To: {fields['To']};tag=b27e1a1d33761e85846fc98f5f3a7e58.a0c1",
            f"Call-ID: {fields['Call-ID']}",
            f"CSeq: {fields['CSeq']}",
            *extra,
            KAMAILIO,
            "Content-Length: 0",
            "",
            "",
        ]
        return "\r\n".join(lines).encode()

    rng = random.Random(1)
    aor = SipUri.parse("sips:user1@bench.test")
    local = "127.0.0.1:40000"
    others = [
        f"<sips:user1@127.0.0.1:{40000 + k}>;expires={300 + k};"
        f'+sip.instance="<urn:uuid:{uuid.UUID(int=k + 7, version=4)}>";reg-id=1'
        for k in range(1, 6)
    ]

    def one_round(i: int) -> int:
        spent = 0
        t0 = time.process_time_ns()
        registration = Registration(
            aor=aor,
            contact=ContactAddress(uri=SipUri.parse(f"sips:user1@{local}"), sent_by=local),
            instance_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            rng=rng,
            responder=DigestResponder(username="user1", password=Password(), rng=rng),
            expires=600,
        )
        client = RegisterClient(registration, timer_f=32.0)
        [sent] = client.register(0.0)
        assert isinstance(sent, SendRequest)
        wire = serialize(sent.request)
        spent += time.process_time_ns() - t0
        challenge = reply(
            wire,
            "401 Unauthorized",
            [f'WWW-Authenticate: Digest realm="bench.test", nonce="Z2Fzc2Zf{i:016x}", qop="auth"'],
        )
        t0 = time.process_time_ns()
        [sent] = client.receive_response(parse_message(challenge), 0.1)
        assert isinstance(sent, SendRequest)
        wire = serialize(sent.request)
        spent += time.process_time_ns() - t0
        ours = (
            f"<sips:user1@{local}>;expires=600;"
            f'+sip.instance="<urn:uuid:{registration.instance_id}>";reg-id=1'
        )
        ok = reply(wire, "200 OK", ["Contact: " + ", ".join([*others[:3], ours, *others[3:]])])
        t0 = time.process_time_ns()
        [registered] = client.receive_response(parse_message(ok), 0.2)
        spent += time.process_time_ns() - t0
        assert isinstance(registered, Registered)
        assert registered.expires == 600
        return spent

    for i in range(BATCH * 3):
        one_round(i)
    gc.collect()
    gc.disable()
    try:
        batches = [
            sum(one_round(b * BATCH + i) for i in range(BATCH)) / BATCH / 1000
            for b in range(max(1, args.rounds // BATCH))
        ]
    finally:
        gc.enable()
    print(
        f"{statistics.median(batches):.1f} us per REGISTER round (401 + 200), median of "
        f"{len(batches)} batches of {BATCH} (min {min(batches):.1f}); sipua from {args.tree}"
    )


if __name__ == "__main__":
    main()
