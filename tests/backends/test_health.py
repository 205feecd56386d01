"""Active health checks against real loopback servers that pass, fail, refuse or hang."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from backends.health import HealthChecker
from backends.http1 import Endpoint
from tests.fixtures.reference import free_port


class Server:
    """A real HTTP server whose readiness answer the test sets."""

    def __init__(self) -> None:
        self.status = 200
        self.hang = False
        self.checked = asyncio.Event()
        self.release = asyncio.Event()

    async def ready(self, _: web.Request) -> web.Response:
        self.checked.set()
        if self.hang:
            await self.release.wait()
        return web.Response(status=self.status)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/v2/health/ready", self.ready)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        return f"127.0.0.1:{port}"


@pytest.fixture
async def server():
    s = Server()
    s.address = await s.start()
    yield s
    s.release.set()
    await s.runner.cleanup()


async def test_thresholds_take_an_endpoint_out_and_bring_it_back(server) -> None:
    e = Endpoint(server.address)
    checker = HealthChecker([e], unhealthy_threshold=2, healthy_threshold=2, timeout=1.0)
    try:
        server.status = 503
        assert await checker.check_once(e) is False and e.healthy  # one failure is not enough
        assert await checker.check_once(e) is False and not e.healthy
        server.status = 200
        assert await checker.check_once(e) is True and not e.healthy  # one pass is not enough
        assert await checker.check_once(e) is True and e.healthy
    finally:
        await checker.stop()


async def test_refused_and_hanging_endpoints_fail_their_checks(server) -> None:
    refused = Endpoint(f"127.0.0.1:{free_port()}")
    server.hang = True
    hanging = Endpoint(server.address)
    checker = HealthChecker([refused, hanging], unhealthy_threshold=1, timeout=0.2)
    try:
        assert await checker.check_once(refused) is False and not refused.healthy
        assert await checker.check_once(hanging) is False and not hanging.healthy
    finally:
        await checker.stop()


async def test_running_checker_follows_the_server(server) -> None:
    e = Endpoint(server.address)
    checker = HealthChecker([e], interval=0.05, unhealthy_threshold=1, healthy_threshold=1)
    server.status = 503
    checker.start()
    try:
        async def until(want: bool) -> None:
            while e.healthy is not want:
                server.checked.clear()
                await server.checked.wait()  # the next check has reached the server
                await asyncio.sleep(0)  # and its answer has been processed

        await asyncio.wait_for(until(False), 5)
        server.status = 200
        await asyncio.wait_for(until(True), 5)
    finally:
        await checker.stop()
