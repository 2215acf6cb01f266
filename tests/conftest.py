"""Test configuration shared by the whole suite.

Async tests run under trio: any `async def test_*` is wrapped with `trio.testing.trio_test`
(the hook trio's own test suite uses). Ask for the `autojump_clock` fixture to run a test on a
virtual clock that jumps ahead whenever every task is blocked, so timer tests never sleep.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
import trio.testing


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> None:
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        test: Callable[..., Any] = pyfuncitem.obj
        pyfuncitem.obj = trio.testing.trio_test(test)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture(autouse=True)
def internal_errors(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Exception]]:
    """Every unexpected error sipua's backstop caught in this test; any left fails the test.

    In production such an error is logged and answered 500 so that the process goes on; in
    the suite it is a bug. A test that provokes one on purpose takes this fixture and clears
    the list after checking it.
    """
    from sipua.transport import connection

    caught: list[Exception] = []
    report = connection.report_internal_error

    def record(error: Exception, **fields: object) -> None:
        caught.append(error)
        report(error, **fields)

    monkeypatch.setattr(connection, "report_internal_error", record)
    yield caught
    if caught:
        pytest.fail(f"sipua met {len(caught)} internal error(s): {caught[:3]!r}")
