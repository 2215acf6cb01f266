"""The atheris driver shared by the per-target harnesses (`fuzz_<target>.py`).

Theory of operation. A harness imports `oracles` under `atheris.instrument_imports`, so every
`sipua` module is instrumented for coverage, then hands libFuzzer a callback that runs the
target's oracle on each input.

By default a finding does not stop the run: the callback records the input under
`$FUZZ_FINDINGS_DIR` (one file per distinct failure: exception type plus the innermost sipua or
oracle frame), prints the traceback once, and goes on, so one run reports every distinct bug it
meets (libFuzzer exits without running Python's exit hooks, so each finding is reported as
it is met, as a `=== finding` line in the log). Set `FUZZ_STOP_ON_CRASH=1` to re-raise instead,
which is what libFuzzer's `-minimize_crash=1` needs.
"""

from __future__ import annotations

import hashlib
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import atheris

_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["sipua"]):
    import oracles

_seen: dict[str, int] = {}


def _signature(exc: BaseException) -> str:
    """Exception type plus the innermost frame in sipua (or the oracle, for a violation)."""
    where = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        if "/sipua/" in frame.filename or frame.filename.endswith("oracles.py"):
            where = f"{Path(frame.filename).name}:{frame.lineno}"
    return f"{type(exc).__name__}@{where}"


def _callback(check: Callable[[bytes], None], findings: Path) -> Callable[[bytes], None]:
    stop = os.environ.get("FUZZ_STOP_ON_CRASH") == "1"

    def one_input(data: bytes) -> None:
        try:
            check(data)
        except Exception as exc:
            if stop:
                raise
            signature = _signature(exc)
            count = _seen.get(signature, 0)
            _seen[signature] = count + 1
            if count == 0:
                findings.mkdir(parents=True, exist_ok=True)
                name = f"{signature.replace(':', '-')}-{hashlib.sha1(data).hexdigest()[:12]}"
                (findings / name).write_bytes(data)
                print(f"\n=== finding {signature} -> {findings / name}", file=sys.stderr)
                traceback.print_exception(exc, limit=-6, file=sys.stderr)

    return one_input


def main(target: str) -> None:
    """Fuzz `target` (a key of `oracles.TARGETS`); argv goes to libFuzzer."""
    findings = Path(os.environ.get("FUZZ_FINDINGS_DIR", "fuzz-findings")) / target
    atheris.Setup(sys.argv, _callback(oracles.TARGETS[target], findings))
    atheris.Fuzz()
