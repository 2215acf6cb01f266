"""CLI start-up time: `sipua --help`, `sipua --version` and `sipua load --help`.

Each command runs `--runs` times as a fresh process; the median wall time is printed beside
`python -c pass` (the interpreter's own floor). Target: `sipua --help` <= 150 ms.

Usage: python scripts/bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def timed(argv: list[str], runs: int) -> tuple[float, float, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False, cwd=REPO)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), min(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "sipua --help": [sys.executable, "-m", "sipua", "--help"],
        "sipua --version": [sys.executable, "-m", "sipua", "--version"],
        "sipua load --help": [sys.executable, "-m", "sipua", "load", "--help"],
    }
    for name, argv in cases.items():
        median, low, high = timed(argv, args.runs)
        print(f"{name:20s} {median:6.1f} ms (min {low:.1f}, max {high:.1f})")
    print("target: sipua --help <= 150 ms")


if __name__ == "__main__":
    main()
