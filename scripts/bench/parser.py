"""Parser benchmark: sipua's parse_message against other pure-Python SIP parsers on PyPI.

What is measured: messages parsed per second over a realistic mix (REGISTER with Digest
Authorization, 401 with WWW-Authenticate, INVITE with SDP and three Vias, 200 OK with Contact),
where each parser starts from the wire bytes and then reads the same typed values from every
message: all Vias (and the top branch), From (tag), To (URI), CSeq (number and method) and Call-ID.
That is the work a transaction layer does per message; parsers that defer work to accessors
pay for it here, and so do parsers that do it eagerly.

Competitors, each skipped with a note if it is not importable:
- sipmessage (PyPI `sipmessage`, the project's `bench` extra): `Message.parse`, lazy accessors.
- sippy (PyPI `sippy`, the B2BUA's SIP stack; it needs `pycryptodome` and `ElPeriodic` to
  import): `SipRequest`/`SipResponse` on str, eager header parsing.

Second comparison, the entry points alone: sipua's receive path (`parse_message`, which frames
the header block, checks the start line and every header name, and validates what the UA
always reads: Via, CSeq, Call-ID, From/To) against sipmessage's `Message.parse`, which is lazy
and decodes nothing until asked.

Timing: CPU time of this process (`time.process_time`), so that other programs on a shared
machine slow the measurement down less; the contenders are timed in turns within each round
(the order rotating every round), and the ratio is taken per round, so load that comes and goes
hits all of them alike. Reported: the median rate of each parser over the rounds and the median
of the per-round ratios.

Usage: python scripts/bench/parser.py [--repeats 7] [--seconds 0.4]
No assertion is made.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sipua.sip import parse_message
from tests.support.messages import MIX

Work = Callable[[bytes], object]


def sipua_work(data: bytes) -> object:
    msg = parse_message(data)
    vias = msg.vias
    return (
        vias[0].branch,
        len(vias),
        msg.from_.tag,
        msg.to.uri,
        msg.cseq.seq,
        msg.cseq.method,
        msg.call_id,
    )


def load_competitors() -> dict[str, Work]:
    found: dict[str, Work] = {}
    try:
        from sipmessage import Message
    except ImportError:
        print("sipmessage: not installed (pip install sipmessage)")
    else:

        def sipmessage_work(data: bytes) -> object:
            msg = Message.parse(data)
            vias = msg.via
            return (
                vias[0].parameters.get("branch"),
                len(vias),
                msg.from_address.parameters.get("tag"),
                msg.to_address.uri,
                msg.cseq.sequence,
                msg.cseq.method,
                msg.call_id,
            )

        found["sipmessage"] = sipmessage_work
        found["sipmessage entry"] = Message.parse
    try:
        from sippy.SipRequest import SipRequest
        from sippy.SipResponse import SipResponse
    except ImportError as exc:
        print(f"sippy: not importable ({exc}); pip install sippy pycryptodome ElPeriodic")
    else:

        def sippy_work(data: bytes) -> object:
            text = data.decode()
            msg = SipResponse(text) if text.startswith("SIP/") else SipRequest(text)
            vias = msg.getHFBodys("via")
            cseq = msg.getHFBody("cseq")
            return (
                vias[0].getBranch(),
                len(vias),
                msg.getHFBody("from").getTag(),
                msg.getHFBody("to").getUrl(),
                cseq.getCSeqNum(),
                cseq.getCSeqMethod(),
                str(msg.getHFBody("call-id")),
            )

        found["sippy"] = sippy_work
    return found


def rate(work: Work, seconds: float) -> float:
    """Messages per CPU second of `work` over the mix, timed for about `seconds`."""
    loops = 1
    while True:
        start = time.process_time()
        for _ in range(loops):
            for data in MIX:
                work(data)
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return loops * len(MIX) / elapsed
        loops *= 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.4)
    args = parser.parse_args()
    contenders: dict[str, Work] = {
        "sipua": sipua_work,
        "sipua entry": parse_message,
        **load_competitors(),
    }
    for work in contenders.values():
        for data in MIX:  # every parser must handle the whole mix before it is timed
            work(data)
    names = list(contenders)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(args.repeats):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(rate(contenders[name], args.seconds))
    print(
        f"Python {sys.version.split()[0]}; mix of {len(MIX)} messages; {args.repeats} rounds, "
        f">= {args.seconds}s of CPU time per parser per round; medians"
    )
    for name in names:
        line = f"{name:>17}: {statistics.median(rates[name]):>10,.0f} msg/s"
        if name not in ("sipua", "sipua entry"):
            ours = "sipua entry" if name.endswith(" entry") else "sipua"
            ratios = [mine / theirs for mine, theirs in zip(rates[ours], rates[name], strict=True)]
            line += f"   {ours} is {statistics.median(ratios):.2f}x faster"
            line += f" (rounds: {min(ratios):.2f}-{max(ratios):.2f})"
        print(line)


if __name__ == "__main__":
    main()
