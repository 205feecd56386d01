"""The data-path benchmark: direct to the backend, through meshgate, nginx, HAProxy and a plain
aiohttp proxy, all in one run against the same static backend, printed as one table.

For each proxy (one process each, pinned to CPU 0; backend and load generators on CPU 1):
  * saturation: wrk, closed loop, fixed connections and duration; proxy CPU seconds per request
    from /proc/PID/stat (utime + stime, all threads) around the run;
  * latency: the open-loop generator (bench/loadgen.py) at a fixed moderate rate; p50/p99
    measured from the intended send time, and added latency over direct.
Installs nginx, haproxy and wrk from Debian when missing. Every load is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from bench.loadgen import build_request, open_loop  # noqa: E402

BODY = ('{"inputs":[{"name":"features","shape":[1,16],"datatype":"FP32","data":['
        + ",".join(["0.5"] * 16) + "]}]}").encode()
ANSWER = ('{"model_name":"demo","model_version":"1","outputs":[{"name":"probabilities","datatype":"FP32",'
          '"shape":[1,4],"data":[0.1,0.2,0.3,0.4]}]}')
PATH = "/v2/models/demo/infer"
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_tools() -> None:
    missing = [t for t in ("nginx", "haproxy", "wrk") if shutil.which(t) is None]
    if missing:
        print(f"installing {', '.join(missing)} from Debian...", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env,
                       stdout=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


@dataclass
class Target:
    name: str
    port: int
    pid: int | None  # the proxy process whose CPU is measured (None for direct)


class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], cpu: str, **kw: object) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(["taskset", "-c", cpu, *argv], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def nginx_conf(work: Path, listen: int, body: str, upstream: int | None, extra_ports: tuple[int, ...] = ()) -> Path:
    if upstream is None:
        location = f"default_type application/json; return 200 '{body}';"
        upstream_block = ""
    else:
        upstream_block = f"upstream be {{ server 127.0.0.1:{upstream}; keepalive 128; }}"
        location = 'proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";'
    name = f"nginx-{listen}"
    conf = work / f"{name}.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {work}/{name}.pid;
error_log {work}/{name}.err;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {work}/{name}-body;
  proxy_temp_path {work}/{name}-proxy;
  {upstream_block}
  server {{ listen 127.0.0.1:{listen}; {"".join(f"listen 127.0.0.1:{p}; " for p in extra_ports)}location / {{ {location} }} }}
}}
""")
    return conf


def haproxy_conf(work: Path, listen: int, upstream: int) -> Path:
    conf = work / "haproxy.cfg"
    conf.write_text(f"""
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend f
  bind 127.0.0.1:{listen}
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:{upstream} maxconn 1024
""")
    return conf


def meshgate_policy(work: Path, listen: int, admin: int, upstream: int) -> Path:
    conf = work / "meshgate.yaml"
    conf.write_text(f"""
listen: {{http: 127.0.0.1:{listen}, admin: 127.0.0.1:{admin}}}
backends:
  static: {{endpoints: [127.0.0.1:{upstream}], model: demo, timeout: 10s}}
routes:
  - {{model: demo, backend: static}}
""")
    return conf


def meshgate_split_policy(work: Path, listen: int, admin: int, upstreams: list[int]) -> Path:
    """A 3-way weighted split plus a 10% mirror, each arm its own backend (port)."""
    a, b, c, shadow = upstreams
    conf = work / "meshgate-split.yaml"
    conf.write_text(f"""
listen: {{http: 127.0.0.1:{listen}, admin: 127.0.0.1:{admin}}}
backends:
  a: {{endpoints: [127.0.0.1:{a}], model: demo, timeout: 10s}}
  b: {{endpoints: [127.0.0.1:{b}], model: demo, timeout: 10s}}
  c: {{endpoints: [127.0.0.1:{c}], model: demo, timeout: 10s}}
  shadow: {{endpoints: [127.0.0.1:{shadow}], model: demo, timeout: 10s}}
routes:
  - model: demo
    variants: [{{backend: a, weight: 80%}}, {{backend: b, weight: 15%}}, {{backend: c, weight: 5%}}]
    mirror: {{backend: shadow, percent: 10%}}
""")
    return conf


def run_wrk(port: int, seconds: int, connections: int, work: Path) -> tuple[float, int]:
    script = work / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = '{BODY.decode()}'\n")
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
                          f"http://127.0.0.1:{port}{PATH}"], capture_output=True, text=True, check=True,
                         timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if non2xx or errors:
        print(f"  wrk saw errors on {port}: {non2xx and non2xx.group(0)} {errors and errors.group(0)}", flush=True)
    return rps, total


