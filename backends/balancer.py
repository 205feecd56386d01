"""Balancers: which endpoint of a pool takes the next request.

Each is one ``pick(endpoints, ok, key)``: ``ok`` says whether an endpoint may take a request
now (healthy, not ejected, under its in-flight limit, not already tried); ``key`` is the
request's hash key for ring-hash. Costs are read from the endpoints' own state
(``inflight``, ``ewma``, ``load``), which the pool updates after every attempt.
"""

from __future__ import annotations

import math
import random
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from hashlib import blake2b
from typing import Protocol

from backends.http1 import Endpoint

Eligible = Callable[[Endpoint], bool]
Clock = Callable[[], float]


class Balancer(Protocol):
    def pick(self, endpoints: Sequence[Endpoint], ok: Eligible, key: bytes | None = None) -> Endpoint | None:
        """An endpoint for which ``ok`` holds, or None when there is none."""

    def observe(self, endpoint: Endpoint, seconds: float) -> None:
        """A finished attempt's latency (for latency-aware balancers)."""


class RoundRobin:
    """Weighted round-robin: an endpoint of weight w appears w times in the cycle (interleaved)."""

    def __init__(self) -> None:
        self._cycle: list[Endpoint] = []
        self._next = 0
        self._for: Sequence[Endpoint] | None = None

    def _build(self, endpoints: Sequence[Endpoint]) -> None:
        cycle: list[Endpoint] = []
        remaining = {id(e): e.weight for e in endpoints}
        while any(remaining.values()):
            for e in endpoints:
                if remaining[id(e)]:
                    cycle.append(e)
                    remaining[id(e)] -= 1
        self._cycle = cycle
        self._for = endpoints

    def pick(self, endpoints: Sequence[Endpoint], ok: Eligible, key: bytes | None = None) -> Endpoint | None:
        if endpoints is not self._for:
            self._build(endpoints)
        cycle = self._cycle
        n = len(cycle)
        for _ in range(n):
            endpoint = cycle[self._next % n]
            self._next += 1
            if ok(endpoint):
                return endpoint
        return None

    def observe(self, endpoint: Endpoint, seconds: float) -> None:
        pass


