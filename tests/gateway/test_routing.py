"""Routing policies through a real in-process gateway and real loopback upstreams:
splits, sticky arms, override header, mirrors, faults, header matches, live reloads."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter

import aiohttp
import pytest

from backends.call import InferCall
from gateway import routing
from policies.loader import parse_policy
from policies.snapshot import compile_policy
from tests.fixtures.client import infer_request, send_many
from tests.fixtures.gateway import running_gateway
from tests.fixtures.upstreams import Upstream


@pytest.fixture
async def servers():
    ups = {name: await Upstream(name=name).start() for name in ("a", "b", "c", "shadow")}
    yield ups
    for u in ups.values():
        await u.stop()


def _backends(ups: dict[str, Upstream]) -> str:
    return "backends:\n" + "".join(f"  {n}: {{endpoints: [{u.address}], timeout: 5s}}\n" for n, u in ups.items())


def _call(headers: dict[bytes, bytes] | None = None, model: str = "demo") -> InferCall:
    return InferCall(b"r", model, None, b"{}", None, None, b"", 0.0, headers or {})


SPLIT = """
routes:
  - model: demo
    variants:
      - {name: stable, backend: a, weight: 90%}
      - {name: canary, backend: b, weight: 10%}
"""


def test_90_10_split_over_20000_requests_is_within_one_point(servers) -> None:
    snap = compile_policy(parse_policy(_backends(servers) + SPLIT), 1)
    rng = random.Random(20261124)
    picks = Counter(routing.choose(snap, _call(), rng.random)[1].name for _ in range(20000))
    assert abs(picks["canary"] / 20000 - 0.10) <= 0.01
    assert picks["stable"] + picks["canary"] == 20000


async def test_split_through_the_gateway_answers_from_the_named_arm(servers) -> None:
    async with running_gateway(_backends(servers) + SPLIT) as gw:
        answers = await send_many(gw.http_port, [infer_request() for _ in range(2000)])
    arms = Counter(a.headers[b"x-meshgate-variant"] for a in answers)
    assert all(a.status == 200 for a in answers)
    assert abs(arms[b"canary"] / 2000 - 0.10) <= 0.025  # 2,000 draws: +-2.5 pp is > 3 sigma
    for a in answers:  # the header names the arm that actually answered
        assert json.loads(a.body)["server"] == {b"stable": "a", b"canary": "b"}[a.headers[b"x-meshgate-variant"]]


STICKY = """
routes:
  - model: demo
    variants:
      - {name: A, backend: a, weight: 1}
      - {name: B, backend: b, weight: 1}
      - {name: C, backend: c, weight: 2}
    sticky: {key: "header:x-user"}
"""


def test_sticky_key_keeps_its_arm_across_reloads_and_spreads_by_weight(servers) -> None:
    policy = parse_policy(_backends(servers) + STICKY)
    first = compile_policy(policy, 1)
    users = [f"user-{i}".encode() for i in range(4000)]
    arms = {u: routing.choose(first, _call({b"x-user": u}), random.random)[1].name for u in users}
    again = compile_policy(parse_policy(_backends(servers) + STICKY + "\n# reloaded\n"), 2, previous=first)
    for u in users:
        for _ in range(2):
            assert routing.choose(again, _call({b"x-user": u}), random.random)[1].name == arms[u]
    spread = Counter(arms.values())
    assert abs(spread["C"] / 4000 - 0.5) < 0.03 and abs(spread["A"] / 4000 - 0.25) < 0.03


def test_override_header_wins_over_sticky_and_weights(servers) -> None:
    snap = compile_policy(parse_policy(_backends(servers) + STICKY), 1)
    for u in (b"u1", b"u2", b"u3"):
        call = _call({b"x-user": u, b"x-meshgate-variant": b"B"})
        assert routing.choose(snap, call, random.random)[1].name == "B"


async def test_unknown_override_is_a_400_naming_the_variants(servers) -> None:
    async with running_gateway(_backends(servers) + STICKY) as gw:
        [answer] = await send_many(gw.http_port, [infer_request(headers={"x-meshgate-variant": "Z"})], 1)
    assert answer.status == 400
    assert "variants: A, B, C" in json.loads(answer.body)["error"]


async def test_header_match_first_wins_with_default_last(servers) -> None:
    policy = _backends(servers) + """
routes:
  - name: acme
    match: {model: demo, headers: {X-Tenant: acme}}
    backend: a
  - name: demo-v2
    match: {model: demo, version: "2"}
    backend: c
  - {name: default, model: demo, backend: b}
"""
    async with running_gateway(policy) as gw:
        reqs = [infer_request(headers={"x-tenant": "acme"}), infer_request(headers={"x-tenant": "other"}),
                infer_request(), infer_request().replace(b"/v2/models/demo/infer", b"/v2/models/demo/versions/2/infer")]
        answers = await send_many(gw.http_port, reqs, 1)
    assert [json.loads(a.body)["server"] for a in answers] == ["a", "b", "b", "c"]


async def test_mirror_copies_its_share_and_never_answers_the_client(servers) -> None:
    policy = _backends(servers) + """
routes:
  - model: demo
    backend: a
    mirror: {backend: shadow, percent: 10%}
"""
    async with running_gateway(policy) as gw:
        answers = await send_many(gw.http_port, [infer_request() for _ in range(10000)])
        await asyncio.wait_for(gw.mirror.join(), 10)
    assert all(a.status == 200 and json.loads(a.body)["server"] == "a" for a in answers)
    assert all(a.headers[b"x-meshgate-variant"] == b"a" for a in answers)
    copies = servers["shadow"].requests
    assert gw.mirror.dropped == 0
    assert abs(len(copies) / 10000 - 0.10) <= 0.015
    assert all(b"x-meshgate-shadow: true\r\n" in c and b"x-meshgate-primary-request-id: " in c for c in copies)


async def test_fault_abort_and_delay_hit_their_share(servers) -> None:
    policy = _backends(servers) + """
routes:
  - model: demo
    backend: a
    fault:
      abort: {percent: 20%, status: 503}
      delay: {percent: 10%, duration: 50ms}
"""
    async with running_gateway(policy) as gw, aiohttp.ClientSession() as s:
        answers = await send_many(gw.http_port, [infer_request() for _ in range(3000)], connections=16)
        aborted = [a for a in answers if a.status == 503]
        assert abs(len(aborted) / 3000 - 0.20) <= 0.03
        assert all("fault injected" in json.loads(a.body)["error"] for a in aborted)
        assert len(servers["a"].requests) == 3000 - len(aborted)  # aborted requests never reach the backend
        async with s.get(f"http://127.0.0.1:{gw.admin_port}/metrics") as r:
            metrics = await r.text()
    delayed = next(float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith('meshgate_faults_injected_total{kind="delay"'))
    assert abs(delayed / 3000 - 0.10) <= 0.025
