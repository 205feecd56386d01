"""Compiles a Policy into the immutable ``Snapshot`` the request path reads.

Everything a request needs is precomputed here: routes grouped by model (first match wins),
split tables, header values as bytes, fault and mirror rates as fractions. A reload builds a
new Snapshot beside the old one and swaps one reference; pools whose backend did not change
are carried over with their connections.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from backends.admission import Admission
from backends.balancer import make_balancer
from backends.errors import ModelNotFound
from backends.health import HealthChecker
from backends.http1 import Endpoint
from backends.loadreport import LoadScraper
from backends.outlier import OutlierDetector
from backends.pool import HedgePolicy, Pool, RetryPolicy
from backends.retry import RetryBudget
from backends.v2http import V2HttpUpstream
from policies.model import Backend, Policy, Route
from policies.split import Split


@dataclass(frozen=True, slots=True)
class CompiledVariant:
    name: str
    backend: str
    upstream: V2HttpUpstream
    name_bytes: bytes


@dataclass(frozen=True, slots=True)
class CompiledMirror:
    variant: CompiledVariant
    rate: float  # 0..1


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    name: str
    model: str
    version: str | None
    headers: tuple[tuple[bytes, bytes], ...]
    split: Split[CompiledVariant]
    by_name: Mapping[bytes, CompiledVariant]
    sticky: tuple[str, str] | None  # ("header", b"x-user") / ("tenant", "") / ("field", "parameters.user")
    mirrors: tuple[CompiledMirror, ...]
    delay: tuple[float, float] | None  # (rate 0..1, seconds)
    abort: tuple[float, int] | None  # (rate 0..1, status)

    def matches(self, version: str | None, headers: Mapping[bytes, bytes]) -> bool:
        if self.version is not None and self.version != version:
            return False
        for name, value in self.headers:
            if headers.get(name) != value:
                return False
        return True


@dataclass(frozen=True)
class Snapshot:
    version: int
    policy: Policy
    routes: Mapping[str, tuple[CompiledRoute, ...]]
    pools: Mapping[str, Pool]
    backends: Mapping[str, Backend] = field(repr=False)

    def select(self, model: str, version: str | None, headers: Mapping[bytes, bytes]) -> CompiledRoute:
        """The first route that matches, or ModelNotFound."""
        candidates = self.routes.get(model)
        if candidates is None:
            raise ModelNotFound(f"unknown model {model!r}")
        for route in candidates:
            if route.matches(version, headers):
                return route
        raise ModelNotFound(f"no route for model {model!r} matches this request (version or headers)")

    def any_route(self, model: str) -> CompiledRoute:
        """A route for metadata calls, which carry no routing headers: the model's default (last) route."""
        candidates = self.routes.get(model)
        if not candidates:
            raise ModelNotFound(f"unknown model {model!r}")
        return candidates[-1]

    def start(self) -> None:
        """Starts the background helpers of every pool not started yet (new ones after a reload)."""
        for pool in self.pools.values():
            pool.start()

    async def close(self, keep: Mapping[str, Pool] = MappingProxyType({})) -> None:
        """Closes the pools the next snapshot did not carry over (in-flight requests finish)."""
        kept = {id(p) for p in keep.values()}
        for pool in self.pools.values():
            if id(pool) not in kept:
                await pool.aclose()


def _pool(name: str, backend: Backend) -> Pool:
    endpoints = [Endpoint(e.address, weight=e.weight, connect_timeout=backend.connect_timeout,
                          max_idle=backend.max_idle_connections) for e in backend.endpoints]
    b, r, lim, o, h = backend.balancer, backend.retries, backend.limits, backend.outlier, backend.health
    pool = Pool(
        name, endpoints, timeout=backend.timeout,
        balancer=make_balancer(b.kind, decay=b.decay, default_latency=b.default_latency,
                               bounded_load=b.bounded_load, max_staleness=b.max_staleness),
        retries=RetryPolicy(r.attempts, r.backoff, r.max_backoff, r.on_503),
        budget=RetryBudget(r.budget / 100.0, r.min_retries_per_second),
        admission=Admission(name, lim.max_inflight, lim.max_queue, lim.queue_timeout),
        max_inflight_per_endpoint=lim.max_inflight_per_endpoint,
        hedging=HedgePolicy(backend.hedging.percentile, backend.hedging.min_delay) if backend.hedging.enabled else None,
        outliers=OutlierDetector(endpoints, consecutive_errors=o.consecutive_errors, failure_rate=o.failure_rate,
                                 min_requests=o.min_requests, window=o.window, base_ejection=o.base_ejection,
                                 max_ejection=o.max_ejection, max_ejected=o.max_ejected),
    )
    if h.enabled:
        pool.background.append(HealthChecker(endpoints, path=h.path, interval=h.interval, timeout=h.timeout,
                                             healthy_threshold=h.healthy_threshold,
                                             unhealthy_threshold=h.unhealthy_threshold, jitter=h.jitter))
    if b.kind == "load-aware":
        pool.background.append(LoadScraper(endpoints, metrics_path=b.metrics_path, interval=b.scrape_interval))
    return pool


def _hash_key(backend: Backend) -> tuple[str, str] | None:
    if backend.balancer.kind != "ring-hash":
        return None
    kind, _, name = backend.balancer.hash_key.partition(":")
    return kind, name


def _sticky(route: Route) -> tuple[str, str] | None:
    if route.sticky is None:
        return None
    kind, _, rest = route.sticky.key.partition(":")
    return kind, rest


def compile_policy(policy: Policy, version: int, previous: Snapshot | None = None) -> Snapshot:
    pools: dict[str, Pool] = {}
    for name, backend in policy.backends.items():
        if previous is not None and previous.backends.get(name) == backend:
            pools[name] = previous.pools[name]
        else:
            pools[name] = _pool(name, backend)

    def variant(name: str, backend_name: str, model: str) -> CompiledVariant:
        backend = policy.backends[backend_name]
        upstream = V2HttpUpstream(pools[backend_name], backend.model or model, backend.version, _hash_key(backend))
        return CompiledVariant(name, backend_name, upstream, name.encode())

    routes: dict[str, list[CompiledRoute]] = {}
    for route in policy.routes:
        model = route.match.model
        variants = [variant(v.variant_name, v.backend, model) for v in route.variants]
        fault = route.fault
        routes.setdefault(model, []).append(CompiledRoute(
            name=route.route_name, model=model, version=route.match.version,
            headers=tuple((k.encode(), v.encode()) for k, v in route.match.headers.items()),
            split=Split(variants, route.shares()),
            by_name=MappingProxyType({v.name_bytes: v for v in variants}),
            sticky=_sticky(route),
            mirrors=tuple(CompiledMirror(variant(m.variant_name, m.backend, model), m.percent / 100.0)
                          for m in route.mirror),
            delay=(fault.delay.percent / 100.0, fault.delay.duration) if fault and fault.delay else None,
            abort=(fault.abort.percent / 100.0, fault.abort.status) if fault and fault.abort else None,
        ))
    return Snapshot(version=version, policy=policy,
                    routes=MappingProxyType({k: tuple(v) for k, v in routes.items()}),
                    pools=MappingProxyType(pools), backends=MappingProxyType(dict(policy.backends)))
