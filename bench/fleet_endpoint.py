"""One endpoint of the uneven fleet bench/tail.py drives: a KServe V2 server with a chosen latency.

    python bench/fleet_endpoint.py PORT --base-ms 2 [--spike-ms 50 --spike-share 0.3] [--slow-factor 5]

``POST /v2/models/{m}/infer`` answers a fixed small V2 JSON response after ``base_ms`` (times
``slow_factor``), plus ``spike_ms`` more for a random ``spike_share`` of requests.
``GET /v2/health/ready`` answers 200. ``GET /metrics`` publishes the gauge
``meshgate_reference_queue_depth``: requests in flight in this process right now, so a
load-aware balancer reads a real queue (and the counter ``meshgate_fleet_requests_total``:
inference requests answered, so bench/tail.py can tell how the balancer spread the load).
Stops cleanly on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import random

import uvloop
from aiohttp import web

METRICS_HEAD = ("# HELP meshgate_reference_queue_depth Requests in flight in this endpoint\n"
                "# TYPE meshgate_reference_queue_depth gauge\n"
                "meshgate_reference_queue_depth ")
METRICS_REQUESTS = ("# HELP meshgate_fleet_requests_total Inference requests answered\n"
                    "# TYPE meshgate_fleet_requests_total counter\n"
                    "meshgate_fleet_requests_total ")


def make_app(base: float, spike: float, spike_share: float) -> web.Application:
    inflight = 0
    answered = 0
    rng = random.Random()

    async def infer(request: web.Request) -> web.Response:
        nonlocal inflight, answered
        inflight += 1
        try:
            await request.read()
            delay = base + (spike if spike_share > 0 and rng.random() < spike_share else 0.0)
            await asyncio.sleep(delay)
            answered += 1
            model = request.match_info["model"]
            body = ('{"model_name":"' + model + '","model_version":"1","outputs":[{"name":"probabilities",'
                    '"datatype":"FP32","shape":[1,4],"data":[0.1,0.2,0.3,0.4]}]}')
            return web.Response(body=body.encode(), content_type="application/json")
        finally:
            inflight -= 1

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=f"{METRICS_HEAD}{inflight}\n{METRICS_REQUESTS}{answered}\n", content_type="text/plain")

    app = web.Application()
    app.router.add_post("/v2/models/{model}/infer", infer)
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_get("/metrics", metrics)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int)
    parser.add_argument("--base-ms", type=float, default=2.0, help="service time of every request")
    parser.add_argument("--spike-ms", type=float, default=0.0, help="extra time for the spiking share")
    parser.add_argument("--spike-share", type=float, default=0.0, help="share of requests that spike (0..1)")
    parser.add_argument("--slow-factor", type=float, default=1.0, help="multiplies --base-ms")
    args = parser.parse_args()
    if not 0.0 <= args.spike_share <= 1.0:
        parser.error("--spike-share must be within 0..1")
    uvloop.install()
    app = make_app(args.base_ms * args.slow_factor / 1e3, args.spike_ms / 1e3, args.spike_share)
    # run_app turns SIGTERM and SIGINT into a graceful shutdown and returns.
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, shutdown_timeout=1.0)


if __name__ == "__main__":
    main()
