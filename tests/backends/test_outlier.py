"""Outlier ejection on an injected clock: triggers, growing times, the cap, and return."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backends.http1 import Endpoint
from backends.outlier import OutlierDetector


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pool(n: int = 4, **kw) -> tuple[list[Endpoint], OutlierDetector, Clock]:
    clock = Clock()
    endpoints = [Endpoint(f"127.0.0.1:{9000 + i}") for i in range(n)]
    return endpoints, OutlierDetector(endpoints, clock=clock, **kw), clock


def test_consecutive_errors_eject_and_a_success_resets_the_count() -> None:
    (e, *_), d, clock = _pool(consecutive_errors=3)
    d.record(e, False)
    d.record(e, False)
    d.record(e, True)
    d.record(e, False)
    d.record(e, False)
    assert d.available(e, clock.now)
    d.record(e, False)
    assert not d.available(e, clock.now) and e.ejected_until == clock.now + 2.0


def test_failure_rate_counts_only_past_min_requests_and_inside_the_window() -> None:
    (e, *_), d, clock = _pool(consecutive_errors=100, failure_rate=50, min_requests=10, window=10)
    for i in range(9):
        d.record(e, i % 2 == 0)  # 4 of 9 failed: below min_requests anyway
    assert d.available(e, clock.now)
    clock.now += 11  # the window forgets them
    for i in range(10):
        d.record(e, i % 2 == 0)  # 5 of 10 failed, the tenth among them
    assert not d.available(e, clock.now)


def test_ejection_time_doubles_and_is_capped_and_the_endpoint_returns() -> None:
    (e, *_), d, clock = _pool(consecutive_errors=1, base_ejection=2, max_ejection=5)
    times = []
    for _ in range(4):
        d.record(e, False)
        times.append(e.ejected_until - clock.now)
        clock.now = e.ejected_until  # back in rotation exactly when its time is up
        assert d.available(e, clock.now)
    assert times == [2, 4, 5, 5]


def test_no_more_than_the_cap_is_ejected() -> None:
    endpoints, d, clock = _pool(4, consecutive_errors=1, max_ejected=50)
    for e in endpoints:
        d.record(e, False)
    assert sum(not d.available(e, clock.now) for e in endpoints) == 2
    assert d.cap_reached == 2


@given(st.lists(st.tuples(st.integers(0, 4), st.booleans(), st.floats(0, 3)), max_size=300),
       st.sampled_from([20.0, 34.0, 50.0, 80.0]))
def test_ejected_share_never_exceeds_the_cap(steps: list[tuple[int, bool, float]], cap: float) -> None:
    endpoints, d, clock = _pool(5, consecutive_errors=2, min_requests=3, max_ejected=cap)
    for index, ok, advance in steps:
        clock.now += advance
        d.record(endpoints[index], ok)
        ejected = sum(not d.available(e, clock.now) for e in endpoints)
        assert ejected <= cap / 100 * len(endpoints)
