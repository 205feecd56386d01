"""Balancers: which endpoint of a pool takes the next request.

Round-robin (weighted) for now; latency-aware balancers plug in through the same ``pick``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from backends.http1 import Endpoint


class Balancer(Protocol):
    def pick(self, endpoints: Sequence[Endpoint], exclude: Sequence[Endpoint] = ()) -> Endpoint | None:
        """An endpoint not in ``exclude``, or None when there is none."""


class RoundRobin:
    """Weighted round-robin: an endpoint of weight w appears w times in the cycle (interleaved)."""

    __slots__ = ("_cycle", "_next", "_for")

    def __init__(self) -> None:
        self._cycle: list[Endpoint] = []
        self._next = 0
        self._for: Sequence[Endpoint] | None = None

    def _build(self, endpoints: Sequence[Endpoint]) -> None:
        # Interleave by weight (smooth: a, b, a, b, a rather than a, a, a, b, b).
        cycle: list[Endpoint] = []
        remaining = {id(e): e.weight for e in endpoints}
        while any(remaining.values()):
            for e in endpoints:
                if remaining[id(e)]:
                    cycle.append(e)
                    remaining[id(e)] -= 1
        self._cycle = cycle
        self._for = endpoints

    def pick(self, endpoints: Sequence[Endpoint], exclude: Sequence[Endpoint] = ()) -> Endpoint | None:
        if endpoints is not self._for:
            self._build(endpoints)
        cycle = self._cycle
        n = len(cycle)
        for _ in range(n):
            endpoint = cycle[self._next % n]
            self._next += 1
            if endpoint not in exclude:
                return endpoint
        return None
