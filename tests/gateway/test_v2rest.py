"""The V2 REST front end against real TCP upstreams that answer, hang, lie or vanish."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.fixtures.gateway import running_gateway
from tests.fixtures.upstreams import Upstream


def _policy(*addresses: str, timeout: str = "2s", max_body: str = "16MiB", model: str = "served") -> str:
    endpoints = ", ".join(addresses)
    return f"""
limits: {{max_body: {max_body}}}
backends:
  b: {{endpoints: [{endpoints}], model: {model}, timeout: {timeout}, connect_timeout: 500ms}}
routes:
  - {{model: demo, backend: b}}
"""


@pytest.fixture
async def upstream():
    u = await Upstream().start()
    yield u
    await u.stop()


async def _post(session: aiohttp.ClientSession, port: int, path: str, body: bytes, **headers: str):
    async with session.post(f"http://127.0.0.1:{port}{path}", data=body, headers=headers) as r:
        return r.status, r.headers, await r.read()


async def test_infer_passes_body_through_and_rewrites_model(upstream: Upstream) -> None:
    async with running_gateway(_policy(upstream.address)) as gw, aiohttp.ClientSession() as s:
        body = b'{"inputs": []}'
        status, headers, out = await _post(s, gw.http_port, "/v2/models/demo/versions/3/infer", body,
                                           **{"x-request-id": "abc-123", "content-type": "application/json",
                                              "x-tenant": "acme"})
    assert status == 200
    assert json.loads(out)["path"] == "/v2/models/served/versions/3/infer"
    assert headers["x-request-id"] == "abc-123"
    sent = upstream.requests[0]
    assert sent.endswith(body)
    assert b"x-request-id: abc-123\r\n" in sent
    assert b"x-tenant: acme\r\n" in sent


async def test_request_id_generated_when_absent_and_unique(upstream: Upstream) -> None:
    async with running_gateway(_policy(upstream.address)) as gw, aiohttp.ClientSession() as s:
        ids = set()
        for _ in range(5):
            status, headers, _ = await _post(s, gw.http_port, "/v2/models/demo/infer", b"{}")
            assert status == 200
            ids.add(headers["x-request-id"])
    assert len(ids) == 5
    for sent, rid in zip(upstream.requests, [None] * 5, strict=True):
        assert b"x-request-id: " in sent and rid is None


async def test_binary_extension_header_is_forwarded(upstream: Upstream) -> None:
    async with running_gateway(_policy(upstream.address)) as gw, aiohttp.ClientSession() as s:
        body = b'{"inputs":[]}' + bytes(range(16))
        status, _, _ = await _post(s, gw.http_port, "/v2/models/demo/infer", body,
                                   **{"Inference-Header-Content-Length": "13",
                                      "Content-Type": "application/octet-stream"})
    assert status == 200
    assert b"inference-header-content-length: 13\r\n" in upstream.requests[0]
    assert upstream.requests[0].endswith(body)


async def test_unknown_model_is_404_and_gateway_keeps_serving(upstream: Upstream) -> None:
    async with running_gateway(_policy(upstream.address)) as gw, aiohttp.ClientSession() as s:
        status, _, out = await _post(s, gw.http_port, "/v2/models/nope/infer", b"{}")
        assert status == 404 and "nope" in json.loads(out)["error"]
        status, _, _ = await _post(s, gw.http_port, "/v2/models/demo/infer", b"{}")
        assert status == 200


async def test_oversize_body_is_413(upstream: Upstream) -> None:
    async with running_gateway(_policy(upstream.address, max_body="1KiB")) as gw, aiohttp.ClientSession() as s:
        status, _, out = await _post(s, gw.http_port, "/v2/models/demo/infer", b"x" * 2048)
        assert status == 413 and "limit" in json.loads(out)["error"]
        status, _, _ = await _post(s, gw.http_port, "/v2/models/demo/infer", b"x" * 1000)
        assert status == 200
    assert len(upstream.requests) == 1  # the oversize body never reached the backend


async def test_upstream_down_is_503(upstream: Upstream) -> None:
    await upstream.stop()
    async with running_gateway(_policy(upstream.address)) as gw, aiohttp.ClientSession() as s:
        status, _, out = await _post(s, gw.http_port, "/v2/models/demo/infer", b"{}")
    assert status == 503
    assert upstream.address in json.loads(out)["error"]


async def test_refused_endpoint_is_skipped_for_a_live_one(upstream: Upstream) -> None:
    dead = await Upstream().start()
    await dead.stop()
    async with running_gateway(_policy(dead.address, upstream.address)) as gw, aiohttp.ClientSession() as s:
        for _ in range(4):
            status, _, _ = await _post(s, gw.http_port, "/v2/models/demo/infer", b"{}")
            assert status == 200
    assert len(upstream.requests) == 4


async def test_upstream_hanging_is_504_within_timeout(upstream: Upstream) -> None:
    upstream.mode = "hang"
    async with running_gateway(_policy(upstream.address, timeout="300ms")) as gw, aiohttp.ClientSession() as s:
        loop = asyncio.get_running_loop()
        start = loop.time()
        status, _, out = await _post(s, gw.http_port, "/v2/models/demo/infer", b"{}")
        elapsed = loop.time() - start
        assert status == 504 and "error" in json.loads(out)
        assert 0.25 < elapsed < 2.0
        upstream.mode = "ok"
        status, _, _ = await _post(s, gw.http_port, "/v2/models/demo/infer", b"{}")
        assert status == 200


@pytest.mark.parametrize("mode", ["garbage", "close"])
async def test_upstream_protocol_error_is_502(upstream: Upstream, mode: str) -> None:
    upstream.mode = mode
    async with running_gateway(_policy(upstream.address)) as gw, aiohttp.ClientSession() as s:
        status, _, out = await _post(s, gw.http_port, "/v2/models/demo/infer", b"{}")
        assert status == 502 and json.loads(out)["error"]
        upstream.mode = "ok"
        status, _, _ = await _post(s, gw.http_port, "/v2/models/demo/infer", b"{}")
        assert status == 200


async def test_upstream_errors_keep_status_and_become_v2_json(upstream: Upstream) -> None:
    async with running_gateway(_policy(upstream.address)) as gw, aiohttp.ClientSession() as s:
        upstream.mode = "error500"
        status, _, out = await _post(s, gw.http_port, "/v2/models/demo/infer", b"{}")
        assert status == 500 and json.loads(out) == {"error": "model crashed"}
        upstream.mode = "html502"
        status, _, out = await _post(s, gw.http_port, "/v2/models/demo/infer", b"{}")
        assert status == 502 and "bad gateway" in json.loads(out)["error"]


async def test_malformed_http_gets_400_and_others_are_served(upstream: Upstream) -> None:
    async with running_gateway(_policy(upstream.address)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.http_port)
        writer.write(b"POST /v2/models/demo/infer HTTP/1.1\r\ncontent-length: nope\r\n\r\n")
        answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b'"error"' in answer
        async with aiohttp.ClientSession() as s:
            status, _, _ = await _post(s, gw.http_port, "/v2/models/demo/infer", b"{}")
            assert status == 200


async def test_pipelined_requests_are_answered_in_order(upstream: Upstream) -> None:
    async with running_gateway(_policy(upstream.address)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.http_port)
        bodies = [b"x" * n for n in (3, 1, 2)]
        writer.write(b"".join(b"POST /v2/models/demo/infer HTTP/1.1\r\nhost: g\r\ncontent-length: %d\r\n\r\n%b"
                              % (len(b), b) for b in bodies))
        received = []
        for _ in bodies:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            received.append(json.loads(await reader.readexactly(length))["received"])
        writer.close()
    assert received == [3, 1, 2]


async def test_health_and_server_metadata(upstream: Upstream) -> None:
    async with running_gateway(_policy(upstream.address)) as gw, aiohttp.ClientSession() as s:
        base = f"http://127.0.0.1:{gw.http_port}"
        async with s.get(base + "/v2/health/live") as r:
            assert r.status == 200
        async with s.get(base + "/v2/health/ready") as r:
            assert r.status == 200
        async with s.get(base + "/v2") as r:
            meta = await r.json()
            assert meta["name"] == "meshgate" and "binary_tensor_data" in meta["extensions"]
        async with s.get(base + "/v2/models/demo") as r:
            assert r.status == 200 and (await r.json())["name"] == "demo"  # renamed from "served"
        async with s.get(base + "/admin/status") as r:
            assert r.status == 404  # the admin API is not on the data port
        async with s.get(f"http://127.0.0.1:{gw.admin_port}/metrics") as r:
            text = await r.text()
            assert "meshgate_request_duration_seconds" in text


async def test_idle_client_connections_are_closed(upstream: Upstream) -> None:
    policy = _policy(upstream.address).replace("limits: {max_body: 16MiB}", "limits: {max_body: 16MiB, idle_timeout: 200ms}")
    async with running_gateway(policy) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.http_port)
        writer.write(b"POST /v2/models/demo/infer HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}")
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"GET /v2/health/li")  # a request head that never finishes
        assert await asyncio.wait_for(reader.read(), 5) is not None  # EOF: the gateway hung up
        assert reader.at_eof()
        writer.close()
        assert len(gw.connections.open) == 0


async def test_backend_version_rewrites_the_client_version(upstream: Upstream) -> None:
    policy = _policy(upstream.address).replace("model: served,", "model: served, version: '7',")
    async with running_gateway(policy) as gw, aiohttp.ClientSession() as s:
        for path in ("/v2/models/demo/infer", "/v2/models/demo/versions/3/infer"):
            status, _, out = await _post(s, gw.http_port, path, b"{}")
            assert status == 200 and json.loads(out)["path"] == "/v2/models/served/versions/7/infer"


async def test_backend_at_its_limit_answers_503_with_retry_after(upstream: Upstream) -> None:
    upstream.delay = 0.3
    policy = _policy(upstream.address).replace("connect_timeout: 500ms}", "connect_timeout: 500ms, limits: {max_inflight: 1}}")
    async with running_gateway(policy) as gw, aiohttp.ClientSession() as s:
        slow = asyncio.ensure_future(_post(s, gw.http_port, "/v2/models/demo/infer", b"{}"))
        await asyncio.wait_for(upstream.received.wait(), 5)  # the first request holds the only slot
        status, headers, out = await _post(s, gw.http_port, "/v2/models/demo/infer", b"{}")
        assert status == 503 and headers["retry-after"] == "1"
        assert "in flight" in json.loads(out)["error"]
        assert (await slow)[0] == 200


async def test_client_deadline_header_shrinks_the_backend_timeout(upstream: Upstream) -> None:
    upstream.mode = "hang"
    async with running_gateway(_policy(upstream.address, timeout="10s")) as gw, aiohttp.ClientSession() as s:
        loop = asyncio.get_running_loop()
        start = loop.time()
        status, _, _ = await _post(s, gw.http_port, "/v2/models/demo/infer", b"{}", **{"x-meshgate-timeout": "200ms"})
        assert status == 504 and loop.time() - start < 2.0
        status, _, out = await _post(s, gw.http_port, "/v2/models/demo/infer", b"{}", **{"x-meshgate-timeout": "soon"})
        assert status == 400 and "x-meshgate-timeout" in json.loads(out)["error"]
