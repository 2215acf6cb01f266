"""Test configuration shared by the whole suite.

Async tests run under trio: any `async def test_*` is wrapped with `trio.testing.trio_test`
(the hook trio's own test suite uses). Ask for the `autojump_clock` fixture to run a test on a
virtual clock that jumps ahead whenever every task is blocked, so timer tests never sleep.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
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
