"""Active health checks: a GET on each endpoint on a jittered schedule; thresholds move it in and out.

Not passive ejection from live traffic (see backends.outlier).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence

import aiohttp

from backends.http1 import Endpoint

log = logging.getLogger("meshgate.health")


class HealthChecker:
    def __init__(self, endpoints: Sequence[Endpoint], *, path: str = "/v2/health/ready", interval: float = 2.0,
                 timeout: float = 1.0, healthy_threshold: int = 1, unhealthy_threshold: int = 2,
                 jitter: float = 10.0, rng: random.Random | None = None) -> None:
        self.endpoints = endpoints
        self.path = path
        self.interval = interval
        self.timeout = timeout
        self.healthy_threshold = healthy_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self.jitter = jitter / 100.0
        self.rng = rng or random.Random()
        self._passes = {id(e): 0 for e in endpoints}
        self._failures = {id(e): 0 for e in endpoints}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def check_once(self, endpoint: Endpoint) -> bool:
        """One check; updates the endpoint's counters and, past a threshold, ``endpoint.healthy``."""
        try:
            async with self._session_now().get(f"http://{endpoint.address}{self.path}") as response:
                passed = 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError, OSError):
            passed = False
        key = id(endpoint)
        if passed:
            self._passes[key] += 1
            self._failures[key] = 0
            if not endpoint.healthy and self._passes[key] >= self.healthy_threshold:
                endpoint.healthy = True
                log.info("endpoint %s is healthy again", endpoint.address)
        else:
            self._failures[key] += 1
            self._passes[key] = 0
            if endpoint.healthy and self._failures[key] >= self.unhealthy_threshold:
                endpoint.healthy = False
                log.warning("endpoint %s failed %d health checks: out of rotation", endpoint.address,
                            self._failures[key])
        return passed

    async def _loop(self, endpoint: Endpoint) -> None:
        await asyncio.sleep(self.rng.uniform(0, self.interval))  # spread the first checks
        while True:
            await self.check_once(endpoint)
            spread = self.interval * self.jitter
            await asyncio.sleep(self.interval + self.rng.uniform(-spread, spread))

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(e), name=f"health-{e.address}") for e in self.endpoints]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None
