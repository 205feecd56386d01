"""`meshgate up` as an SRE runs it: starts the fleet and the gateway, serves, and leaves nothing behind."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.http as httpclient

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    """Lines of the child's stdout up to the one containing ``marker`` (bounded by ``timeout``).

    A reader thread feeds a queue: select() on a buffered text pipe misses lines already buffered."""
    lines: list[str] = []
    found: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            found.put(line)
        found.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = found.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} not seen in {timeout}s; output so far:\n{''.join(lines)}")


def test_up_serves_the_fleet_and_sigterm_leaves_no_process(tmp_path: Path) -> None:
    http, admin, a, b, c = _free_ports(5)
    policy = tmp_path / "fleet.yaml"
    policy.write_text(f"""
listen: {{http: 127.0.0.1:{http}, admin: 127.0.0.1:{admin}}}
backends:
  demo-v1:
    model: demo
    endpoints: [127.0.0.1:{a}, 127.0.0.1:{b}]
    launch: {{variant: 1, device: cpu}}
  demo-v2:
    model: demo
    endpoints: [127.0.0.1:{c}]
    launch: {{variant: 2, device: cpu}}
routes:
  - {{model: demo, backend: demo-v1}}
  - {{model: demo-next, backend: demo-v2}}
""")
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "up", str(policy),
                             "--state-dir", str(tmp_path / "state")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        printed = "".join(_read_until(proc, "Ctrl-C stops", timeout=120))
        assert f"http://127.0.0.1:{http}/v2/models/demo/infer" in printed  # the curl line
        assert "tritonclient" in printed
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == 3

        client = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
        x = httpclient.InferInput("features", [4, 16], "FP32")
        x.set_data_from_numpy(np.random.default_rng(0).random((4, 16), dtype=np.float32))
        for model in ("demo", "demo-next"):
            probabilities = client.infer(model, [x]).as_numpy("probabilities")
            assert probabilities.shape == (4, 4)
            np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left behind: {alive}"


def test_up_reports_a_server_that_cannot_start(tmp_path: Path) -> None:
    http, admin = _free_ports(2)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    policy = tmp_path / "fleet.yaml"
    policy.write_text(f"""
listen: {{http: 127.0.0.1:{http}, admin: 127.0.0.1:{admin}}}
backends:
  b: {{model: demo, endpoints: [127.0.0.1:{taken}], launch: {{device: cpu}}}}
routes: [{{model: demo, backend: b}}]
""")
    try:
        result = subprocess.run([sys.executable, "-m", "gateway.cli", "up", str(policy),
                                 "--state-dir", str(tmp_path)], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
    finally:
        blocker.close()
    assert result.returncode == 1
    assert f"reference server for b on 127.0.0.1:{taken} exited" in result.stderr


def test_policy_validate_prints_file_line_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("backends:\n  b:\n    endpoints: [127.0.0.1:1]\n    timeout: soon\n")
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "policy", "validate", str(bad),
                             str(ROOT / "examples" / "quickstart.yaml")], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert f"{bad}:4: backends.b.timeout: 'soon' is not a duration" in result.stderr
    assert "quickstart.yaml: ok (2 backends, 1 routes)" in result.stdout
    assert "demo: demo -> stable 90% (demo-v1), canary 10% (demo-v2); sticky on header:x-user-id" in result.stdout


def test_serve_reloads_on_sighup_and_keeps_serving_on_garbage(tmp_path: Path) -> None:
    http, admin = _free_ports(2)
    policy = tmp_path / "policy.yaml"
    base = f"listen: {{http: 127.0.0.1:{http}, admin: 127.0.0.1:{admin}}}\nbackends:\n  b: {{endpoints: [127.0.0.1:9]}}\n"
    policy.write_text(base + "routes: [{model: one, backend: b}]\n")
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", str(policy), "--no-watch",
                             "--state-dir", str(state)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        _read_until(proc, "admin token for this session", timeout=60)
        token = (state / "admin-token").read_text().strip()

        def history() -> dict:
            import json
            import urllib.request
            req = urllib.request.Request(f"http://127.0.0.1:{admin}/admin/policy/history",
                                         headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())

        def wait_for(check, what: str) -> None:
            deadline = time.monotonic() + 20
            while not check():
                assert time.monotonic() < deadline, what
                time.sleep(0.05)  # another process: polling its admin API is the only signal

        policy.write_text(base + "routes: [{model: two, backend: b}]\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: history()["current"] == 2, "SIGHUP did not apply the edited policy")
        assert [v["source"] for v in history()["versions"]] == ["start", "sighup"]
        policy.write_text("routes: [oops")
        proc.send_signal(signal.SIGHUP)

        def rejected() -> bool:
            with urllib_get(f"http://127.0.0.1:{admin}/metrics") as r:
                return 'meshgate_policy_reloads_total{result="rejected",source="sighup"} 1.0' in r.read().decode()

        wait_for(rejected, "the garbage policy was not looked at")
        with urllib_get(f"http://127.0.0.1:{http}/v2/health/ready") as r:
            assert r.status == 200  # still serving
        assert history()["current"] == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def urllib_get(url: str):
    import urllib.request
    return urllib.request.urlopen(url, timeout=5)
