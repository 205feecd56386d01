"""Passive outlier ejection: endpoints failing live traffic leave the rotation for a growing time.

Consecutive errors or a failure share over a sliding window eject an endpoint; the time out
doubles with each repeat (capped), and never more than a set share of the pool is ejected at
once, so a bad deploy cannot empty it. Not an active health check (see backends.health).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

from backends.http1 import Endpoint

log = logging.getLogger("meshgate.outlier")


class _Record:
    """Results in one-second buckets [second, total, failures]: O(1) per request, no per-call objects
    beyond a new bucket once a second."""

    __slots__ = ("consecutive", "buckets", "total", "failures", "last_ejected")

    def __init__(self) -> None:
        self.consecutive = 0
        self.buckets: deque[list[int]] = deque()
        self.total = 0
        self.failures = 0
        self.last_ejected = 0.0

    def clear(self) -> None:
        self.consecutive = 0
        self.buckets.clear()
        self.total = 0
        self.failures = 0


class OutlierDetector:
    def __init__(self, endpoints: Sequence[Endpoint], *, consecutive_errors: int = 5, failure_rate: float = 50.0,
                 min_requests: int = 20, window: float = 10.0, base_ejection: float = 2.0,
                 max_ejection: float = 60.0, max_ejected: float = 50.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoints = endpoints
        self.consecutive_errors = consecutive_errors
        self.failure_rate = failure_rate / 100.0
        self.min_requests = min_requests
        self.window = window
        self.base_ejection = base_ejection
        self.max_ejection = max_ejection
        self.max_ejected = max_ejected / 100.0
        self.clock = clock
        self._records = {id(e): _Record() for e in endpoints}
        self.cap_reached = 0

    def available(self, endpoint: Endpoint, now: float) -> bool:
        return endpoint.ejected_until <= now

    def record(self, endpoint: Endpoint, ok: bool) -> None:
        rec = self._records.get(id(endpoint))
        if rec is None:
            return
        now = self.clock()
        second = int(now)
        buckets = rec.buckets
        if buckets and buckets[-1][0] == second:
            bucket = buckets[-1]
        else:
            bucket = [second, 0, 0]
            buckets.append(bucket)
            horizon = second - self.window
            while buckets[0][0] <= horizon:
                _, total, failures = buckets.popleft()
                rec.total -= total
                rec.failures -= failures
        bucket[1] += 1
        rec.total += 1
        if ok:
            rec.consecutive = 0
            return
        bucket[2] += 1
        rec.failures += 1
        rec.consecutive += 1
        if endpoint.ejected_until > now:
            return  # already out; results of requests sent before the ejection change nothing
        if rec.consecutive >= self.consecutive_errors:
            self._eject(endpoint, rec, now, f"{rec.consecutive} errors in a row")
        elif rec.total >= self.min_requests and rec.failures >= self.failure_rate * rec.total:
            self._eject(endpoint, rec, now, f"{rec.failures} of {rec.total} requests failed "
                                            f"in {self.window:g}s")

    def _eject(self, endpoint: Endpoint, rec: _Record, now: float, why: str) -> None:
        ejected = sum(1 for e in self.endpoints if e.ejected_until > now)
        if ejected + 1 > self.max_ejected * len(self.endpoints):
            self.cap_reached += 1
            return
        if rec.last_ejected and now - rec.last_ejected > self.max_ejection + self.window:
            endpoint.ejections = 0  # it behaved for a long while: start again from the base time
        seconds = min(self.base_ejection * 2 ** endpoint.ejections, self.max_ejection)
        endpoint.ejected_until = now + seconds
        endpoint.ejections += 1
        rec.last_ejected = now
        rec.clear()
        log.warning("endpoint %s ejected for %gs: %s", endpoint.address, seconds, why)
