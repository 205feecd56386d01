"""Dynamic batching as Triton's dynamic batcher does it: requests wait up to ``max_queue_delay``
for others to join, and a batch runs once it holds ``max_batch_size`` rows or the delay is up.

The model runs in a worker thread so the event loop keeps accepting requests meanwhile; one
batch runs at a time (one model instance). Not model code: ``run`` is any rows -> outputs callable.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
Outputs = tuple[Array, ...]


@dataclass
class _Pending:
    rows: Array
    queued_at: float
    future: asyncio.Future[Outputs]


class BatcherStopped(RuntimeError):
    """The batcher stopped before it could answer (server shutting down)."""


class DynamicBatcher:
    """``await submit(rows)`` -> this request's rows of each of ``run``'s outputs.

    ``on_batch(rows)`` is told the size of each batch as it starts; ``clock`` is injectable so
    the delay bound can be tested exactly.
    """

    def __init__(self, run: Callable[[Array], Sequence[Array]], *, max_batch_size: int = 32,
                 max_queue_delay: float = 0.002, on_batch: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, not {max_batch_size}")
        if max_queue_delay < 0:
            raise ValueError(f"max_queue_delay must not be negative, not {max_queue_delay}")
        self.run = run
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay
        self.on_batch = on_batch
        self.clock = clock
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        """Requests waiting to join a batch (not counting the batch now running)."""
        return len(self._queue)

    async def submit(self, rows: Array) -> Outputs:
        """Rows [n, ...] in, each model output's rows for this request out."""
        return await self.enqueue(rows)

    def enqueue(self, rows: Array) -> asyncio.Future[Outputs]:
        """Queues the rows now (synchronously) and returns the future of their outputs; cancel it to give up."""
        if self._task is None:
            raise BatcherStopped("the batcher is not running")
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(rows, self.clock(), future))
        self._queued_rows += len(rows)
        self._wake.set()
        return future

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="dynamic-batcher")

    async def stop(self) -> None:
        """Stops the worker; every request not yet answered gets ``BatcherStopped``."""
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        while self._queue:
            _fail(self._queue.popleft().future, BatcherStopped("server stopping"))
        self._queued_rows = 0

    def _take(self) -> _Pending:
        item = self._queue.popleft()
        self._queued_rows -= len(item.rows)
        return item

    async def _wait_to_fill(self) -> None:
        deadline = self._queue[0].queued_at + self.max_queue_delay
        while self._queued_rows < self.max_batch_size:
            remaining = deadline - self.clock()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    async def _loop(self) -> None:
        while True:
            # Callers that gave up (cancelled) are dropped instead of computed for nobody.
            while self._queue and self._queue[0].future.done():
                self._take()
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._wait_to_fill()
            batch = [self._take()]  # the oldest always goes, even when it alone is over the bound
            rows = len(batch[0].rows)
            while self._queue and rows + len(self._queue[0].rows) <= self.max_batch_size:
                item = self._take()
                if not item.future.done():
                    rows += len(item.rows)
                    batch.append(item)
            await self._run(batch, rows)

    async def _run(self, batch: list[_Pending], rows: int) -> None:
        if self.on_batch is not None:
            self.on_batch(rows)
        try:
            inputs = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
            outputs = await asyncio.to_thread(self.run, inputs)
        except asyncio.CancelledError:
            for p in batch:  # stopped mid-batch: its requests must not wait forever
                _fail(p.future, BatcherStopped("server stopping"))
            raise
        except Exception as e:  # the model failed: every request in the batch gets the error
            for p in batch:
                _fail(p.future, e)
            return
        start = 0
        for p in batch:
            n = len(p.rows)
            if not p.future.done():
                p.future.set_result(tuple(o[start:start + n] for o in outputs))
            start += n


def _fail(future: asyncio.Future[Outputs], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
