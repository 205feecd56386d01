"""Micro-benchmark of the routing decision (match + split + sticky hash) at 1,000 routes.

Prints ns per decision for: a single-backend route, a 3-way weighted split, a 3-way sticky
split (blake2b of a header), and a header-matched route behind a default. Bounded: a fixed
number of decisions per case.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backends.call import InferCall  # noqa: E402
from gateway import routing  # noqa: E402
from policies.loader import parse_policy  # noqa: E402
from policies.snapshot import compile_policy  # noqa: E402

ROUTES = 1000
N = 200_000


def policy_text(kind: str) -> str:
    lines = ["backends:"] + [f"  b{i}: {{endpoints: [127.0.0.1:{9000 + i}]}}" for i in range(3)] + ["routes:"]
    for r in range(ROUTES):
        if kind == "single":
            lines.append(f"  - {{model: m{r}, backend: b0}}")
        elif kind == "headers":
            lines.append(f"  - {{name: m{r}-acme, match: {{model: m{r}, headers: {{x-tenant: acme}}}}, backend: b1}}")
            lines.append(f"  - {{model: m{r}, backend: b0}}")
        else:
            sticky = ', sticky: {key: "header:x-user"}' if kind == "sticky" else ""
            lines.append(f"  - {{model: m{r}, variants: [{{backend: b0, weight: 80}}, {{backend: b1, weight: 15}}, "
                         f"{{backend: b2, weight: 5}}]{sticky}}}")
    return "\n".join(lines) + "\n"


def measure(kind: str) -> float:
    snapshot = compile_policy(parse_policy(policy_text(kind)), 1)
    rng = random.Random(1)
    calls = [InferCall(b"r", f"m{rng.randrange(ROUTES)}", None, b"{}", None, None, b"", 0.0,
                       {b"x-user": f"user-{rng.randrange(100000)}".encode(), b"x-tenant": b"other"})
             for _ in range(1000)]
    draw = random.random
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for i in range(N):
            routing.choose(snapshot, calls[i % 1000], draw)
        best = min(best, (time.perf_counter() - start) / N)
    return best * 1e9


def main() -> int:
    print(f"routing decision cost, {ROUTES} routes, {N:,} decisions per case (best of 3)")
    print("| case | ns / decision |")
    print("|---|---|")
    for kind, label in (("single", "single backend"), ("split", "3-way weighted split"),
                        ("sticky", "3-way sticky split (blake2b of x-user)"),
                        ("headers", "header-matched route, falls through to default")):
        print(f"| {label} | {measure(kind):,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
