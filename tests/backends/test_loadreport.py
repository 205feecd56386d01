"""Reading servers' own load from their Prometheus /metrics."""

from __future__ import annotations

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from backends.http1 import Endpoint
from backends.loadreport import LoadScraper, load_from_metrics
from tests.fixtures.reference import free_port

VLLM = """# HELP vllm:num_requests_waiting Number of requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 3.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.5
"""


def test_reference_queue_depth_is_the_load() -> None:
    registry = CollectorRegistry()
    Gauge("meshgate_reference_queue_depth", "waiting", registry=registry).set(7)
    assert load_from_metrics(generate_latest(registry).decode()) == 7.0


def test_vllm_waiting_plus_weighted_kv_cache() -> None:
    assert load_from_metrics(VLLM) == 3.0 + 10 * 0.5


def test_unknown_or_garbage_metrics_give_no_load() -> None:
    assert load_from_metrics("# TYPE other gauge\nother 1\n") is None
    assert load_from_metrics("this is { not prometheus") is None


@pytest.fixture
async def metrics_server():
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=VLLM)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"127.0.0.1:{port}"
    await runner.cleanup()


async def test_scrape_sets_load_and_time(metrics_server: str) -> None:
    e = Endpoint(metrics_server)
    scraper = LoadScraper([e], clock=lambda: 42.0)
    try:
        assert await scraper.scrape_once(e)
        assert (e.load, e.load_at) == (8.0, 42.0)
        down = Endpoint(f"127.0.0.1:{free_port()}")
        assert not await scraper.scrape_once(down) and down.load is None
    finally:
        await scraper.stop()
