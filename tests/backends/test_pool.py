"""Pools against real loopback servers: latency-aware choice, safe retries, budgets, limits, hedging, drain."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from backends.admission import Admission
from backends.balancer import PeakEwma
from backends.errors import NoHealthyEndpoint, Overloaded, UpstreamProtocolError
from backends.http1 import Endpoint
from backends.pool import HedgePolicy, Pool, RetryPolicy
from backends.retry import RetryBudget
from tests.fixtures.upstreams import Upstream

LINE = b"POST /v2/models/m/infer HTTP/1.1\r\n"
HEADERS = b"content-length: 2\r\n\r\n"


@pytest.fixture
async def fleet():
    servers = [await Upstream(name=f"s{i}").start() for i in range(4)]
    yield servers
    for s in servers:
        await s.stop()


def _pool(servers: list[Upstream], **kw) -> Pool:
    kw.setdefault("retries", RetryPolicy(attempts=3, backoff=0.0))
    return Pool("p", [Endpoint(s.address) for s in servers], timeout=5.0, **kw)


async def _send_all(pool: Pool, n: int, concurrency: int = 8) -> list[str]:
    """Sends ``n`` requests, ``concurrency`` at a time; the addresses that answered, in order."""
    answered: list[str] = []
    queue = list(range(n))

    async def worker() -> None:
        while queue:
            queue.pop()
            response, endpoint = await pool.send(LINE, HEADERS, b"{}")
            assert response.status == 200
            answered.append(endpoint.address)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answered


async def test_p2c_ewma_gives_a_slow_endpoint_a_shrinking_share(fleet: list[Upstream]) -> None:
    fleet[0].delay = 0.030  # 30 ms against ~1 ms for the others
    pool = _pool(fleet, balancer=PeakEwma(decay=5.0, rng=random.Random(7)))
    answered = await _send_all(pool, 400)
    share = Counter(answered)[fleet[0].address] / len(answered)
    assert share < 0.05  # round-robin would give it 25%
    pool.close()


async def test_killed_endpoint_costs_no_client_error(fleet: list[Upstream]) -> None:
    pool = _pool(fleet)
    await _send_all(pool, 40)
    await fleet[1].stop()  # as kill -9: its connections drop and its port refuses
    answered = await _send_all(pool, 200)
    assert len(answered) == 200 and fleet[1].address not in answered
    pool.close()


async def test_reset_before_any_answer_byte_is_retried_elsewhere(fleet: list[Upstream]) -> None:
    fleet[0].mode = "close"
    pool = _pool(fleet, budget=RetryBudget(ratio=1.0, min_per_second=0))
    answered = await _send_all(pool, 100)
    assert len(answered) == 100 and fleet[0].address not in answered
    assert pool.retried > 0
    pool.close()


async def test_503_is_retried_until_the_budget_is_spent(fleet: list[Upstream]) -> None:
    for s in fleet:
        s.mode = "busy503"
    budget = RetryBudget(ratio=0.2, min_per_second=0, cap=2)
    pool = _pool(fleet, budget=budget)
    statuses = []
    for _ in range(20):
        response, _ = await pool.send(LINE, HEADERS, b"{}")
        statuses.append(response.status)
    assert statuses == [503] * 20
    sent = sum(len(s.requests) for s in fleet)
    # 20 requests deposit 0.2 each (4 retries) on top of the starting balance (capped at 2):
    # retries stay within the budget instead of tripling the load.
    assert 20 < sent <= 20 + 2 + 4
    assert budget.refused > 0
    pool.close()


async def test_protocol_garbage_after_bytes_is_not_retried(fleet: list[Upstream]) -> None:
    fleet[0].mode = "garbage"
    pool = _pool([fleet[0], fleet[1]], balancer=None)  # round-robin: the first try goes to the liar
    with pytest.raises(UpstreamProtocolError):
        await pool.send(LINE, HEADERS, b"{}")
    assert len(fleet[1].requests) == 0
    pool.close()


async def test_in_flight_limit_refuses_fast_with_retry_after_and_queues_within_bound(fleet: list[Upstream]) -> None:
    fleet[0].delay = 0.2
    pool = _pool([fleet[0]], admission=Admission("p", max_inflight=1, max_queue=1, queue_timeout=2.0))
    first = asyncio.ensure_future(pool.send(LINE, HEADERS, b"{}"))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(pool.send(LINE, HEADERS, b"{}"))  # waits in the queue
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as refused:
        await pool.send(LINE, HEADERS, b"{}")  # the queue is full: refused at once
    assert refused.value.retry_after >= 1
    assert (await first)[0].status == 200 and (await second)[0].status == 200
    pool.close()


async def test_hedging_takes_the_faster_copy(fleet: list[Upstream]) -> None:
    fleet[0].delay = 2.0
    pool = _pool([fleet[0], fleet[1]], balancer=None, hedging=HedgePolicy(percentile=95, min_delay=0.02),
                 budget=RetryBudget(ratio=1.0))
    loop = asyncio.get_running_loop()
    start = loop.time()
    response, endpoint = await pool.send(LINE, HEADERS, b"{}")  # round-robin sends it to the slow one first
    assert response.status == 200 and endpoint.address == fleet[1].address
    assert loop.time() - start < 1.0 and pool.hedged == 1
    pool.close()


async def test_closing_a_pool_lets_in_flight_requests_finish(fleet: list[Upstream]) -> None:
    fleet[0].delay = 0.1
    pool = _pool([fleet[0]])
    pending = asyncio.ensure_future(pool.send(LINE, HEADERS, b"{}"))
    await asyncio.sleep(0.01)  # let it reach the server before the pool is dropped
    pool.close()
    response, _ = await pending
    assert response.status == 200


async def test_all_endpoints_down_is_no_healthy_endpoint(fleet: list[Upstream]) -> None:
    for s in fleet[:2]:
        await s.stop()
    pool = _pool(fleet[:2])
    with pytest.raises(NoHealthyEndpoint):
        await pool.send(LINE, HEADERS, b"{}")


async def test_failing_endpoint_is_ejected_and_the_cap_keeps_half_the_pool(fleet: list[Upstream]) -> None:
    from backends.outlier import OutlierDetector

    fleet[0].mode = "error500"
    endpoints = [Endpoint(s.address) for s in fleet]
    pool = Pool("p", endpoints, timeout=5.0, retries=RetryPolicy(attempts=1),
                outliers=OutlierDetector(endpoints, consecutive_errors=3, base_ejection=60, max_ejected=50))
    statuses = Counter()
    for _ in range(200):
        response, _ = await pool.send(LINE, HEADERS, b"{}")
        statuses[response.status] += 1
    assert statuses[500] == 3  # three errors in a row, then it is out of rotation
    assert endpoints[0].ejected_until > 0 and len(fleet[0].requests) == 3
    for s in fleet[1:]:
        s.mode = "error500"  # now everyone fails: the cap keeps at least half the pool in rotation
    for _ in range(60):
        await pool.send(LINE, HEADERS, b"{}")
    assert sum(e.ejected_until > pool.clock() for e in endpoints) == 2
    pool.close()
