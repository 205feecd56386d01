"""The servers' own load, read from their Prometheus /metrics for the load-aware balancer.

The figure: the reference server's ``meshgate_reference_queue_depth``; or vLLM's
``vllm:num_requests_waiting`` + 10 x ``vllm:gpu_cache_usage_perc`` (a full KV cache counts
like ten waiting requests). Not a metrics collector: it keeps one number per endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from backends.http1 import Endpoint

log = logging.getLogger("meshgate.loadreport")
_KV_CACHE_WEIGHT = 10.0


def load_from_metrics(text: str) -> float | None:
    """The load figure from a Prometheus exposition, or None when it has none of the known gauges."""
    sums: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in ("meshgate_reference_queue_depth", "vllm:num_requests_waiting",
                                   "vllm:gpu_cache_usage_perc"):
                    sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    except (ValueError, TypeError):
        return None
    if "meshgate_reference_queue_depth" in sums:
        return sums["meshgate_reference_queue_depth"]
    if "vllm:num_requests_waiting" in sums or "vllm:gpu_cache_usage_perc" in sums:
        return sums.get("vllm:num_requests_waiting", 0.0) + _KV_CACHE_WEIGHT * sums.get(
            "vllm:gpu_cache_usage_perc", 0.0)
    return None


class LoadScraper:
    def __init__(self, endpoints: Sequence[Endpoint], *, metrics_path: str = "/metrics", interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoints = endpoints
        self.metrics_path = metrics_path
        self.interval = interval
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def scrape_once(self, endpoint: Endpoint) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=max(self.interval, 0.05)))
        try:
            async with self._session.get(f"http://{endpoint.address}{self.metrics_path}") as response:
                if response.status != 200:
                    return False
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
        load = load_from_metrics(text)
        if load is None:
            return False
        endpoint.load = load
        endpoint.load_at = self.clock()
        return True

    async def _loop(self) -> None:
        while True:
            await asyncio.gather(*(self.scrape_once(e) for e in self.endpoints))
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="load-scraper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
