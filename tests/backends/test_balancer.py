"""Round-robin invariants, property-tested."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from backends.balancer import RoundRobin
from backends.http1 import Endpoint


def _endpoints(weights: list[int]) -> list[Endpoint]:
    return [Endpoint(f"127.0.0.1:{9000 + i}", weight=w) for i, w in enumerate(weights)]


@given(st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=6), st.integers(1, 5))
def test_each_cycle_gives_every_endpoint_exactly_its_weight(weights: list[int], cycles: int) -> None:
    endpoints = _endpoints(weights)
    rr = RoundRobin()
    picks = Counter(rr.pick(endpoints) for _ in range(sum(weights) * cycles))
    assert {e: picks[e] for e in endpoints} == {e: e.weight * cycles for e in endpoints}


@given(st.lists(st.integers(min_value=1, max_value=4), min_size=2, max_size=6), st.data())
def test_excluded_endpoints_are_never_picked(weights: list[int], data: st.DataObject) -> None:
    endpoints = _endpoints(weights)
    excluded = data.draw(st.lists(st.sampled_from(endpoints), max_size=len(endpoints) - 1, unique=True))
    rr = RoundRobin()
    for _ in range(sum(weights) * 2):
        picked = rr.pick(endpoints, excluded)
        assert picked is not None and picked not in excluded


def test_all_excluded_gives_none() -> None:
    endpoints = _endpoints([1, 2])
    assert RoundRobin().pick(endpoints, endpoints) is None


def test_weighted_cycle_is_interleaved() -> None:
    a, b = _endpoints([3, 1])
    rr = RoundRobin()
    assert [rr.pick([a, b]) for _ in range(4)] == [a, b, a, a]
