"""TlsStream: conformance with trio's stream contract, handshake results, ends and failures."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from sipua.tls.stream import TlsStream
from tests.support.tls_pair import (
    TlsWorld,
    handshake_both,
    tls_lockstep_pair,
    tls_memory_pair,
)

VERSIONS = ["1.2", "1.3"]


@pytest.fixture(scope="module")
def world() -> TlsWorld:
    return TlsWorld()


@pytest.mark.parametrize("version", VERSIONS)
async def test_check_two_way_stream(world: TlsWorld, version: str) -> None:
    client_config = world.client_config(max_version=version)

    async def memory() -> tuple[TlsStream, TlsStream]:
        return tls_memory_pair(world, client_config=client_config)

    async def lockstep() -> tuple[TlsStream, TlsStream]:
        # Handshake up front: otherwise a server in wait_send_all_might_not_block and a client
        # whose receive_some starts the handshake by sending would wait for each other.
        client, server = tls_lockstep_pair(world, client_config=client_config)
        await handshake_both(client, server)
        return client, server

    await trio.testing.check_two_way_stream(memory, lockstep)
