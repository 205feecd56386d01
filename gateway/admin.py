"""The admin API (aiohttp), on its own port: Prometheus ``/metrics``, ``/status``, ``/ready``.

Nothing here is reachable from the data port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from gateway.app import Gateway


def admin_app(gateway: Gateway) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(gateway.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(_: web.Request) -> web.Response:
        return web.json_response(gateway.status())

    async def ready(_: web.Request) -> web.Response:
        ok = gateway.dataplane.ready()
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    app.router.add_get("/ready", ready)
    return app
