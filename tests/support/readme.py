"""The README's sample outputs, compared with what sipua and the demo really print."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent.parent / "README.md"

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z ")


def readme_block(after: str) -> list[str]:
    """The lines of the first fenced block after the text `after` in the README."""
    text = README.read_text()
    return text.split(after, 1)[1].split("```", 2)[1].splitlines()[1:]


def line_key(line: str) -> str:
    """What identifies a line of output, without times, pids, ports or paths ("" to skip it).

    A heading of the demo (`== Starting Kamailio: ...`), an account event (`[alice] ✔ registered`),
    another event (`tls-established`) or sipua's outcome line (`registered:`).
    """
    line = _TIMESTAMP.sub("", line.strip())
    if line.startswith(("== ", "[alice] ")):
        return " ".join(line.split()[:3])
    if line.startswith("[info"):
        return line.split("]", 1)[1].split()[0]
    if re.match(r"(registered|unregistered|registration failed): sips:", line):
        return line.split(":", 1)[0]
    if line.startswith("sipua: error: "):
        return "sipua: error:"
    return ""


def in_the_same_order(sample: list[str], output: list[str]) -> bool:
    """Whether every keyed line of `sample` appears in `output`, in the sample's order."""
    seen = iter(key for key in map(line_key, output) if key)
    return all(any(key == other for other in seen) for key in map(line_key, sample) if key)
