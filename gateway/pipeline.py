"""The data plane: the stages every inference passes through, in order, for every front end.

    request id (front end) -> route -> forward -> (front end) respond and count

Auth, rate limits, variant choice, mirroring and logging slot in here as stages of their
own. Front ends translate wire formats and call these methods; they hold no routing.
"""

from __future__ import annotations

from backends.call import InferCall
from backends.http1 import UpstreamResponse
from policies.snapshot import Snapshot


class SnapshotRef:
    """The one reference a reload swaps; a request reads it once and keeps its Snapshot."""

    __slots__ = ("current",)

    def __init__(self, snapshot: Snapshot) -> None:
        self.current = snapshot


class DataPlane:
    def __init__(self, snapshots: SnapshotRef) -> None:
        self.snapshots = snapshots

    async def infer(self, call: InferCall) -> UpstreamResponse:
        route = self.snapshots.current.route(call.model)
        call.route = route.name
        call.variant = route.variant
        call.backend = route.backend
        return await route.upstream.infer(call)

    async def model_metadata(self, model: str, version: str | None, request_id: bytes) -> UpstreamResponse:
        route = self.snapshots.current.route(model)
        return await route.upstream.get(version, "", request_id)

    async def model_ready(self, model: str, version: str | None, request_id: bytes) -> UpstreamResponse:
        route = self.snapshots.current.route(model)
        return await route.upstream.get(version, "/ready", request_id)

    def ready(self) -> bool:
        """The gateway can route: a policy is loaded and it routes at least one model."""
        return bool(self.snapshots.current.routes)

    def models(self) -> list[str]:
        return sorted(self.snapshots.current.routes)
