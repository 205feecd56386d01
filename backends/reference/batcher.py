"""Dynamic batching as Triton's dynamic batcher does it: requests wait up to ``max_queue_delay``
for others to join, and a batch runs once it holds ``max_batch_size`` rows or the delay is up.

The model runs in a worker thread so the event loop keeps accepting requests meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

Arrays = tuple[np.ndarray, ...]


class DynamicBatcher:
    def __init__(self, run: Callable[[np.ndarray], Sequence[np.ndarray]], *, max_batch_size: int = 32,
                 max_queue_delay: float = 0.002, on_batch: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.run = run
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay
        self.on_batch = on_batch
        self.clock = clock
        self._queue: deque[tuple[np.ndarray, float, asyncio.Future[Arrays]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    async def submit(self, rows: np.ndarray) -> Arrays:
        """Rows [n, ...] in, each model output's rows for this request out."""
        future: asyncio.Future[Arrays] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, self.clock(), future))
        self._wake.set()
        return await future

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="dynamic-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while self._queue:
            _, _, future = self._queue.popleft()
            if not future.done():
                future.set_exception(RuntimeError("server stopping"))

    def _queued_rows(self) -> int:
        return sum(len(rows) for rows, _, _ in self._queue)

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            deadline = self._queue[0][1] + self.max_queue_delay
            while self._queued_rows() < self.max_batch_size:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
            batch: list[tuple[np.ndarray, float, asyncio.Future[Arrays]]] = [self._queue.popleft()]
            rows = len(batch[0][0])
            while self._queue and rows + len(self._queue[0][0]) <= self.max_batch_size:
                item = self._queue.popleft()
                rows += len(item[0])
                batch.append(item)
            await self._run(batch, rows)

    async def _run(self, batch: list[tuple[np.ndarray, float, asyncio.Future[Arrays]]], rows: int) -> None:
        if self.on_batch is not None:
            self.on_batch(rows)
        try:
            inputs = batch[0][0] if len(batch) == 1 else np.concatenate([b[0] for b in batch])
            outputs = await asyncio.to_thread(self.run, inputs)
        except Exception as e:  # the model failed: every request in the batch gets the error
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        start = 0
        for request_rows, _, future in batch:
            n = len(request_rows)
            if not future.done():
                future.set_result(tuple(o[start:start + n] for o in outputs))
            start += n


