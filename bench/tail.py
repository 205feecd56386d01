"""The tail-latency benchmark on an uneven fleet: meshgate's balancers against HAProxy and nginx.

Four fleet endpoints (bench/fleet_endpoint.py, pinned to CPU 1) serve the model; three fleets:
  * healthy: all four answer in 2 ms;
  * spiky:   endpoint 0 adds 50 ms to a random 30% of its requests;
  * slow:    endpoint 0 always takes 5x as long (10 ms).
For each fleet the endpoints are restarted with those settings and every target is measured in
the same run, one at a time (each proxy pinned to CPU 0, started fresh, stopped after): 1 s of
warm-up at the same load (not recorded), then the open-loop generator (bench/loadgen.py) at
--rate for --seconds, latency from the intended send time; p50 / p99 / p99.9, ok and errors.
Targets: meshgate with each balancer (round-robin, least-request, p2c-ewma, load-aware),
HAProxy roundrobin and leastconn (1 thread, http-reuse always), nginx least_conn (1 worker,
upstream keep-alive). A target that does not start is reported as "n/a (error)".

--kill (run on its own): healthy fleet through meshgate p2c-ewma, open loop for --seconds, and
endpoint 0 is killed with SIGKILL at the midpoint; the target is zero failed requests.

Every load is bounded in count and time; every process started is stopped (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from bench.loadgen import build_request, open_loop  # noqa: E402
from bench.run import BODY, PATH, ensure_tools, free_port  # noqa: E402

BALANCERS = ("round-robin", "least-request", "p2c-ewma", "load-aware")
TARGETS = tuple(f"meshgate-{b}" for b in BALANCERS) + ("haproxy-roundrobin", "haproxy-leastconn", "nginx-least_conn")
ENDPOINTS = 4
BASE_MS = 2.0
# Per fleet: the extra fleet_endpoint.py arguments of endpoint 0 (the others always run at base).
FLEETS: dict[str, list[str]] = {
    "healthy": [],
    "spiky": ["--spike-ms", "50", "--spike-share", "0.3"],
    "slow": ["--slow-factor", "5"],
}
FLEET_TEXT = {"healthy": "all 4 endpoints 2 ms",
              "spiky": "endpoint 0 adds 50 ms to 30% of its requests, others 2 ms",
              "slow": "endpoint 0 always 10 ms (5x), others 2 ms"}
PROXY_CPU, FLEET_CPU = "0", "1"


class Processes:
    """Everything this run started; each one's output goes to a log file in the work directory."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(self, name: str, argv: list[str], cpu: str, **kw: Any) -> subprocess.Popen[bytes]:
        log = self.work / f"{name}.log"
        with log.open("wb") as out:
            p = subprocess.Popen(["taskset", "-c", cpu, *argv], stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, **kw)
        self.procs.append(p)
        self.logs[p.pid] = log
        return p

    def log_tail(self, p: subprocess.Popen[bytes], lines: int = 3) -> str:
        try:
            text = self.logs[p.pid].read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " / ".join(line.strip() for line in text[-lines:])

    def stop(self, procs: list[subprocess.Popen[bytes]] | None = None) -> None:
        chosen = self.procs if procs is None else procs
        for p in chosen:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in chosen:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs = [p for p in self.procs if p not in chosen]


