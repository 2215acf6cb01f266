"""Fixtures for interop tests against real peers (Kamailio, SIPp, baresip, openssl, Asterisk,
pjsua).

The peers must be installed (`scripts/install-peers`) and built (`scripts/build-peers`: Asterisk
and pjsua); a missing one is an error that says so, never a skip. When a test fails, the logs of
the peers it used are attached to its report.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.interop import matrix
from tests.interop.asterisk import Asterisk
from tests.interop.peers import Baresip, Kamailio, TestPki, make_test_pki

# Outcomes of this run's interop tests, for the matrix (tests/interop/matrix.py).
_SCENARIOS: dict[str, matrix.Scenario] = {}

REQUIRED_TOOLS = ("kamailio", "sipp", "baresip", "openssl")


@pytest.fixture(scope="session", autouse=True)
def _peers_installed() -> None:
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"interop peers missing from PATH: {', '.join(missing)}; run scripts/install-peers",
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" or report.outcome != "passed":
        module = item.module if isinstance(item, pytest.Function) else None
        doc = (module.__doc__ or "").strip() if module is not None else ""
        _SCENARIOS[item.nodeid] = matrix.Scenario(
            module=item.nodeid.split("::", 1)[0],
            heading=doc.splitlines()[0].rstrip(".") if doc else item.nodeid.split("::", 1)[0],
            name=matrix.scenario_name(item.name),
            outcome=report.outcome,
        )
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name, value in funcargs.items():
            if isinstance(value, Kamailio | Baresip | Asterisk):
                report.sections.append((f"{name} log tail ({value.log_path})", value.log_tail()))
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("SIPUA_INTEROP_MATRIX")
    if target and _SCENARIOS:
        matrix.write(Path(target), list(_SCENARIOS.values()))


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A throwaway PKI for example.test, made once per test session."""
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory, test_pki: TestPki) -> Iterator[Kamailio]:
    """A Kamailio registrar shared by the tests of one module (flow-reuse routing)."""
    with Kamailio(tmp_path_factory.mktemp("kamailio"), pki=test_pki) as kam:
        yield kam
