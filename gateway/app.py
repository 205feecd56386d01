"""The Gateway: owner of the listening sockets, the current Snapshot and every background task.

``await Gateway(policy).start()`` / ``await gateway.stop()`` runs a whole gateway in-process
(tests do); the CLI wraps the same calls.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import tempfile
from pathlib import Path

import yaml
from aiohttp import web

from gateway import __version__
from gateway.admin import admin_app
from gateway.http1 import Connections, HttpProtocol
from gateway.pipeline import DataPlane, SnapshotRef
from gateway.reload import PolicyController
from gateway.v2rest import V2Rest, error_response
from policies.history import PolicyHistory
from policies.model import Policy
from policies.snapshot import compile_policy
from shadow.mirror import Mirror
from telemetry.metrics import GatewayMetrics

log = logging.getLogger("meshgate.gateway")


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class Gateway:
    def __init__(self, policy: Policy, *, text: str | None = None, path: str | Path | None = None,
                 state_dir: str | Path | None = None, admin_token_sha256: str | None = None,
                 http: str | None = None, admin: str | None = None, reuse_port: bool = False,
                 watch_interval: float = 1.0) -> None:
        self.http_address = http or policy.listen.http
        self.admin_address = admin or policy.listen.admin
        self.reuse_port = reuse_port
        self.admin_token_sha256 = admin_token_sha256 or policy.admin.token_sha256
        self.metrics = GatewayMetrics(version=__version__)
        if text is None:
            text = yaml.safe_dump(policy.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="meshgate-state-"))
        history = PolicyHistory(self.state_dir / "history")
        source = Path(path) if path else None
        version = PolicyController.starting_version(history, text, source)
        self.snapshots = SnapshotRef(compile_policy(policy, version.number))
        self.policies = PolicyController(self.snapshots, history, self.metrics, text, version, source, watch_interval)
        self.metrics.policy_version.set(version.number)
        self.mirror = Mirror(self.metrics)
        self.dataplane = DataPlane(self.snapshots, self.metrics, self.mirror)
        self.connections = Connections()
        self._server: asyncio.base_events.Server | None = None
        self._admin: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.http_port = 0
        self.admin_port = 0

    @property
    def policy(self) -> Policy:
        return self.snapshots.current.policy

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self.mirror.start()
        self.snapshots.current.start()
        front = V2Rest(self.dataplane, self.metrics)

        def protocol() -> HttpProtocol:
            limits = self.policy.limits  # read per connection: a reload's new limits apply to new connections
            return HttpProtocol(front.handle, error_response, max_body=limits.max_body,
                                max_head=limits.max_header, connections=self.connections)

        host, port = _split(self.http_address)
        self._server = await loop.create_server(protocol, host, port, backlog=2048,
                                                reuse_port=self.reuse_port or None)
        sock = self._server.sockets[0]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.http_port = sock.getsockname()[1]

        self._admin = web.AppRunner(admin_app(self), access_log=None)
        await self._admin.setup()
        host, port = _split(self.admin_address)
        site = web.TCPSite(self._admin, host, port, reuse_port=self.reuse_port or None)
        await site.start()
        self.admin_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.policies.start()
        self._sweeper = asyncio.create_task(self._close_idle(), name="idle-connections")
        # Startup objects (policy, pools, modules) never die: keep the collector from rescanning them.
        gc.collect()
        gc.freeze()
        log.info("serving V2 REST on %s:%d, admin on %s:%d", _split(self.http_address)[0], self.http_port,
                 _split(self.admin_address)[0], self.admin_port)

    async def _close_idle(self) -> None:
        # One sweep for all connections instead of a timer per connection re-armed on every request.
        while True:
            idle = self.policy.limits.idle_timeout
            await asyncio.sleep(min(5.0, idle / 2))
            self.connections.close_idle(idle)

    async def stop(self, drain: float = 10.0) -> None:
        """Stops accepting, lets in-flight requests finish (up to ``drain`` seconds), closes the rest."""
        await self.policies.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections.open):
                conn.shutdown()
            try:
                await asyncio.wait_for(self.connections.drained(), drain)
            except TimeoutError:
                log.warning("closing %d connections still busy after %gs", len(self.connections.open), drain)
            for conn in list(self.connections.open):
                if conn.transport is not None:
                    conn.transport.abort()
            await self._server.wait_closed()
            self._server = None
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        await self.mirror.stop()
        await self.snapshots.current.close()

    def status(self) -> dict[str, object]:
        snap = self.snapshots.current
        return {
            "version": __version__,
            "policy_version": snap.version,
            "routes": [{"name": r.name, "model": r.model, "variants": [v.name for v in r.split.arms],
                        "mirrors": [m.variant.name for m in r.mirrors]}
                       for routes in snap.routes.values() for r in routes],
            "backends": {name: {"endpoints": [{"address": e.address, "weight": e.weight, "inflight": e.inflight,
                                               "idle_connections": len(e.idle)} for e in pool.endpoints]}
                         for name, pool in snap.pools.items()},
            "mirror": {"sent": self.mirror.sent, "dropped": self.mirror.dropped, "queued": self.mirror.queue.qsize()},
        }
