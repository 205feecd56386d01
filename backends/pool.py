"""A backend's pool of endpoints: picks one with the balancer and sends the request to it.

A refused connection moves on to the next endpoint (nothing was sent, so it is safe); every
other failure is the caller's answer. Retries of sent requests, budgets and hedging belong
to the resilience layer, not here.
"""

from __future__ import annotations

import asyncio

from backends.balancer import Balancer, RoundRobin
from backends.errors import NoHealthyEndpoint, UpstreamTimeout
from backends.http1 import ConnectFailed, Endpoint, UpstreamResponse


class Pool:
    __slots__ = ("name", "endpoints", "balancer", "timeout")

    def __init__(self, name: str, endpoints: list[Endpoint], *, timeout: float,
                 balancer: Balancer | None = None) -> None:
        self.name = name
        self.endpoints = endpoints
        self.balancer = balancer or RoundRobin()
        self.timeout = timeout

    async def send(self, line: bytes, headers: bytes, body: bytes,
                   timeout: float | None = None) -> tuple[UpstreamResponse, Endpoint]:
        """Sends to one endpoint; returns the response and the endpoint that gave it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout)
        tried: list[Endpoint] = []
        endpoints = self.endpoints
        while True:
            endpoint = self.balancer.pick(endpoints, tried)
            if endpoint is None:
                raise NoHealthyEndpoint(f"no endpoint of backend {self.name!r} accepted a connection "
                                        f"(tried {', '.join(e.address for e in tried)})")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise UpstreamTimeout(f"backend {self.name!r} did not answer in time")
            try:
                return await endpoint.request(line, headers, body, remaining), endpoint
            except ConnectFailed:
                tried.append(endpoint)

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.close()
