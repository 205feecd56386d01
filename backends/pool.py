"""A backend's pool of endpoints: admission, endpoint choice, attempts, safe retries, hedging.

One ``send`` per client request. It picks an endpoint the balancer likes among those that may
take work (healthy, not ejected, under their in-flight limit), and retries on another one only
when that is safe: the connection was refused or reset before any answer byte, or the server
said 503 before doing work; each retry spends from the retry budget. Every attempt feeds the
balancer's latency estimate and the outlier detector.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from backends.admission import Admission
from backends.balancer import Balancer, RoundRobin
from backends.errors import GatewayError, NoHealthyEndpoint, UpstreamProtocolError, UpstreamTimeout
from backends.http1 import ConnectFailed, Endpoint, UpstreamResponse
from backends.retry import RetryBudget, backoff


class Outliers(Protocol):
    """What the pool needs from an outlier detector (see backends.outlier)."""

    def record(self, endpoint: Endpoint, ok: bool) -> None: ...


class _NoOutliers:
    def record(self, endpoint: Endpoint, ok: bool) -> None:
        pass


class Background(Protocol):
    """A helper that runs beside a pool (health checks, load scraping)."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    backoff: float = 0.005
    max_backoff: float = 0.1
    on_503: bool = True


@dataclass(frozen=True)
class HedgePolicy:
    percentile: float = 95.0
    min_delay: float = 0.005


class _Latencies:
    """Recent attempt latencies of one pool, for the hedging delay (percentile refreshed every 64)."""

    def __init__(self, percentile: float, size: int = 512) -> None:
        self.percentile = percentile
        self.samples: deque[float] = deque(maxlen=size)
        self.value = 0.0
        self._since = 0

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        self._since += 1
        if self._since >= 64:
            self._since = 0
            ordered = sorted(self.samples)
            self.value = ordered[min(len(ordered) - 1, int(len(ordered) * self.percentile / 100))]


