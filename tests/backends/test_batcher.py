"""The dynamic batcher: batches form up to the size bound, the delay bound holds, results go home.

Requests are queued with the synchronous ``enqueue`` and the model signals when it starts, so
every test knows exactly what is queued: no sleeps as synchronisation.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from backends.reference.batcher import BatcherStopped, DynamicBatcher


class Model:
    """Doubles and sums rows, records batch sizes; optionally blocks on a gate and says when it started."""

    def __init__(self, gated: bool = False, fail: bool = False) -> None:
        self.batches: list[int] = []
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.fail = fail
        self.started = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._loop.call_soon_threadsafe(self.started.set)
        self.gate.wait(10)
        self.batches.append(len(x))
        if self.fail:
            raise RuntimeError("model broke")
        return x * 2, x.sum(axis=1)

    async def wait_started(self) -> None:
        await asyncio.wait_for(self.started.wait(), 5)
        self.started.clear()


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., DynamicBatcher]]:
    made: list[DynamicBatcher] = []

    def build(model: Model, **kwargs: float) -> DynamicBatcher:
        b = DynamicBatcher(model, **kwargs)  # type: ignore[arg-type]
        b.start()
        made.append(b)
        return b

    yield build
    for b in made:
        await b.stop()


def rows(n: int, value: float) -> np.ndarray:
    return np.full((n, 3), value, dtype=np.float32)


async def test_queued_requests_share_one_batch_and_get_their_own_rows(make: Callable[..., DynamicBatcher]) -> None:
    model = Model()
    b = make(model, max_batch_size=64, max_queue_delay=0.0)
    inputs = [rows(n, n) for n in (1, 2, 3, 4)]
    futures = [b.enqueue(x) for x in inputs]  # all queued before the batcher runs
    assert b.queue_depth == 4
    results = await asyncio.wait_for(asyncio.gather(*futures), 5)
    assert model.batches == [10]
    for x, (doubled, summed) in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(doubled, x * 2)
        np.testing.assert_array_equal(summed, x.sum(axis=1))
    assert b.queue_depth == 0


async def test_full_batch_runs_without_waiting_for_the_delay(make: Callable[..., DynamicBatcher]) -> None:
    model = Model()
    b = make(model, max_batch_size=4, max_queue_delay=30.0)
    results = await asyncio.wait_for(asyncio.gather(*(b.submit(rows(1, i)) for i in range(4))), 5)
    assert model.batches == [4] and len(results) == 4


async def test_lone_request_waits_for_the_delay_then_runs(make: Callable[..., DynamicBatcher]) -> None:
    model = Model()
    delay = 0.05
    b = make(model, max_batch_size=8, max_queue_delay=delay)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(b.submit(rows(1, 1)), 5)
    waited = loop.time() - started
    assert model.batches == [1]
    assert delay <= waited < delay + 2.0  # waited for company, then not much longer


async def test_delay_is_measured_on_the_injected_clock(make: Callable[..., DynamicBatcher]) -> None:
    model = Model()
    times = iter([0.0])  # the request is queued at t=0; every later reading is t=100
    b = make(model, max_batch_size=8, max_queue_delay=30.0, clock=lambda: next(times, 100.0))
    await asyncio.wait_for(b.submit(rows(1, 1)), 5)  # 30 s of queue delay already passed on that clock
    assert model.batches == [1]


async def test_oversize_request_runs_alone_and_later_batches_keep_order_within_the_bound(
        make: Callable[..., DynamicBatcher]) -> None:
    model = Model(gated=True)
    b = make(model, max_batch_size=4, max_queue_delay=0.0)
    big = b.enqueue(rows(10, 10))
    await model.wait_started()  # the oversize request is running, alone
    rest = [b.enqueue(rows(3, 3)), b.enqueue(rows(3, 4)), b.enqueue(rows(1, 5))]
    assert b.queue_depth == 3
    model.gate.set()
    results = await asyncio.wait_for(asyncio.gather(big, *rest), 5)
    assert model.batches == [10, 3, 4]  # first come first served: 3 then 3+1
    for (doubled, _), value in zip(results, (10, 3, 4, 5), strict=True):
        assert (doubled == value * 2).all()
    assert [len(d) for d, _ in results] == [10, 3, 3, 1]


async def test_a_model_error_fails_every_request_of_its_batch(make: Callable[..., DynamicBatcher]) -> None:
    b = make(Model(fail=True), max_batch_size=8, max_queue_delay=0.0)
    futures = [b.enqueue(rows(1, 1)), b.enqueue(rows(2, 2))]
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) and "model broke" in str(o) for o in outcomes)


async def test_a_request_given_up_before_its_batch_is_not_computed(make: Callable[..., DynamicBatcher]) -> None:
    model = Model()
    b = make(model, max_batch_size=8, max_queue_delay=0.0)
    gone = b.enqueue(rows(5, 1))
    kept = b.enqueue(rows(2, 2))
    gone.cancel()
    (doubled, _) = await asyncio.wait_for(kept, 5)
    assert model.batches == [2] and (doubled == 4).all()


async def test_stop_fails_running_and_queued_requests() -> None:
    model = Model(gated=True)
    b = DynamicBatcher(model, max_batch_size=1, max_queue_delay=0.0)
    b.start()
    running = b.enqueue(rows(1, 1))
    await model.wait_started()
    queued = b.enqueue(rows(1, 2))
    await b.stop()
    model.gate.set()  # release the worker thread the stopped batch left behind
    for future in (running, queued):
        with pytest.raises(BatcherStopped):
            await future
    with pytest.raises(BatcherStopped):
        await b.submit(rows(1, 3))