def wait_ready(port: int, proc: subprocess.Popen[bytes], procs: Processes, path: str | None = None,
               timeout: float = 30.0) -> None:
    """Until ``port`` accepts connections (and ``path`` answers 200); fails early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {procs.log_tail(proc)}")
        try:
            if path is None:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1.0):
                    return
            else:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1.0) as r:
                    if r.status == 200:
                        return
        except urllib.error.HTTPError:
            if path is None:
                return  # something answers HTTP: listening
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"not ready on {port} after {timeout:g}s: {procs.log_tail(proc)}")


class Fleet:
    def __init__(self, procs: Processes) -> None:
        self.procs = procs
        self.ports: list[int] = []
        self.members: list[subprocess.Popen[bytes]] = []

    def start(self, fleet: str) -> None:
        self.stop()
        self.ports = [free_port() for _ in range(ENDPOINTS)]
        for i, port in enumerate(self.ports):
            extra = FLEETS[fleet] if i == 0 else []
            self.members.append(self.procs.start(
                f"endpoint-{fleet}-{i}", [sys.executable, str(HERE / "fleet_endpoint.py"), str(port),
                                          "--base-ms", f"{BASE_MS:g}", *extra], FLEET_CPU))
        for port, p in zip(self.ports, self.members, strict=True):
            wait_ready(port, p, self.procs, "/v2/health/ready")

    def answered(self) -> list[int] | None:
        """Each endpoint's count of inference requests answered (None if one cannot be read)."""
        counts = []
        try:
            for port in self.ports:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2.0) as r:
                    text = r.read().decode()
                counts.append(int(text.rsplit("meshgate_fleet_requests_total ", 1)[1].split()[0]))
        except (OSError, IndexError, ValueError):
            return None
        return counts

    def stop(self) -> None:
        self.procs.stop(self.members)
        self.members = []


def meshgate_policy(work: Path, listen: int, admin: int, fleet: list[int], balancer: str) -> Path:
    scrape = ", scrape_interval: 100ms" if balancer == "load-aware" else ""
    conf = work / f"meshgate-{balancer}-{listen}.yaml"
    conf.write_text(f"""
listen: {{http: 127.0.0.1:{listen}, admin: 127.0.0.1:{admin}}}
backends:
  fleet:
    endpoints: [{", ".join(f"127.0.0.1:{p}" for p in fleet)}]
    model: demo
    timeout: 5s
    balancer: {{kind: {balancer}{scrape}}}
    health: {{interval: 1s}}
routes:
  - {{model: demo, backend: fleet}}
""")
    return conf


def haproxy_conf(work: Path, listen: int, fleet: list[int], balance: str) -> Path:
    conf = work / f"haproxy-{balance}-{listen}.cfg"
    servers = "\n".join(f"  server s{i} 127.0.0.1:{p} maxconn 1024 check inter 1s" for i, p in enumerate(fleet))
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
  balance {balance}
  http-reuse always
  option httpchk GET /v2/health/ready
{servers}
""")
    return conf


def nginx_conf(work: Path, listen: int, fleet: list[int]) -> Path:
    name = f"nginx-{listen}"
    conf = work / f"{name}.conf"
    servers = " ".join(f"server 127.0.0.1:{p};" for p in fleet)
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
  upstream be {{ least_conn; {servers} keepalive 128; }}
  server {{ listen 127.0.0.1:{listen};
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
}}
""")
    return conf


def start_target(name: str, fleet: list[int], procs: Processes, work: Path) -> tuple[int, subprocess.Popen[bytes]]:
    """Start one proxy in front of ``fleet``; returns its data port once it serves."""
    port = free_port()
    if name.startswith("meshgate-"):
        balancer = name.removeprefix("meshgate-")
        admin = free_port()
        policy = meshgate_policy(work, port, admin, fleet, balancer)
        p = procs.start(name, [sys.executable, "-m", "gateway.cli", "serve", "--no-watch", "--state-dir",
                               str(work / f"state-{port}"), str(policy)], PROXY_CPU, cwd=str(ROOT))
        wait_ready(admin, p, procs, "/ready")
        wait_ready(port, p, procs)
    elif name.startswith("haproxy-"):
        p = procs.start(name, ["haproxy", "-db", "-f", str(haproxy_conf(work, port, fleet,
                                                                          name.removeprefix("haproxy-")))], PROXY_CPU)
        wait_ready(port, p, procs)
    elif name == "nginx-least_conn":
        p = procs.start(name, ["nginx", "-c", str(nginx_conf(work, port, fleet))], PROXY_CPU)
        wait_ready(port, p, procs)
    else:
        raise ValueError(f"unknown target {name!r}")
    return port, p


