"""Prometheus metric names and the recorders the rest of meshgate calls.

Callers record facts (route, variant, status, seconds); naming and label layout live here.
Children are cached per label set so the request path pays one dict lookup, not
``labels()``'s validation.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics

# The _created series double every counter for little use; Prometheus does not need them.
disable_created_metrics()

REQUESTS_TOTAL = "meshgate_requests"
REQUEST_DURATION = "meshgate_request_duration_seconds"
UPSTREAM_REQUESTS_TOTAL = "meshgate_upstream_requests"
UPSTREAM_DURATION = "meshgate_upstream_duration_seconds"
POLICY_VERSION = "meshgate_policy_version"
POLICY_RELOADS_TOTAL = "meshgate_policy_reloads"
MIRROR_TOTAL = "meshgate_mirror_requests"
FAULTS_TOTAL = "meshgate_faults_injected"
BUILD_INFO = "meshgate_build"

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """The gateway's own metrics on one registry (one per gateway, so tests stay apart)."""

    def __init__(self, registry: CollectorRegistry | None = None, version: str = "") -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(REQUESTS_TOTAL, "Requests answered, by route, variant, backend and status code",
                                ["protocol", "route", "variant", "backend", "code"], registry=r)
        self.duration = Histogram(REQUEST_DURATION, "Time from request received to response written",
                                  ["protocol", "route", "variant"], buckets=LATENCY_BUCKETS, registry=r)
        self.upstream = Counter(UPSTREAM_REQUESTS_TOTAL, "Upstream calls by backend, endpoint and status code",
                                ["backend", "endpoint", "code"], registry=r)
        self.upstream_duration = Histogram(UPSTREAM_DURATION, "Upstream call time by backend and endpoint",
                                           ["backend", "endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.policy_version = Gauge(POLICY_VERSION, "Version number of the policy being served", registry=r)
        self.reloads = Counter(POLICY_RELOADS_TOTAL, "Policy reloads by source and result (applied, rejected)",
                               ["source", "result"], registry=r)
        self.mirror = Counter(MIRROR_TOTAL, "Shadow copies by route, shadow variant and outcome "
                              "(ok, error, dropped)", ["route", "variant", "outcome"], registry=r)
        self.faults = Counter(FAULTS_TOTAL, "Faults injected by route and kind (delay, abort)",
                              ["route", "kind"], registry=r)
        Info(BUILD_INFO, "meshgate build", registry=r).info({"version": version})
        self._request_children: dict[tuple[str, ...], tuple[Counter, Histogram]] = {}
        self._upstream_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._mirror_children: dict[tuple[str, str, str], Counter] = {}
        self._fault_children: dict[tuple[str, str], Counter] = {}

    def request(self, protocol: str, route: str, variant: str, backend: str, code: int, seconds: float) -> None:
        key = (protocol, route, variant, backend, str(code))
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(*key), self.duration.labels(protocol, route, variant))
        children[0].inc()
        children[1].observe(seconds)

    def mirrored(self, route: str, variant: str, outcome: str) -> None:
        key = (route, variant, outcome)
        child = self._mirror_children.get(key)
        if child is None:
            child = self._mirror_children[key] = self.mirror.labels(*key)
        child.inc()

    def fault(self, route: str, kind: str) -> None:
        key = (route, kind)
        child = self._fault_children.get(key)
        if child is None:
            child = self._fault_children[key] = self.faults.labels(*key)
        child.inc()

    def upstream_call(self, backend: str, endpoint: str, code: int, seconds: float) -> None:
        key = (backend, endpoint, code)
        children = self._upstream_children.get(key)
        if children is None:
            children = self._upstream_children[key] = (
                self.upstream.labels(backend, endpoint, str(code)), self.upstream_duration.labels(backend, endpoint))
        children[0].inc()
        children[1].observe(seconds)
