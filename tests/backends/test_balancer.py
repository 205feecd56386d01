"""Balancer invariants and behaviour, with injected clocks and random sources."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from backends.balancer import LeastRequest, LoadAware, PeakEwma, RingHash, RoundRobin, make_balancer
from backends.http1 import Endpoint


def _endpoints(weights: list[int]) -> list[Endpoint]:
    return [Endpoint(f"127.0.0.1:{9000 + i}", weight=w) for i, w in enumerate(weights)]


def _any(_: Endpoint) -> bool:
    return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@given(st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=6), st.integers(1, 5))
def test_round_robin_cycle_gives_every_endpoint_exactly_its_weight(weights: list[int], cycles: int) -> None:
    endpoints = _endpoints(weights)
    rr = RoundRobin()
    picks = Counter(rr.pick(endpoints, _any) for _ in range(sum(weights) * cycles))
    assert {e: picks[e] for e in endpoints} == {e: e.weight * cycles for e in endpoints}


@given(st.sampled_from(["round-robin", "least-request", "p2c-ewma", "ring-hash", "load-aware"]),
       st.lists(st.integers(min_value=1, max_value=4), min_size=2, max_size=6), st.data())
def test_no_balancer_picks_an_endpoint_that_may_not_take_work(kind: str, weights: list[int],
                                                               data: st.DataObject) -> None:
    endpoints = _endpoints(weights)
    barred = data.draw(st.lists(st.sampled_from(endpoints), max_size=len(endpoints) - 1, unique=True))
    balancer = make_balancer(kind, rng=random.Random(data.draw(st.integers(0, 1000))))
    for i in range(30):
        picked = balancer.pick(endpoints, lambda e: e not in barred, b"key-%d" % i)
        assert picked is not None and picked not in barred
    assert balancer.pick(endpoints, lambda e: False, b"k") is None


def test_least_request_prefers_the_less_busy_of_two() -> None:
    a, b = _endpoints([1, 1])
    a.inflight = 5
    lr = LeastRequest(random.Random(1))
    assert all(lr.pick([a, b], _any) is b for _ in range(20))


def test_peak_ewma_starves_a_slow_endpoint_and_retries_it_after_decay() -> None:
    clock = Clock()
    endpoints = _endpoints([1, 1, 1, 1])
    slow = endpoints[0]
    ewma = PeakEwma(decay=10.0, default_latency=0.05, rng=random.Random(2), clock=clock)
    for e in endpoints:
        ewma.observe(e, 0.250 if e is slow else 0.010)
    picks = Counter(ewma.pick(endpoints, _any) for _ in range(1000))
    assert picks[slow] == 0  # two choices always include a faster one, and 25x is never worth it
    clock.now += 60.0  # nothing heard from it for a minute: its estimate has decayed below the others'
    for e in endpoints[1:]:
        ewma.observe(e, 0.010)
    assert ewma.estimate(slow, clock.now) < 0.010
    assert Counter(ewma.pick(endpoints, _any) for _ in range(200))[slow] > 0


def test_peak_ewma_jumps_to_a_peak_and_decays_towards_fast_answers() -> None:
    clock = Clock()
    (e,) = _endpoints([1])
    ewma = PeakEwma(decay=1.0, rng=random.Random(3), clock=clock)
    ewma.observe(e, 0.010)
    ewma.observe(e, 0.500)
    assert e.ewma == 0.500  # a peak replaces the estimate at once
    clock.now += 1.0
    ewma.observe(e, 0.010)
    assert 0.010 < e.ewma < 0.5 * 0.500  # one decay time later the fast answer dominates


def test_unmeasured_endpoint_is_probed_once_others_are_busy() -> None:
    clock = Clock()
    measured, new = _endpoints([1, 1])
    ewma = PeakEwma(default_latency=0.05, rng=random.Random(4), clock=clock)
    ewma.observe(measured, 0.010)
    assert ewma.pick([measured, new], _any) is measured
    measured.inflight = 9  # 10 ms x 10 in flight now costs more than an unknown 50 ms x 1
    assert ewma.pick([measured, new], _any) is new


def test_ring_hash_is_sticky_spreads_and_moves_only_the_removed_endpoints_keys() -> None:
    endpoints = _endpoints([1, 1, 1, 1])
    ring = RingHash(bounded_load=1e9)
    keys = [b"session-%d" % i for i in range(2000)]
    owner = {k: ring.pick(endpoints, _any, k) for k in keys}
    assert all(ring.pick(endpoints, _any, k) is owner[k] for k in keys[:200])
    spread = Counter(owner.values())
    assert min(spread.values()) > 2000 / 4 * 0.6
    gone = endpoints[1]
    rest = [e for e in endpoints if e is not gone]
    smaller = RingHash(bounded_load=1e9)
    moved = [k for k in keys if owner[k] is not gone and smaller.pick(rest, _any, k) is not owner[k]]
    assert moved == []


def test_ring_hash_bounded_load_spills_a_hot_key() -> None:
    endpoints = _endpoints([1, 1, 1])
    ring = RingHash(bounded_load=1.25)
    home = ring.pick(endpoints, _any, b"hot")
    home.inflight = 10
    spilled = ring.pick(endpoints, _any, b"hot")
    assert spilled is not None and spilled is not home


def test_load_aware_follows_fresh_reports_and_falls_back_when_stale() -> None:
    clock = Clock()
    busy, idle = _endpoints([1, 1])
    balancer = LoadAware(max_staleness=3.0, rng=random.Random(5), clock=clock)
    busy.load, busy.load_at = 12.0, clock.now
    idle.load, idle.load_at = 0.0, clock.now
    assert all(balancer.pick([busy, idle], _any) is idle for _ in range(10))
    clock.now += 10.0  # reports are stale now: latency decides
    balancer.observe(busy, 0.001)
    balancer.observe(idle, 0.200)
    assert all(balancer.pick([busy, idle], _any) is busy for _ in range(10))


def test_new_endpoint_among_measured_ones_gets_about_its_share() -> None:
    clock = Clock()
    endpoints = _endpoints([1, 1, 1, 1])
    ewma = PeakEwma(rng=random.Random(6), clock=clock)
    for e in endpoints[:3]:
        ewma.observe(e, 0.002)
    picks = Counter(ewma.pick(endpoints, _any) for _ in range(400))
    assert 0.15 < picks[endpoints[3]] / 400 < 0.35  # assumed as fast as the pool's mean: probed, not flooded
