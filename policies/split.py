"""The weighted split of a route between its variants, compiled once per Snapshot.

``pick`` maps a point in [0, 1) onto the variants by cumulative weight; the point comes from
a random draw, or from a stable hash of a sticky key so one user always lands in one arm for
as long as the weights stay the same.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from hashlib import blake2b
from typing import Generic, TypeVar

T = TypeVar("T")
_SCALE = 1.0 / 2**64


def sticky_point(key: bytes) -> float:
    """A stable, well-spread point in [0, 1) for a key (same in every process and release)."""
    return int.from_bytes(blake2b(key, digest_size=8).digest(), "big") * _SCALE


class Split(Generic[T]):
    __slots__ = ("arms", "bounds", "single")

    def __init__(self, arms: Sequence[T], shares: Sequence[float]) -> None:
        if len(arms) != len(shares) or not arms:
            raise ValueError("a split needs one share per arm")
        live = [(arm, share) for arm, share in zip(arms, shares, strict=True) if share > 0]
        total = float(sum(share for _, share in live))
        if total <= 0:
            raise ValueError("a split needs a positive total share")
        # Arms with a zero share are left out entirely, so no rounding can ever land on one.
        self.arms = tuple(arm for arm, _ in live)
        bounds: list[float] = []
        running = 0.0
        for _, share in live[:-1]:
            running += share / total
            bounds.append(running)
        self.bounds = bounds
        self.single = self.arms[0] if len(self.arms) == 1 else None

    def pick(self, point: float) -> T:
        """The arm for ``point`` in [0, 1)."""
        if self.single is not None:
            return self.single
        return self.arms[bisect_right(self.bounds, point)]
