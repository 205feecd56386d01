"""The data plane: the stages every inference passes through, in order, for every front end.

    request id (front end) -> route + variant -> fault -> mirror -> forward -> (front end) respond, count

Auth and rate limits slot in before routing, the prediction log after the answer. Front ends
translate wire formats and call these methods; they hold no routing.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

from backends.call import InferCall
from backends.http1 import UpstreamResponse
from gateway import fault, routing
from policies.snapshot import Snapshot
from shadow.mirror import Mirror
from telemetry.metrics import GatewayMetrics


class SnapshotRef:
    """The one reference a reload swaps; a request reads it once and keeps its Snapshot."""

    __slots__ = ("current",)

    def __init__(self, snapshot: Snapshot) -> None:
        self.current = snapshot


class DataPlane:
    def __init__(self, snapshots: SnapshotRef, metrics: GatewayMetrics, mirror: Mirror,
                 random: Callable[[], float] = _random.random) -> None:
        self.snapshots = snapshots
        self.metrics = metrics
        self.mirror = mirror
        self.random = random

    async def infer(self, call: InferCall) -> UpstreamResponse:
        route, variant = routing.choose(self.snapshots.current, call, self.random)
        call.route = route.name
        call.variant = variant.name
        call.backend = variant.backend
        if route.delay is not None or route.abort is not None:
            await fault.inject(route, self.random, self.metrics)
        primary = variant.upstream.infer(call)
        for m in route.mirrors:
            if m.rate >= 1.0 or self.random() < m.rate:
                # Queued now, sent only once this task yields: after the primary is on the wire.
                self.mirror.offer(call, m.variant.name, m.variant.upstream)
        return await primary

    async def model_metadata(self, model: str, version: str | None, request_id: bytes) -> UpstreamResponse:
        route = self.snapshots.current.any_route(model)
        return await route.split.arms[0].upstream.get(version, "", request_id)

    async def model_ready(self, model: str, version: str | None, request_id: bytes) -> UpstreamResponse:
        route = self.snapshots.current.any_route(model)
        return await route.split.arms[0].upstream.get(version, "/ready", request_id)

    def ready(self) -> bool:
        """The gateway can route: a policy is loaded and it routes at least one model."""
        return bool(self.snapshots.current.routes)

    def models(self) -> list[str]:
        return sorted(self.snapshots.current.routes)