class _PowerOfTwo:
    """Two random candidates, the cheaper one wins; a full scan only when a candidate may not be used."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def cost(self, endpoint: Endpoint) -> float:
        raise NotImplementedError

    def pick(self, endpoints: Sequence[Endpoint], ok: Eligible, key: bytes | None = None) -> Endpoint | None:
        n = len(endpoints)
        if n == 1:
            return endpoints[0] if ok(endpoints[0]) else None
        if n == 0:
            return None
        i = self.rng.randrange(n)
        j = self.rng.randrange(n - 1)
        if j >= i:
            j += 1
        a, b = endpoints[i], endpoints[j]
        if ok(a) and ok(b):
            return a if self.cost(a) <= self.cost(b) else b
        usable = [e for e in endpoints if ok(e)]
        if not usable:
            return None
        if len(usable) > 2:
            usable = self.rng.sample(usable, 2)
        return min(usable, key=self.cost)

    def observe(self, endpoint: Endpoint, seconds: float) -> None:
        pass


class LeastRequest(_PowerOfTwo):
    """Power of two choices over in-flight requests (divided by weight)."""

    def cost(self, endpoint: Endpoint) -> float:
        return (endpoint.inflight + 1) / endpoint.weight


class PeakEwma(_PowerOfTwo):
    """Power of two choices over peak-EWMA latency x (in-flight + 1) / weight, as Linkerd and Finagle do.

    A slower answer than the estimate replaces it at once (peak); faster answers pull it down
    with weight ``exp(-elapsed / decay)``. Between answers the estimate decays toward zero, so an
    endpoint avoided for being slow is tried again after a while. An endpoint never measured
    costs ``default_latency``: it is probed as the others get busy, not flooded.
    """

    def __init__(self, decay: float = 2.0, default_latency: float = 0.05, rng: random.Random | None = None,
                 clock: Clock = time.monotonic) -> None:
        super().__init__(rng)
        self.decay = decay
        self.default_latency = default_latency
        self.clock = clock

    def estimate(self, endpoint: Endpoint, now: float) -> float:
        if endpoint.ewma_at == 0.0:
            return self.default_latency
        return endpoint.ewma * math.exp(-(now - endpoint.ewma_at) / self.decay)

    def pick(self, endpoints: Sequence[Endpoint], ok: Eligible, key: bytes | None = None) -> Endpoint | None:
        n = len(endpoints)
        if n <= 2 or n > 64:
            return super().pick(endpoints, ok, key)
        now = self.clock()
        estimates = [self.estimate(e, now) if e.ewma_at else 0.0 for e in endpoints]
        measured = [x for x in estimates if x > 0.0]
        # Not measured yet: assume the pool's mean, so a new endpoint is probed at about its share
        # as soon as it appears, instead of waiting for the others to be swamped.
        unknown = sum(measured) / len(measured) if measured else self.default_latency
        estimates = [x or unknown for x in estimates]
        # The two candidates are drawn in proportion to weight / latency estimate, not uniformly: a
        # server 5x slower than the rest then rarely even reaches the comparison, where uniform
        # draws put it in half of all pairs and a burst on its partner hands it the request.
        speeds = [e.weight / max(x, 1e-6) for e, x in zip(endpoints, estimates, strict=True)]
        i, j = self.rng.choices(range(n), speeds, k=2)
        if i == j:
            j = self.rng.choices(range(n), speeds, k=1)[0]
        a, b = endpoints[i], endpoints[j]
        if i != j and ok(a) and ok(b):
            cost_a = estimates[i] * (a.inflight + 1) / a.weight
            cost_b = estimates[j] * (b.inflight + 1) / b.weight
            return a if cost_a <= cost_b else b
        return super().pick(endpoints, ok, key)

    def cost(self, endpoint: Endpoint) -> float:
        return self.estimate(endpoint, self.clock()) * (endpoint.inflight + 1) / endpoint.weight

    def observe(self, endpoint: Endpoint, seconds: float) -> None:
        now = self.clock()
        if endpoint.ewma_at == 0.0 or seconds >= endpoint.ewma:
            endpoint.ewma = seconds
        else:
            w = math.exp(-(now - endpoint.ewma_at) / self.decay)
            endpoint.ewma = endpoint.ewma * w + seconds * (1.0 - w)
        endpoint.ewma_at = now


class LoadAware(PeakEwma):
    """Power of two choices over the servers' own reported load (queue depth, KV-cache use).

    Reports older than ``max_staleness`` are not trusted: an endpoint with a stale report ranks
    after every fresh one, and when no report is fresh the choice is plain peak-EWMA. In-flight
    requests from this gateway are added to the report, which is up to one scrape old.
    """

    def __init__(self, max_staleness: float = 3.0, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.max_staleness = max_staleness
        self._by_load = False

    def _fresh(self, endpoint: Endpoint, now: float) -> bool:
        return endpoint.load is not None and now - endpoint.load_at <= self.max_staleness

    def cost(self, endpoint: Endpoint) -> float:
        if not self._by_load:
            return super().cost(endpoint)
        if self._fresh(endpoint, self.clock()):
            assert endpoint.load is not None
            return (endpoint.load + endpoint.inflight) / endpoint.weight
        return 1e6 + super().cost(endpoint)

    def pick(self, endpoints: Sequence[Endpoint], ok: Eligible, key: bytes | None = None) -> Endpoint | None:
        now = self.clock()
        self._by_load = any(self._fresh(e, now) for e in endpoints)
        return super().pick(endpoints, ok, key)


def _hash(data: bytes) -> int:
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


class RingHash:
    """Consistent hashing on the request's key, with bounded load.

    Each endpoint owns ``replicas x weight`` points on a ring; a key goes to the first endpoint
    clockwise from its hash that may take it and holds no more than ``bounded_load`` x the
    mean in-flight load (Mirrokni et al., "Consistent Hashing with Bounded Loads"), so a hot
    key spills over instead of drowning one server. Requests without a key are spread at random.
    """

    def __init__(self, bounded_load: float = 1.25, replicas: int = 64, rng: random.Random | None = None) -> None:
        self.bounded_load = bounded_load
        self.replicas = replicas
        self.rng = rng or random.Random()
        self._points: list[int] = []
        self._owners: list[Endpoint] = []
        self._for: Sequence[Endpoint] | None = None

    def _build(self, endpoints: Sequence[Endpoint]) -> None:
        ring = sorted((_hash(f"{e.address}#{i}".encode()), k) for k, e in enumerate(endpoints)
                      for i in range(self.replicas * e.weight))
        self._points = [h for h, _ in ring]
        self._owners = [endpoints[k] for _, k in ring]
        self._for = endpoints

    def pick(self, endpoints: Sequence[Endpoint], ok: Eligible, key: bytes | None = None) -> Endpoint | None:
        if not endpoints:
            return None
        if endpoints is not self._for:
            self._build(endpoints)
        if key is None:
            usable = [e for e in endpoints if ok(e)]
            return self.rng.choice(usable) if usable else None
        total = sum(e.inflight for e in endpoints)
        bound = self.bounded_load * (total + 1) / len(endpoints)
        start = bisect_left(self._points, _hash(key))
        n = len(self._owners)
        spill = None
        for step in range(n):
            endpoint = self._owners[(start + step) % n]
            if not ok(endpoint):
                continue
            if endpoint.inflight < bound:
                return endpoint
            if spill is None:
                spill = endpoint
        return spill

    def observe(self, endpoint: Endpoint, seconds: float) -> None:
        pass


def make_balancer(kind: str, *, decay: float = 2.0, default_latency: float = 0.05, bounded_load: float = 1.25,
                  max_staleness: float = 3.0, rng: random.Random | None = None,
                  clock: Clock = time.monotonic) -> Balancer:
    if kind == "round-robin":
        return RoundRobin()
    if kind == "least-request":
        return LeastRequest(rng)
    if kind == "p2c-ewma":
        return PeakEwma(decay, default_latency, rng, clock)
    if kind == "ring-hash":
        return RingHash(bounded_load, rng=rng)
    if kind == "load-aware":
        return LoadAware(max_staleness, decay=decay, default_latency=default_latency, rng=rng, clock=clock)
    raise ValueError(f"unknown balancer {kind!r}")
