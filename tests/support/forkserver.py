"""Processes to kill with SIGKILL, forked from one warm parent instead of started cold.

A kill -9 test needs many victims. Starting each as a new interpreter costs its imports (a
fifth of a second with cryptography); forking them from a parent that imported everything
once costs a millisecond. The worker script ends with `serve(victim)`: for each line the test
writes, the parent forks a child that runs `victim()` (which prints ``ready`` once it is in
the part worth killing, then loops), says ``pid N``, and says ``dead`` once the child is
reaped, so the test inspects the files only after the writer is gone.

Parent and child share one pipe, so each line goes out in one ``write`` (`say`): ``print``
writes the text and the newline apart when Python runs unbuffered (``PYTHONUNBUFFERED``, as CI
runners often set), and the two processes' lines could then interleave mid-line.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Self

import trio

#: Prepended to a worker script: the fork loop, standard library only.
SERVE = """
import os as _os
import sys as _sys


def say(line):
    # One write of under PIPE_BUF bytes: atomic against the other process's lines.
    _os.write(1, (line + "\\n").encode())


def serve(victim):
    for _ in _sys.stdin:
        pid = _os.fork()
        if pid == 0:
            try:
                victim()
            finally:
                _os._exit(0)
        say(f"pid {pid}")
        _os.waitpid(pid, 0)
        say("dead")
"""


class ForkServer:
    """The test's side: start the worker once, then kill one fresh child at a time."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self._process = process
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._buffer = b""

    @classmethod
    async def start(cls, script: str, *args: str) -> ForkServer:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-c", SERVE + script, *args], stdin=-1, stdout=-1
        )
        return cls(process)

    async def kill_one(self, after: float, *, within: float = 20) -> None:
        """Forks a child, waits for its ``ready``, SIGKILLs it `after` seconds later, and
        returns once it is reaped."""
        with trio.fail_after(within):
            await self._stdin.send_all(b"go\n")
            lines = {await self._line(), await self._line()}  # "pid N" and "ready", any order
            [pid_line] = [line for line in lines if line.startswith("pid ")]
            assert lines == {pid_line, "ready"}, lines
            await trio.sleep(after)
            os.kill(int(pid_line.split()[1]), signal.SIGKILL)  # no cleanup, no atexit, no flush
            assert await self._line() == "dead"

    async def aclose(self) -> None:
        await self._stdin.aclose()
        with trio.move_on_after(10):
            await self._process.wait()
        if self._process.returncode is None:  # a failed test left a child mid-loop
            self._process.kill()
            await self._process.wait()
        await self._stdout.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _line(self) -> str:
        while b"\n" not in self._buffer:
            data = await self._stdout.receive_some(1024)
            assert data, "the fork server ended"
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()
