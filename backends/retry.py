"""Retry budget and backoff: retries may add at most a set share of extra load, so they cannot
turn a partial outage into a full one (Finagle's RetryBudget, Envoy's retry budgets)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class RetryBudget:
    """Every request deposits ``ratio`` of a retry; every retry withdraws one. A floor of
    ``min_per_second`` retries refills with time, so a quiet backend can still retry. The
    balance is capped, so a long healthy spell cannot bank an unbounded burst of retries."""

    def __init__(self, ratio: float = 0.2, min_per_second: float = 5.0, cap: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.cap = cap if cap is not None else max(10.0, min_per_second * 10.0)
        self.clock = clock
        self.balance = min(self.cap, min_per_second)
        self._at = clock()
        self.spent = 0
        self.refused = 0

    def deposit(self) -> None:
        balance = self.balance + self.ratio
        self.balance = balance if balance < self.cap else self.cap

    def withdraw(self) -> bool:
        now = self.clock()
        if self.min_per_second:
            self.balance = min(self.cap, self.balance + (now - self._at) * self.min_per_second)
        self._at = now
        if self.balance >= 1.0:
            self.balance -= 1.0
            self.spent += 1
            return True
        self.refused += 1
        return False


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (1 = first retry)."""
    return rng.uniform(0.0, min(cap, base * 2 ** (attempt - 1)))
