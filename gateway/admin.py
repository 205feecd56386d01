"""The admin API (aiohttp), on its own port and credential.

Open: ``/metrics`` (Prometheus scrapes it) and ``/ready``. Behind the admin bearer token:
``/status`` and everything under ``/admin/`` (policy apply, dry run, history, diff, rollback).
Nothing here is reachable from the data port.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from policies.loader import PolicyError

if TYPE_CHECKING:
    from gateway.app import Gateway

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def admin_app(gateway: Gateway) -> web.Application:
    @web.middleware
    async def credential(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in ("/metrics", "/ready"):
            return await handler(request)
        expected = gateway.admin_token_sha256
        if expected is None:
            if request.method == "GET":
                return await handler(request)  # read-only views stay open when no credential is set
            return _error(403, "no admin credential is configured (admin.token_sha256); changes are refused")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        given = hashlib.sha256(token.strip().encode()).hexdigest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
            return _error(401, "admin credential missing or wrong (Authorization: Bearer TOKEN)")
        return await handler(request)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(gateway.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ready(_: web.Request) -> web.Response:
        ok = gateway.dataplane.ready()
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def status(_: web.Request) -> web.Response:
        return web.json_response(gateway.status())

    async def policy_get(_: web.Request) -> web.Response:
        return web.json_response({"version": gateway.policies.version.summary(), "text": gateway.policies.text})

    async def policy_apply(request: web.Request) -> web.Response:
        text = await request.text()
        dry_run = request.query.get("dry_run", "").lower() in ("1", "true", "yes")
        who = request.headers.get("X-Meshgate-Who", "admin api")[:100]
        try:
            applied = await gateway.policies.apply(text, source="admin", who=who,
                                                   filename=request.query.get("filename", "<admin>"), dry_run=dry_run)
        except PolicyError as e:
            return _error(400, "policy rejected; the current version keeps serving",
                          problems=[str(p) for p in e.problems])
        return web.json_response({"applied": applied.changed, "dry_run": dry_run,
                                  "version": applied.version.summary(), "diff": applied.diff})

    async def history(_: web.Request) -> web.Response:
        current = gateway.policies.version.number
        return web.json_response({"current": current,
                                  "versions": [v.summary() for v in gateway.policies.history.versions()]})

    async def version_text(request: web.Request) -> web.Response:
        try:
            text = gateway.policies.history.text(int(request.match_info["n"]))
        except (KeyError, ValueError) as e:
            return _error(404, str(e).strip("'\""))
        return web.Response(text=text, content_type="application/yaml")

    async def diff(request: web.Request) -> web.Response:
        try:
            a, b = int(request.query["from"]), int(request.query["to"])
            return web.json_response({"from": a, "to": b, "diff": gateway.policies.diff(a, b)})
        except (KeyError, ValueError) as e:
            return _error(400 if isinstance(e, ValueError) else 404, str(e).strip("'\""))

    async def rollback(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        number = body.get("version") if isinstance(body, dict) else None
        try:
            applied = await gateway.policies.rollback(int(number) if number is not None else None,
                                                      who=request.headers.get("X-Meshgate-Who", "admin api")[:100])
        except KeyError as e:
            return _error(404, str(e).strip("'\""))
        return web.json_response({"applied": applied.changed, "version": applied.version.summary(),
                                  "diff": applied.diff})

    app = web.Application(middlewares=[credential], client_max_size=16 * 2**20)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/ready", ready)
    app.router.add_get("/status", status)
    app.router.add_get("/admin/policy", policy_get)
    app.router.add_post("/admin/policy", policy_apply)
    app.router.add_get("/admin/policy/history", history)
    app.router.add_get("/admin/policy/versions/{n}", version_text)
    app.router.add_get("/admin/policy/diff", diff)
    app.router.add_post("/admin/policy/rollback", rollback)
    return app
