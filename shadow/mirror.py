"""Mirroring: copies of live requests sent to shadow variants, never in the way of the primary.

A bounded queue with its own workers (its own in-flight cap): when shadows are slow or down,
copies are dropped and counted, never queued without bound. Shadow answers go to the
``on_answer`` hook (the prediction log), never to the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from backends.call import InferCall
from backends.errors import GatewayError
from backends.http1 import UpstreamResponse
from backends.v2http import V2HttpUpstream
from telemetry.metrics import GatewayMetrics

log = logging.getLogger("meshgate.mirror")
AnswerHook = Callable[[InferCall, "UpstreamResponse | None", float], None]


class Mirror:
    def __init__(self, metrics: GatewayMetrics, *, queue_size: int = 1024, workers: int = 16,
                 on_answer: AnswerHook | None = None) -> None:
        self.metrics = metrics
        self.queue: asyncio.Queue[tuple[InferCall, V2HttpUpstream]] = asyncio.Queue(queue_size)
        self.workers = workers
        self.on_answer = on_answer
        self._tasks: list[asyncio.Task[None]] = []
        self.sent = 0
        self.dropped = 0

    def offer(self, call: InferCall, name: str, upstream: V2HttpUpstream) -> None:
        """Queues a shadow copy of ``call`` for ``upstream``; drops (and counts) it when full."""
        try:
            self.queue.put_nowait((call.shadow_copy(name), upstream))
        except asyncio.QueueFull:
            self.dropped += 1
            self.metrics.mirrored(call.route, name, "dropped")

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"mirror-{i}") for i in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _work(self) -> None:
        while True:
            call, upstream = await self.queue.get()
            start = time.perf_counter()
            response: UpstreamResponse | None = None
            try:
                response = await upstream.infer(call)
                outcome = "ok" if response.status < 400 else "error"
            except GatewayError as e:
                outcome = "error"
                log.debug("shadow %s for %s failed: %s", call.variant, call.route, e.message)
            except Exception:  # a worker must outlive any one copy
                outcome = "error"
                log.exception("shadow %s for %s failed", call.variant, call.route)
            self.sent += 1
            self.metrics.mirrored(call.route, call.variant, outcome)
            if self.on_answer is not None:
                self.on_answer(call, response, time.perf_counter() - start)
            self.queue.task_done()

    async def join(self) -> None:
        """Waits until every queued copy has been sent and answered (or failed)."""
        await self.queue.join()
