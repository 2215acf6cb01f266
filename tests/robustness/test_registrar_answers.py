"""A registrar whose answers are malformed: a refusal (exit code 4), never a crash.

The test registrar answers over real loopback TLS; each subclass spoils one header of its
answer. `register()` must either register (a header it may ignore) or raise
`RegistrationError`, and `maintain()` must go on retrying.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from sipua.errors import RegistrationError
from sipua.sip import Request, Response
from sipua.ua.agent import UserAgent
from tests.support.registrar import TestRegistrar, _Flow
from tests.ua.test_agent import events, settings, wait_until


class SpoilingRegistrar(TestRegistrar):
    """Sets `header: value` on every final answer to REGISTER (``{contact}``: the request's)."""

    __test__ = False

    def __init__(self, header: str, value: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.header = header
        self.value = value

    def _register(self, flow: _Flow, request: Request) -> Response:
        response = super()._register(flow, request)
        if response.status >= 200 and response.status != 401:
            response.headers.remove(self.header)
            contact = request.headers.get("Contact") or ""
            response.headers.add(self.header, self.value.replace("{contact}", contact))
        return response


@pytest.mark.parametrize("value", ["²", "١٢", "9" * 5000])
async def test_unusable_flow_timer_is_ignored(tmp_path: Path, value: str) -> None:
    # Regression: "²".isdigit() is True, int("²") raises ValueError; so do 4301+ digits.
    async with (
        SpoilingRegistrar("Flow-Timer", value) as registrar,
        UserAgent(settings(tmp_path, registrar)) as ua,
    ):
        registered = await ua.account.register()
        assert registered.flow_timer is None


@pytest.mark.parametrize("value", ["²", "9" * 5000])
async def test_unusable_retry_after_is_still_a_refusal(tmp_path: Path, value: str) -> None:
    async with (
        SpoilingRegistrar("Retry-After", value, reject_with=503) as registrar,
        UserAgent(settings(tmp_path, registrar)) as ua,
    ):
        with pytest.raises(RegistrationError) as info:
            await ua.account.register()
        assert info.value.status == 503


async def test_malformed_contact_in_the_200_is_a_refusal_and_maintain_goes_on(
    tmp_path: Path,
) -> None:
    async with (
        SpoilingRegistrar("Contact", "{contact};expires=abc") as registrar,
        UserAgent(settings(tmp_path, registrar), backoff_base=0.1) as ua,
    ):
        with pytest.raises(RegistrationError, match="malformed") as info:
            await ua.account.register()
        assert info.value.exit_code == 4
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ua.account.maintain)
            await wait_until(lambda: len(events(ua, "registration-retry")) >= 2, 10)
            nursery.cancel_scope.cancel()
