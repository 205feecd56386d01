"""Checks across a whole policy (references, weights, reachability), reporting every problem at once."""

from __future__ import annotations

from policies.model import Policy, Route

Loc = tuple[str | int, ...]


def cross_check(policy: Policy) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    known = ", ".join(sorted(policy.backends)) or "none"
    names: dict[str, int] = {}
    for i, route in enumerate(policy.routes):
        at: Loc = ("routes", i)
        name = route.route_name
        if name in names:
            problems.append(((*at, "name") if route.name else (*at, "match", "model"),
                             f"duplicate route name {name!r} (also routes[{names[name]}]); give each route a name:"))
        else:
            names[name] = i
        problems += _variants(route, at, policy, known)
        problems += _mirrors(route, at, policy, known)
        for j, earlier in enumerate(policy.routes[:i]):
            if _shadows(earlier, route):
                problems.append(((*at, "match"), f"unreachable: routes[{j}] ({earlier.route_name!r}) matches every "
                                 "request this route matches, and the first match wins"))
                break
    return problems


def _variants(route: Route, at: Loc, policy: Policy, known: str) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    for j, variant in enumerate(route.variants):
        if variant.backend not in policy.backends:
            problems.append(((*at, "variants", j, "backend"), f"unknown backend {variant.backend!r}; defined: {known}"))
        if variant.variant_name in seen:
            problems.append(((*at, "variants", j, "name"), f"duplicate variant name {variant.variant_name!r}"))
        seen.add(variant.variant_name)
    percents = [isinstance(v.weight, str) for v in route.variants]
    if any(percents) and not all(percents):
        problems.append(((*at, "variants"), "weights mix percentages and integers; use one or the other"))
    elif all(percents):
        total = sum(float(str(v.weight).rstrip("%")) for v in route.variants)
        if abs(total - 100.0) > 1e-6:
            problems.append(((*at, "variants"), f"percentage weights add up to {total:g}%, not 100%"))
    elif sum(int(v.weight) for v in route.variants) == 0:
        problems.append(((*at, "variants"), "every weight is 0: no variant would get traffic"))
    return problems


def _mirrors(route: Route, at: Loc, policy: Policy, known: str) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    primaries = {v.backend for v in route.variants}
    names = {v.variant_name for v in route.variants}
    for j, mirror in enumerate(route.mirror):
        if mirror.backend not in policy.backends:
            problems.append(((*at, "mirror", j, "backend"), f"unknown backend {mirror.backend!r}; defined: {known}"))
        elif mirror.backend in primaries:
            problems.append(((*at, "mirror", j, "backend"), f"mirror points at {mirror.backend!r}, which already "
                             "serves this route's live traffic"))
        if mirror.variant_name in names:
            problems.append(((*at, "mirror", j, "name"), f"shadow name {mirror.variant_name!r} is also a live variant"))
        names.add(mirror.variant_name)
    return problems


def _shadows(earlier: Route, later: Route) -> bool:
    """True when every request ``later`` matches is taken by ``earlier`` first."""
    a, b = earlier.match, later.match
    if a.model != b.model:
        return False
    if a.version is not None and a.version != b.version:
        return False
    return all(b.headers.get(k) == v for k, v in a.headers.items())
