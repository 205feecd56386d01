"""The local fleet `meshgate up` starts: one reference model server process per launched endpoint.

It starts them, waits until each says ready, and stops them all (no orphans: each child is
also told by the kernel to exit if meshgate dies).
"""

from __future__ import annotations

import asyncio
import ctypes
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from policies.model import Policy

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Member:
    backend: str
    address: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None


class FleetError(Exception):
    pass


class Fleet:
    def __init__(self, policy: Policy, log_dir: str | None = None) -> None:
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="meshgate-fleet-"))
        self.members: list[Member] = []
        for name, backend in policy.backends.items():
            launch = backend.launch
            if launch is None:
                continue
            for endpoint in backend.endpoints:
                host, _, port = endpoint.address.rpartition(":")
                argv = [sys.executable, "-m", "backends.reference", "--model", launch.model or backend.model or name,
                        "--host", host, "--port", port, "--variant", str(launch.variant), "--device", launch.device,
                        "--max-batch-size", str(launch.max_batch_size),
                        "--max-queue-delay-ms", f"{launch.max_queue_delay * 1000:g}"]
                self.members.append(Member(name, endpoint.address, argv,
                                           self.log_dir / f"{name}-{port}.log"))

    def spawn(self) -> None:
        for m in self.members:
            with open(m.log_path, "wb") as log:  # the child keeps its own descriptor
                m.process = subprocess.Popen(m.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             preexec_fn=_die_with_parent)

    async def wait_ready(self, timeout: float = 120.0) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            await asyncio.gather(*(self._wait_ready(session, m, timeout) for m in self.members))

    async def _wait_ready(self, session: aiohttp.ClientSession, m: Member, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        url = f"http://{m.address}/v2/health/ready"
        assert m.process is not None
        while True:
            code = m.process.poll()
            if code is not None:
                tail = m.log_path.read_text(errors="replace")[-2000:]
                raise FleetError(f"reference server for {m.backend} on {m.address} exited with {code}:\n{tail}")
            try:
                async with session.get(url) as r:
                    if r.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            if loop.time() > deadline:
                raise FleetError(f"reference server for {m.backend} on {m.address} not ready after {timeout:g}s "
                                 f"(log: {m.log_path})")
            await asyncio.sleep(0.1)  # another process: polling its readiness endpoint is the signal

    def stop(self, grace: float = 10.0) -> None:
        running = [m.process for m in self.members if m.process is not None and m.process.poll() is None]
        for p in running:
            p.send_signal(signal.SIGTERM)
        for p in running:
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def pids(self) -> list[int]:
        return [m.process.pid for m in self.members if m.process is not None]
