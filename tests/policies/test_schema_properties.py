"""Property tests on the policy schema: valid configs compile; mutated ones fail with a PolicyError."""

from __future__ import annotations

import random

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.loader import PolicyError, parse_policy
from policies.snapshot import compile_policy

names = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)


@st.composite
def policies(draw: st.DrawFn) -> dict:
    backend_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    backends = {n: {"endpoints": [f"127.0.0.1:{draw(st.integers(1, 65535))}"],
                    "timeout": draw(st.sampled_from(["250ms", "5s", "2m", 3]))} for n in backend_names}
    routes = []
    for i, model in enumerate(draw(st.lists(names, min_size=1, max_size=4, unique=True))):
        arms = draw(st.lists(st.sampled_from(backend_names), min_size=1, max_size=3, unique=True))
        if draw(st.booleans()):
            weights = draw(st.lists(st.integers(0, 100), min_size=len(arms), max_size=len(arms)).filter(
                lambda w: sum(w) > 0))
        else:
            cut = sorted(draw(st.lists(st.integers(0, 100), min_size=len(arms) - 1, max_size=len(arms) - 1)))
            bounds = [0, *cut, 100]
            weights = [f"{bounds[j + 1] - bounds[j]}%" for j in range(len(arms))]
        route: dict = {"name": f"r{i}", "match": {"model": model},
                       "variants": [{"backend": b, "weight": w} for b, w in zip(arms, weights, strict=True)]}
        spare = [b for b in backend_names if b not in arms]
        if spare and draw(st.booleans()):
            route["mirror"] = [{"backend": spare[0], "percent": f"{draw(st.integers(0, 100))}%"}]
        if draw(st.booleans()):
            route["sticky"] = {"key": draw(st.sampled_from(["header:x-user", "tenant", "field:parameters.user"]))}
        if draw(st.booleans()):
            route["fault"] = {"abort": {"percent": "1%", "status": 503}, "delay": {"percent": 5, "duration": "10ms"}}
        routes.append(route)
    return {"backends": backends, "routes": routes}


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_valid_policies_compile(doc: dict) -> None:
    policy = parse_policy(yaml.safe_dump(doc))
    snapshot = compile_policy(policy, 1)
    assert set(snapshot.routes) == {r["match"]["model"] for r in doc["routes"]}
    for route in policy.routes:
        assert abs(sum(route.shares()) - 100.0) < 1e-6


def _mutate(doc: dict, rng: random.Random) -> None:
    """Breaks one thing somewhere: a wrong type, an unknown key, a bad unit, a dangling reference."""
    route = rng.choice(doc["routes"])
    choice = rng.randrange(7)
    if choice == 0:
        route["variants"][0]["backend"] = "no-such-backend"
    elif choice == 1:
        route["variants"][0]["wieght"] = 1
    elif choice == 2:
        next(iter(doc["backends"].values()))["timeout"] = rng.choice(["soon", "-1s", "5 parsecs", True])
    elif choice == 3:
        route["variants"][0]["weight"] = rng.choice([-1, "150%", "ten", 1.5])
    elif choice == 4:
        next(iter(doc["backends"].values()))["endpoints"] = [rng.choice(["nohost", "1.2.3.4:99999", 7])]
    elif choice == 5:
        route["fault"] = {"abort": {"percent": "10%", "status": rng.choice([200, 700, "x"])}}
    else:
        doc["routes"].append(dict(route))  # the same route again: duplicate name, unreachable


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), st.integers(0, 2**32))
def test_mutations_give_a_policy_error_never_a_traceback(doc: dict, seed: int) -> None:
    _mutate(doc, random.Random(seed))
    try:
        parse_policy(yaml.safe_dump(doc), "p.yaml")
    except PolicyError as e:
        assert e.problems
        assert all(str(p).startswith("p.yaml:") and p.reason for p in e.problems)
    else:
        raise AssertionError("a broken policy was accepted")
