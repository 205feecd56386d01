"""What changed between two policies, in routing terms: routes, weights, mirrors, faults, backends."""

from __future__ import annotations

from policies.model import Backend, Policy, Route


def _pct(x: float) -> str:
    return f"{x:.4g}%"


def _arms(route: Route) -> dict[str, tuple[str, float]]:
    return {v.variant_name: (v.backend, share) for v, share in zip(route.variants, route.shares(), strict=True)}


def describe_route(route: Route) -> str:
    """One line: where a route's traffic goes."""
    match = route.match.model + (f" v{route.match.version}" if route.match.version else "")
    if route.match.headers:
        match += " [" + ", ".join(f"{k}={v}" for k, v in route.match.headers.items()) + "]"
    arms = ", ".join(f"{name} {_pct(share)} ({backend})" for name, (backend, share) in _arms(route).items())
    parts = [f"{route.route_name}: {match} -> {arms}"]
    if route.sticky:
        parts.append(f"sticky on {route.sticky.key}")
    if route.mirror:
        parts.append("mirror " + ", ".join(f"{m.variant_name} {_pct(m.percent)} ({m.backend})" for m in route.mirror))
    if route.fault and route.fault.delay:
        parts.append(f"fault delay {_pct(route.fault.delay.percent)} {route.fault.delay.duration:g}s")
    if route.fault and route.fault.abort:
        parts.append(f"fault abort {_pct(route.fault.abort.percent)} status {route.fault.abort.status}")
    return "; ".join(parts)


def summarize(policy: Policy) -> list[str]:
    lines = [describe_route(r) for r in policy.routes]
    for name, backend in policy.backends.items():
        lines.append(f"backend {name}: {', '.join(e.address for e in backend.endpoints)} "
                     f"(model {backend.model or '(route model)'}, timeout {backend.timeout:g}s)")
    return lines


def diff_policies(old: Policy, new: Policy) -> list[str]:
    """Human-readable changes from ``old`` to ``new``; empty when routing is identical."""
    out: list[str] = []
    old_routes = {r.route_name: r for r in old.routes}
    new_routes = {r.route_name: r for r in new.routes}
    for name in old_routes.keys() - new_routes.keys():
        out.append(f"- route {describe_route(old_routes[name])}")
    for name in new_routes.keys() - old_routes.keys():
        out.append(f"+ route {describe_route(new_routes[name])}")
    for name in sorted(old_routes.keys() & new_routes.keys()):
        out += _route_changes(name, old_routes[name], new_routes[name])
    if [r.route_name for r in old.routes] != [r.route_name for r in new.routes] and \
            set(old_routes) == set(new_routes):
        out.append(f"~ route order: {', '.join(r.route_name for r in new.routes)}")
    for name in sorted(old.backends.keys() - new.backends.keys()):
        out.append(f"- backend {name}")
    for name in sorted(new.backends.keys() - old.backends.keys()):
        out.append(f"+ backend {name}: {', '.join(e.address for e in new.backends[name].endpoints)}")
    for name in sorted(old.backends.keys() & new.backends.keys()):
        out += _backend_changes(name, old.backends[name], new.backends[name])
    return out


def _route_changes(name: str, a: Route, b: Route) -> list[str]:
    out: list[str] = []
    if a.match != b.match:
        out.append(f"~ route {name}: match {a.match.model_dump(exclude_defaults=True)} -> "
                   f"{b.match.model_dump(exclude_defaults=True)}")
    arms_a, arms_b = _arms(a), _arms(b)
    for arm in arms_a.keys() - arms_b.keys():
        out.append(f"~ route {name}: variant {arm} removed (was {_pct(arms_a[arm][1])})")
    for arm in arms_b.keys() - arms_a.keys():
        out.append(f"~ route {name}: variant {arm} added at {_pct(arms_b[arm][1])} ({arms_b[arm][0]})")
    for arm in sorted(arms_a.keys() & arms_b.keys()):
        (ba, sa), (bb, sb) = arms_a[arm], arms_b[arm]
        if abs(sa - sb) > 1e-9:
            out.append(f"~ route {name}: weight {arm} {_pct(sa)} -> {_pct(sb)}")
        if ba != bb:
            out.append(f"~ route {name}: variant {arm} backend {ba} -> {bb}")
    if a.sticky != b.sticky:
        out.append(f"~ route {name}: sticky {a.sticky.key if a.sticky else 'off'} -> {b.sticky.key if b.sticky else 'off'}")
    ma = {m.variant_name: m for m in a.mirror}
    mb = {m.variant_name: m for m in b.mirror}
    for m in ma.keys() - mb.keys():
        out.append(f"~ route {name}: mirror {m} removed")
    for m in mb.keys() - ma.keys():
        out.append(f"~ route {name}: mirror {m} added at {_pct(mb[m].percent)} ({mb[m].backend})")
    for m in sorted(ma.keys() & mb.keys()):
        if ma[m] != mb[m]:
            out.append(f"~ route {name}: mirror {m} {_pct(ma[m].percent)} ({ma[m].backend}) -> "
                       f"{_pct(mb[m].percent)} ({mb[m].backend})")
    if a.fault != b.fault:
        out.append(f"~ route {name}: fault {a.fault.model_dump(exclude_none=True) if a.fault else 'none'} -> "
                   f"{b.fault.model_dump(exclude_none=True) if b.fault else 'none'}")
    return out


def _backend_changes(name: str, a: Backend, b: Backend) -> list[str]:
    out: list[str] = []
    ea = {e.address: e.weight for e in a.endpoints}
    eb = {e.address: e.weight for e in b.endpoints}
    added = sorted(eb.keys() - ea.keys())
    removed = sorted(ea.keys() - eb.keys())
    if added or removed:
        out.append(f"~ backend {name}: endpoints " + " ".join([f"+{x}" for x in added] + [f"-{x}" for x in removed]))
    for addr in sorted(ea.keys() & eb.keys()):
        if ea[addr] != eb[addr]:
            out.append(f"~ backend {name}: endpoint {addr} weight {ea[addr]} -> {eb[addr]}")
    for field in ("timeout", "connect_timeout", "model", "version", "protocol", "transport", "max_idle_connections"):
        va, vb = getattr(a, field), getattr(b, field)
        if va != vb:
            out.append(f"~ backend {name}: {field} {va} -> {vb}")
    return out
