"""The dynamic batcher: batches form up to the size bound, the delay bound holds, results go home."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from backends.reference.batcher import DynamicBatcher


def _double(batches: list[int], gate: threading.Event | None = None):
    def run(x: np.ndarray) -> tuple[np.ndarray]:
        if gate is not None:
            gate.wait(5)
        batches.append(len(x))
        return (x * 2,)
    return run


async def test_concurrent_requests_share_a_batch_and_get_their_own_rows() -> None:
    batches: list[int] = []
    b = DynamicBatcher(_double(batches), max_batch_size=64, max_queue_delay=0.5)
    b.start()
    try:
        inputs = [np.full((n, 2), n, dtype=np.float32) for n in (1, 2, 3, 4)]
        results = await asyncio.gather(*(b.submit(x) for x in inputs))
    finally:
        await b.stop()
    assert batches == [10]
    for x, (y,) in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(y, x * 2)


async def test_full_batch_runs_without_waiting_for_the_delay() -> None:
    batches: list[int] = []
    b = DynamicBatcher(_double(batches), max_batch_size=4, max_queue_delay=30.0)
    b.start()
    try:
        results = await asyncio.wait_for(asyncio.gather(*(b.submit(np.ones((1, 1))) for _ in range(4))), 5)
    finally:
        await b.stop()
    assert batches == [4] and len(results) == 4


async def test_lone_request_runs_once_the_delay_is_up() -> None:
    now = [0.0]
    batches: list[int] = []
    b = DynamicBatcher(_double(batches), max_batch_size=8, max_queue_delay=0.05, clock=lambda: now[0])
    b.start()
    try:
        task = asyncio.ensure_future(b.submit(np.ones((1, 1))))
        await asyncio.sleep(0)  # let the batcher see the request and start waiting
        assert not task.done()
        now[0] = 1.0  # the injected clock moves past the delay
        (y,) = await asyncio.wait_for(task, 5)
    finally:
        await b.stop()
    assert batches == [1] and y[0, 0] == 2


async def test_oversize_request_runs_alone_and_batches_split_at_the_bound() -> None:
    gate = threading.Event()
    batches: list[int] = []
    b = DynamicBatcher(_double(batches, gate), max_batch_size=4, max_queue_delay=0.0)
    b.start()
    try:
        first = asyncio.ensure_future(b.submit(np.ones((10, 1))))  # over the bound: served alone
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(b.submit(np.ones((3, 1)))) for _ in range(2)]
        await asyncio.sleep(0)
        assert b.queue_depth >= 2
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    finally:
        await b.stop()
    assert batches[0] == 10
    assert all(n <= 4 for n in batches[1:]) and sum(batches[1:]) == 6