def run_load(port: int, rate: float, seconds: float,
             at_midpoint: Callable[[], None] | None = None) -> dict[str, float]:
    """One open-loop run: at most rate*seconds requests, and a hard deadline."""
    request = build_request("127.0.0.1", port, PATH, BODY)

    async def go() -> Any:
        if at_midpoint is not None:
            asyncio.get_running_loop().call_later(0.05 + seconds / 2, at_midpoint)
        return await asyncio.wait_for(open_loop("127.0.0.1", port, request, rate, seconds), seconds + 30)

    r = asyncio.run(go())
    return {"sent": r.sent, "ok": r.ok, "errors": r.errors, "p50_ms": r.percentile(50) * 1e3,
            "p99_ms": r.percentile(99) * 1e3, "p999_ms": r.percentile(99.9) * 1e3,
            "late_start_max_ms": r.late_start_max * 1e3}


def measure(name: str, fleet: Fleet, procs: Processes, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    p = None
    try:
        port, p = start_target(name, fleet.ports, procs, work)
        run_load(port, args.rate, args.warmup)  # not recorded: connections, balancer state
        before = fleet.answered()
        result: dict[str, Any] = run_load(port, args.rate, args.seconds)
        after = fleet.answered()
        served = [a - b for a, b in zip(after, before, strict=True)] if before and after else None
        result["endpoint0_share"] = served[0] / sum(served) if served and sum(served) else None
        return result
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # one target failing must not end the run
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        if p is not None:
            procs.stop([p])


def fmt(value: float) -> str:
    return f"{value:.3f}" if value == value else "-"  # NaN when nothing succeeded


def print_table(fleet: str, results: dict[str, dict[str, Any]]) -> None:
    print(f"\n### {fleet}: {FLEET_TEXT[fleet]}\n")
    header = (f"| {'target':<22} | {'p50 ms':>11} | {'p99 ms':>8} | {'p99.9 ms':>8} | {'ok':>7} | {'errors':>6} "
              f"| {'ep0 share':>9} | {'gen late max ms':>15} |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    notes = []
    for name, r in results.items():
        if "error" in r:
            cells = ["n/a (error)", "", "", "", "", "", ""]
            notes.append(f"{name}: {r['error']}")
        else:
            cells = [fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(r["p999_ms"]), f"{r['ok']:,}", f"{r['errors']:,}",
                     "-" if r.get("endpoint0_share") is None else f"{r['endpoint0_share'] * 100:.1f}%",
                     f"{r['late_start_max_ms']:.1f}"]
        widths = (11, 8, 8, 7, 6, 9, 15)
        print(f"| {name:<22} | " + " | ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)) + " |")
    for note in notes:
        print(f"\n{note}")


def p99(all_results: dict[str, dict[str, dict[str, Any]]], fleet: str, target: str) -> float | None:
    r = all_results.get(fleet, {}).get(target)
    if not r or "error" in r or r["p99_ms"] != r["p99_ms"]:
        return None
    return float(r["p99_ms"])


def print_summary(all_results: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    checks = [
        ("p2c-ewma spiky p99 <= 1.3x p2c-ewma healthy p99", ("spiky", "meshgate-p2c-ewma"),
         ("healthy", "meshgate-p2c-ewma"), 1.3),
        ("p2c-ewma spiky p99 <= 0.2x HAProxy leastconn spiky p99", ("spiky", "meshgate-p2c-ewma"),
         ("spiky", "haproxy-leastconn"), 0.2),
        ("p2c-ewma slow p99 <= 0.8x HAProxy leastconn slow p99", ("slow", "meshgate-p2c-ewma"),
         ("slow", "haproxy-leastconn"), 0.8),
    ]
    print("\nep0 share: the part of the measured requests endpoint 0 answered (25% is an even spread); "
          "gen late max: the generator's worst lateness against its schedule.")
    print("\n### targets\n")
    print("| target | measured | met |")
    print("|---|---|---|")
    out = []
    for text, (f1, t1), (f2, t2), bound in checks:
        a, b = p99(all_results, f1, t1), p99(all_results, f2, t2)
        if a is None or b is None:
            print(f"| {text} | not measured in this run | n/a |")
            out.append({"target": text, "ratio": None, "met": None})
            continue
        ratio = a / b
        met = ratio <= bound
        print(f"| {text} | {a:.3f} / {b:.3f} ms = {ratio:.2f}x | {'met' if met else 'missed'} |")
        out.append({"target": text, "numerator_ms": a, "denominator_ms": b, "ratio": ratio, "bound": bound,
                    "met": met})
    return out


def kill_run(procs: Processes, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    fleet = Fleet(procs)
    p = None
    try:
        fleet.start("healthy")
        print("kill: meshgate-p2c-ewma, endpoint 0 killed (SIGKILL) at the midpoint...", flush=True)
        port, p = start_target("meshgate-p2c-ewma", fleet.ports, procs, work)
        run_load(port, args.rate, args.warmup)
        victim = fleet.members[0]
        killed_at: list[float] = []

        def kill() -> None:
            victim.kill()
            killed_at.append(time.monotonic())

        started = time.monotonic()
        result: dict[str, Any] = run_load(port, args.rate, args.seconds, at_midpoint=kill)
        result["killed_after_s"] = killed_at[0] - started if killed_at else None
        result["endpoint0_returncode"] = victim.poll()  # -9 once killed
        return result
    finally:
        if p is not None:
            procs.stop([p])
        fleet.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured open-loop run per target and fleet")
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop rate, requests/s")
    parser.add_argument("--warmup", type=float, default=1.0, help="unrecorded warm-up at the same rate, seconds")
    parser.add_argument("--only", nargs="*", help=f"targets to run (substring match; default all: {', '.join(TARGETS)})")
    parser.add_argument("--fleets", nargs="*", choices=list(FLEETS), help="fleets to run (default: all)")
    parser.add_argument("--kill", action="store_true", help="the kill -9 test instead of the fleet tables")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    targets = [t for t in TARGETS if not args.only or any(o in t for o in args.only)]
    fleets = args.fleets or list(FLEETS)
    if not targets and not args.kill:
        parser.error(f"--only matches no target of {', '.join(TARGETS)}")
    ensure_tools()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(FLEET_CPU)})  # the load generator (this process) beside the fleet
    # SIGTERM unwinds like Ctrl-C, so the finally below stops every process started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    machine = (f"machine: {platform.node()} {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
               f"python {platform.python_version()}; open loop {args.rate:g} req/s for {args.seconds:g}s per target "
               f"(+{args.warmup:g}s warm-up); fleet: {ENDPOINTS} x bench/fleet_endpoint.py on CPU {FLEET_CPU}, "
               f"proxies on CPU {PROXY_CPU}")
    print(f"command: {command}\n{machine}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="meshgate-tail-"))
    procs = Processes(work)
    report: dict[str, Any] = {"command": command, "machine": machine, "rate": args.rate, "seconds": args.seconds}
    all_results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        if args.kill:
            report["kill"] = kill_run(procs, work, args)
        else:
            fleet = Fleet(procs)
            for name in fleets:
                print(f"fleet {name}: starting endpoints...", flush=True)
                fleet.start(name)
                all_results[name] = {}
                for t in targets:
                    print(f"  {name} / {t}...", flush=True)
                    all_results[name][t] = measure(t, fleet, procs, work, args)
                fleet.stop()
    finally:
        procs.stop()

    print(f"\ncommand: {command}\n{machine}")
    if args.kill:
        k = report["kill"]
        print("\n### kill -9 of endpoint 0 at the midpoint (healthy fleet, meshgate p2c-ewma)\n")
        print("| sent | ok | errors | p50 ms | p99 ms | p99.9 ms | killed after s | zero failed requests |")
        print("|---|---|---|---|---|---|---|---|")
        killed = (f"{k['killed_after_s']:.1f} (exit {k['endpoint0_returncode']})" if k["killed_after_s"] is not None
                  else "not killed")
        print(f"| {k['sent']:,} | {k['ok']:,} | {k['errors']:,} | {fmt(k['p50_ms'])} | {fmt(k['p99_ms'])} "
              f"| {fmt(k['p999_ms'])} | {killed} | {'met' if k['errors'] == 0 else 'missed'} |")
    else:
        for name, results in all_results.items():
            print_table(name, results)
        report["fleets"] = all_results
        report["targets"] = print_summary(all_results)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
