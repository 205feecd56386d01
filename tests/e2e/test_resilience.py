"""Resilience with real reference servers: kill -9 one of three at load, and clients see no error."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.client import infer_request, send_many
from tests.fixtures.gateway import running_gateway
from tests.fixtures.reference import ROOT, free_port

pytestmark = pytest.mark.e2e

BODY = json.dumps({"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32",
                               "data": [0.25] * 16}]}).encode()


def _start(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "backends.reference", "--model", "demo", "--port", str(port),
                             "--device", "cpu"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


async def test_kill_9_of_one_endpoint_at_load_costs_no_client_error(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    procs = [_start(p) for p in ports]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not all(await asyncio.gather(*(asyncio.to_thread(_ready, p) for p in ports))):
            assert loop.time() < deadline, "reference servers not ready"
            await asyncio.sleep(0.1)  # other processes: their readiness endpoints are the signal
        policy = f"""
backends:
  fleet:
    endpoints: [{", ".join(f"127.0.0.1:{p}" for p in ports)}]
    model: demo
    timeout: 5s
    health: {{interval: 200ms}}
routes:
  - {{model: demo, backend: fleet}}
"""
        async with running_gateway(policy) as gw:
            request = infer_request(body=BODY)
            before = await send_many(gw.http_port, [request] * 300)
            victim = procs[1]
            load = asyncio.ensure_future(send_many(gw.http_port, [request] * 1500, connections=8, window=4))
            await asyncio.sleep(0.05)  # let the load get going before the kill
            os.kill(victim.pid, signal.SIGKILL)
            during = await load
            after = await send_many(gw.http_port, [request] * 300)
        statuses = [a.status for a in before + during + after]
        assert statuses.count(200) == len(statuses), {s: statuses.count(s) for s in set(statuses)}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