class Pool:
    def __init__(self, name: str, endpoints: list[Endpoint], *, timeout: float, balancer: Balancer | None = None,
                 retries: RetryPolicy | None = None, budget: RetryBudget | None = None,
                 admission: Admission | None = None, max_inflight_per_endpoint: int = 0,
                 hedging: HedgePolicy | None = None, outliers: Outliers | None = None,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self.name = name
        self.endpoints = endpoints
        self.balancer = balancer or RoundRobin()
        self.timeout = timeout
        self.retries = retries or RetryPolicy(attempts=1)
        self.budget = budget or RetryBudget()
        self.admission = admission or Admission(name)
        self.max_per_endpoint = max_inflight_per_endpoint
        self.hedging = hedging
        self.latencies = _Latencies(hedging.percentile) if hedging else None
        self.outliers: Outliers = outliers or _NoOutliers()
        self.clock = clock
        self.rng = rng or random.Random()
        self.background: list[Background] = []  # health checks, load scrapers: started and stopped with the pool
        self.started = False
        self.retried = 0
        self.hedged = 0

    def _choose(self, tried: list[Endpoint], key: bytes | None) -> Endpoint | None:
        now = self.clock()
        limit = self.max_per_endpoint

        def ok(e: Endpoint) -> bool:
            return (e.healthy and e.ejected_until <= now and (limit == 0 or e.inflight < limit)
                    and e not in tried)

        endpoint = self.balancer.pick(self.endpoints, ok, key)
        if endpoint is None and limit == 0:
            # Panic mode (as Envoy's panic threshold): when health checks and ejection leave nothing,
            # trying a possibly-sick endpoint beats refusing outright.
            endpoint = self.balancer.pick(self.endpoints, lambda e: e not in tried, key)
        return endpoint

    async def send(self, line: bytes, headers: bytes, body: bytes, timeout: float | None = None,
                   key: bytes | None = None) -> tuple[UpstreamResponse, Endpoint]:
        """Sends to one endpoint (more when retried or hedged); the response and who gave it."""
        clock = self.clock
        deadline = clock() + (min(timeout, self.timeout) if timeout else self.timeout)
        if not self.admission.try_enter():
            await self.admission.enter()
        try:
            self.budget.deposit()
            tried: list[Endpoint] = []
            attempt = 0
            while True:
                attempt += 1
                endpoint = self._choose(tried, key)
                if endpoint is None:
                    raise NoHealthyEndpoint(f"no endpoint of backend {self.name!r} can take the request"
                                            + (f" (tried {', '.join(e.address for e in tried)})" if tried else ""))
                remaining = deadline - clock()
                if remaining <= 0:
                    raise UpstreamTimeout(f"backend {self.name!r} did not answer in time")
                tried.append(endpoint)
                try:
                    if self.hedging is not None:
                        response, endpoint = await self._hedged(endpoint, line, headers, body, remaining, tried, key)
                    else:  # _attempt, inlined: one coroutine frame less on every request
                        start = clock()
                        try:
                            response = await endpoint.request(line, headers, body, remaining)
                        except (ConnectFailed, GatewayError):
                            self.outliers.record(endpoint, False)
                            raise
                        self.balancer.observe(endpoint, clock() - start)
                        self.outliers.record(endpoint, response.status < 500)
                except ConnectFailed:
                    # Nothing was sent: moving on to another endpoint costs the fleet nothing, so it
                    # spends no attempt and no budget (bounded by the endpoints left to try).
                    attempt -= 1
                    if self._choose(tried, key) is None:
                        raise NoHealthyEndpoint(f"no endpoint of backend {self.name!r} accepted a connection "
                                                f"(tried {', '.join(x.address for x in tried)})") from None
                    continue
                except UpstreamProtocolError as e:
                    if not e.before_answer or not await self._may_retry(attempt, deadline, tried, key):
                        raise
                    continue
                if (response.status == 503 and self.retries.on_503
                        and await self._may_retry(attempt, deadline, tried, key)):
                    continue
                return response, endpoint
        finally:
            self.admission.leave()

    async def _may_retry(self, attempt: int, deadline: float, tried: list[Endpoint], key: bytes | None) -> bool:
        """Whether to try again elsewhere (after a backoff): attempts left, another endpoint, budget, time."""
        if attempt >= self.retries.attempts or self._choose(tried, key) is None or not self.budget.withdraw():
            return False
        pause = backoff(attempt, self.retries.backoff, self.retries.max_backoff, self.rng)
        if self.clock() + pause >= deadline:
            return False
        self.retried += 1
        if pause > 0:
            await asyncio.sleep(pause)
        return True

    async def _attempt(self, endpoint: Endpoint, line: bytes, headers: bytes, body: bytes,
                       timeout: float) -> UpstreamResponse:
        start = self.clock()
        try:
            response = await endpoint.request(line, headers, body, timeout)
        except (ConnectFailed, GatewayError):
            self.outliers.record(endpoint, False)
            raise
        seconds = self.clock() - start
        self.balancer.observe(endpoint, seconds)
        if self.latencies is not None:
            self.latencies.add(seconds)
        self.outliers.record(endpoint, response.status < 500)
        return response

    async def _hedged(self, first: Endpoint, line: bytes, headers: bytes, body: bytes, timeout: float,
                      tried: list[Endpoint], key: bytes | None) -> tuple[UpstreamResponse, Endpoint]:
        """The first attempt; if it is slower than the pool's usual latency, a second copy elsewhere."""
        assert self.hedging is not None and self.latencies is not None
        delay = max(self.hedging.min_delay, self.latencies.value)
        primary: asyncio.Future[UpstreamResponse] = asyncio.ensure_future(
            self._attempt(first, line, headers, body, timeout))
        done, _ = await asyncio.wait({primary}, timeout=delay)
        if done:
            return primary.result(), first
        second = self._choose(tried, key)
        if second is None or not self.budget.withdraw():
            return await primary, first
        self.hedged += 1
        tried.append(second)
        backup: asyncio.Future[UpstreamResponse] = asyncio.ensure_future(
            self._attempt(second, line, headers, body, timeout - delay))
        owners = {primary: first, backup: second}
        pending: set[asyncio.Future[UpstreamResponse]] = {primary, backup}
        error: BaseException | None = None
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is None:
                        return task.result(), owners[task]
                    error = task.exception()
            assert error is not None
            raise error
        finally:
            for task in pending:
                task.cancel()

    def start(self) -> None:
        """Starts the pool's background helpers (once; a pool carried over by a reload keeps running)."""
        if not self.started:
            self.started = True
            for helper in self.background:
                helper.start()

    async def aclose(self) -> None:
        """Stops the helpers and closes idle connections; requests in flight finish first."""
        for helper in self.background:
            await helper.stop()
        self.close()

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.close()
