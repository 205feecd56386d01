"""Live policy changes under traffic: nothing lost, nothing misrouted; bad policies rejected."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import aiohttp
import pytest

from gateway.app import Gateway
from policies.loader import parse_policy
from tests.fixtures.client import infer_request, send_many
from tests.fixtures.upstreams import Upstream

TOKEN = "test-admin-token"


@pytest.fixture
async def servers():
    ups = {name: await Upstream(name=name).start() for name in ("a", "b")}
    yield ups
    for u in ups.values():
        await u.stop()


def _policy(ups: dict[str, Upstream], canary: int) -> str:
    return (
        "listen: {http: 127.0.0.1:0, admin: 127.0.0.1:0}\nbackends:\n"
        + "".join(f"  {n}: {{endpoints: [{u.address}], timeout: 5s}}\n" for n, u in ups.items())
        + f"""routes:
  - model: demo
    variants:
      - {{name: stable, backend: a, weight: {100 - canary}}}
      - {{name: canary, backend: b, weight: {canary}}}
""")


async def _gateway(text: str, tmp_path: Path, **kw: object) -> Gateway:
    gw = Gateway(parse_policy(text), text=text, state_dir=tmp_path,
                 admin_token_sha256=hashlib.sha256(TOKEN.encode()).hexdigest(), **kw)  # type: ignore[arg-type]
    await gw.start()
    return gw


async def test_fifty_reloads_under_load_lose_and_misroute_nothing(servers, tmp_path: Path) -> None:
    gw = await _gateway(_policy(servers, 10), tmp_path)
    answers = []
    stop = asyncio.Event()
    batch_done = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            answers.extend(await send_many(gw.http_port, [infer_request() for _ in range(64)], connections=4))
            batch_done.set()

    try:
        load = [asyncio.create_task(traffic()) for _ in range(2)]
        for i in range(50):
            # Odd versions also change the backends' timeout, so their pools are rebuilt mid-traffic.
            text = _policy(servers, 5 + (i % 2) * 40).replace("timeout: 5s", f"timeout: {5 + i % 2}s")
            applied = await gw.policies.apply(text, source="admin", who="test")
            assert applied.changed
            batch_done.clear()
            await asyncio.wait_for(batch_done.wait(), 10)  # traffic flows between every two swaps
        stop.set()
        await asyncio.gather(*load)
    finally:
        await gw.stop()
    assert len(answers) >= 50 * 64
    assert [a.status for a in answers if a.status != 200] == []
    for a in answers:
        assert json.loads(a.body)["server"] == {b"stable": "a", b"canary": "b"}[a.headers[b"x-meshgate-variant"]]
    assert gw.policies.version.number == 51
    assert len(servers["a"].requests) + len(servers["b"].requests) == len(answers)


async def test_admin_api_rejects_a_bad_policy_and_the_old_one_serves_on(servers, tmp_path: Path) -> None:
    gw = await _gateway(_policy(servers, 0), tmp_path)
    base = f"http://127.0.0.1:{gw.admin_port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession() as s:
            bad = _policy(servers, 0).replace("backend: b", "backend: nope")
            async with s.post(base + "/admin/policy", data=bad, headers=auth) as r:
                assert r.status == 400
                body = await r.json()
                assert any("unknown backend 'nope'" in p and ":9: routes[0].variants[1].backend" in p for p in body["problems"])
            async with s.post(base + "/admin/policy", data=_policy(servers, 50), headers={"Authorization": "Bearer x"}) as r:
                assert r.status == 401
            answers = await send_many(gw.http_port, [infer_request() for _ in range(50)])
            assert {a.headers[b"x-meshgate-variant"] for a in answers} == {b"stable"}
            async with s.post(base + "/admin/policy?dry_run=1", data=_policy(servers, 50), headers=auth) as r:
                dry = await r.json()
                assert dry["applied"] is False and "~ route demo: weight canary 0% -> 50%" in dry["diff"]
            assert gw.policies.version.number == 1
            async with s.post(base + "/admin/policy", data=_policy(servers, 50), headers=auth) as r:
                assert (await r.json())["version"]["number"] == 2
            async with s.post(base + "/admin/policy/rollback", json={}, headers=auth) as r:
                rolled = await r.json()
                assert rolled["version"]["number"] == 3 and rolled["version"]["note"] == "rollback to version 1"
            async with s.get(base + "/admin/policy/history", headers=auth) as r:
                history = await r.json()
            assert [v["source"] for v in history["versions"]] == ["start", "admin", "rollback"]
            assert history["versions"][0]["sha256"] == history["versions"][2]["sha256"]
    finally:
        await gw.stop()


async def test_policy_file_edits_apply_and_garbage_is_rejected(servers, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(_policy(servers, 0))
    gw = await _gateway(path.read_text(), tmp_path / "state", path=path, watch_interval=0)
    try:
        path.write_text(_policy(servers, 100))
        applied = await gw.policies.reload_file()
        assert applied is not None and applied.version.number == 2
        answers = await send_many(gw.http_port, [infer_request() for _ in range(20)])
        assert {a.headers[b"x-meshgate-variant"] for a in answers} == {b"canary"}
        path.write_text("routes: [this is: not valid")
        assert await gw.policies.reload_file() is None
        answers = await send_many(gw.http_port, [infer_request() for _ in range(20)])
        assert {a.status for a in answers} == {200} and gw.policies.version.number == 2
    finally:
        await gw.stop()


async def test_restart_on_the_same_policy_keeps_its_version(servers, tmp_path: Path) -> None:
    text = _policy(servers, 10)
    gw = await _gateway(text, tmp_path)
    await gw.policies.apply(_policy(servers, 20), source="admin", who="t")
    await gw.stop()
    again = await _gateway(_policy(servers, 20), tmp_path)
    try:
        assert again.policies.version.number == 2
    finally:
        await again.stop()