def measure(target: Target, args: argparse.Namespace, work: Path) -> dict[str, float]:
    run_wrk(target.port, 2, args.connections, work)  # warm-up: connections, caches
    before = cpu_seconds(target.pid) if target.pid else 0.0
    rps, total = run_wrk(target.port, args.seconds, args.connections, work)
    cpu = cpu_seconds(target.pid) - before if target.pid else 0.0
    request = build_request("127.0.0.1", target.port, PATH, BODY)
    result = asyncio.run(open_loop("127.0.0.1", target.port, request, args.rate, args.latency_seconds))
    return {"rps": rps, "requests": total, "cpu_us_per_req": cpu / total * 1e6 if target.pid else float("nan"),
            "p50_ms": result.percentile(50) * 1e3, "p99_ms": result.percentile(99) * 1e3,
            "open_loop_errors": result.errors, "open_loop_ok": result.ok}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="wrk run length per target")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop rate, requests/s")
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="open-loop run length")
    parser.add_argument("--only", nargs="*", help="targets to run (default: all)")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    ensure_tools()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass

    work = Path(tempfile.mkdtemp(prefix="meshgate-bench-"))
    procs = Processes()
    try:
        backend = free_port()
        arms = [free_port() for _ in range(4)]
        procs.start(["nginx", "-c", str(nginx_conf(work, backend, ANSWER, None, tuple(arms)))], "1")
        wait_port(backend)
        targets = [Target("direct (nginx static)", backend, None)]

        port, admin = free_port(), free_port()
        p = procs.start([sys.executable, "-m", "gateway.cli", "serve", "--no-watch", "--state-dir", str(work / "s1"),
                         str(meshgate_policy(work, port, admin, backend))], "0", cwd=str(ROOT))
        targets.append(Target("meshgate", port, p.pid))

        port, admin = free_port(), free_port()
        p = procs.start([sys.executable, "-m", "gateway.cli", "serve", "--no-watch", "--state-dir", str(work / "s2"),
                         str(meshgate_split_policy(work, port, admin, arms))], "0", cwd=str(ROOT))
        targets.append(Target("meshgate 3-way split+mirror", port, p.pid))

        port = free_port()
        p = procs.start([sys.executable, str(HERE / "alternatives" / "aiohttp_proxy.py"), str(port), str(backend)],
                        "0")
        targets.append(Target("aiohttp proxy (alternative)", port, p.pid))

        port = free_port()
        p = procs.start(["nginx", "-c", str(nginx_conf(work, port, ANSWER, backend))], "0")
        targets.append(Target("nginx proxy", port, 0))
        nginx_port = port

        port = free_port()
        p = procs.start(["haproxy", "-db", "-f", str(haproxy_conf(work, port, backend))], "0")
        targets.append(Target("haproxy", port, p.pid))

        for t in targets:
            wait_port(t.port)
        # nginx's worker, not its master, carries the load.
        master = int((work / f"nginx-{nginx_port}.pid").read_text())
        worker = int(Path(f"/proc/{master}/task/{master}/children").read_text().split()[0])
        for t in targets:
            if t.port == nginx_port:
                t.pid = worker

        if args.only:
            targets = [t for t in targets if any(o in t.name for o in args.only) or t.pid is None]
        results: dict[str, dict[str, float]] = {}
        for t in targets:
            print(f"measuring {t.name}...", flush=True)
            results[t.name] = measure(t, args, work)
    finally:
        procs.stop()

    direct = results[targets[0].name]
    ref = results.get("haproxy")
    print()
    print(f"machine: {platform.node()} {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
          f"python {platform.python_version()}; wrk -t1 -c{args.connections} -d{args.seconds}s; "
          f"open loop {args.rate:g} req/s for {args.latency_seconds:g}s")
    header = (f"| {'target':<28} | {'req/s (wrk)':>11} | {'CPU us/req':>10} | {'p50 ms':>7} | {'p99 ms':>7} "
              f"| {'+p50 ms':>7} | {'+p99 ms':>7} | {'rps vs haproxy':>14} | {'CPU vs haproxy':>14} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, r in results.items():
        proxied = r is not direct
        cells = [f"{r['rps']:,.0f}", "-", f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", "-", "-", "-", "-"]
        if proxied:
            cells[1] = f"{r['cpu_us_per_req']:.1f}"
            cells[4] = f"{r['p50_ms'] - direct['p50_ms']:.3f}"
            cells[5] = f"{r['p99_ms'] - direct['p99_ms']:.3f}"
            if ref is not None:
                cells[6] = f"{r['rps'] / ref['rps']:.2f}x"
                cells[7] = f"{r['cpu_us_per_req'] / ref['cpu_us_per_req']:.2f}x"
        widths = (11, 10, 7, 7, 7, 7, 14, 14)
        print(f"| {name:<28} | " + " | ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)) + " |")
    single, split = results.get("meshgate"), results.get("meshgate 3-way split+mirror")
    if single and split:
        print(f"\nmeshgate 3-way split + 10% mirror vs single-backend route: throughput "
              f"{split['rps'] / single['rps']:.2f}x, CPU per client request {split['cpu_us_per_req'] / single['cpu_us_per_req']:.2f}x "
              "(the mirror's extra upstream call included)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
