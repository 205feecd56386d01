"""The pooled upstream client against real loopback servers."""

from __future__ import annotations

import pytest

from backends.errors import UpstreamProtocolError
from backends.http1 import ConnectFailed, Endpoint
from tests.fixtures.upstreams import Upstream

LINE = b"POST /v2/models/m/infer HTTP/1.1\r\n"
HEADERS = b"content-length: 2\r\n\r\n"


@pytest.fixture
async def upstream():
    u = await Upstream().start()
    yield u
    await u.stop()


async def test_keep_alive_connection_is_reused(upstream: Upstream) -> None:
    endpoint = Endpoint(upstream.address)
    for _ in range(5):
        response = await endpoint.request(LINE, HEADERS, b"{}", 2.0)
        assert response.status == 200
    assert upstream.connections == 1
    assert len(endpoint.idle) == 1
    endpoint.close()


async def test_idle_connection_closed_by_server_is_replaced_transparently(upstream: Upstream) -> None:
    endpoint = Endpoint(upstream.address)
    assert (await endpoint.request(LINE, HEADERS, b"{}", 2.0)).status == 200
    for writer in list(upstream.writers):  # the server drops its idle keep-alive connection
        writer.transport.abort()
    response = await endpoint.request(LINE, HEADERS, b"{}", 2.0)
    assert response.status == 200
    assert upstream.connections == 2
    endpoint.close()


async def test_refused_connection_raises_connect_failed() -> None:
    gone = await Upstream().start()
    await gone.stop()
    with pytest.raises(ConnectFailed):
        await Endpoint(gone.address).request(LINE, HEADERS, b"{}", 1.0)


async def test_fresh_connection_closed_without_answer_is_a_protocol_error(upstream: Upstream) -> None:
    upstream.mode = "close"
    with pytest.raises(UpstreamProtocolError):
        await Endpoint(upstream.address).request(LINE, HEADERS, b"{}", 1.0)
    assert len(upstream.requests) == 1  # sent once: a request that reached the server is not resent
