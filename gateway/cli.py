"""The ``meshgate`` command: thin wrappers that parse arguments, call the library and print."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway.admin_client import AdminClient, AdminError, read_token
from policies.loader import PolicyError, load_policy
from policies.model import Policy


def _event_loop_policy() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; degrade rather than fail
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class _Signals:
    """SIGINT/SIGTERM stop, SIGHUP reloads; installed before anything starts, so no signal that
    arrives during start-up falls to the default action (which for SIGHUP is to die)."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.on_hup: Callable[[], object] | None = None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._hup)

    def _hup(self) -> None:
        if self.on_hup is not None:
            self.on_hup()

    async def until_stopped(self, work: Awaitable[object] | None = None) -> bool:
        """Waits for ``work`` (True when it finished) or for a stop signal (False)."""
        if work is None:
            await self.stop.wait()
            return False
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if task.done():
            task.result()
            return True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False


def _admin_token(policy_hash: str | None, state_dir: Path) -> tuple[str | None, str | None]:
    """(token to print or None, sha256 to check). Without one in the policy, a session token is made
    and saved (0600) in the state directory for the `meshgate policy` commands."""
    if policy_hash is not None:
        return None, policy_hash
    token = secrets.token_urlsafe(24)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "admin-token"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(token + "\n")
    return token, hashlib.sha256(token.encode()).hexdigest()


def _how_to_call(http_port: int, model: str) -> str:
    url = f"http://127.0.0.1:{http_port}"
    body = '{"inputs":[{"name":"features","shape":[1,16],"datatype":"FP32","data":[' + ",".join(["0.5"] * 16) + "]}]}"
    return (
        f"\nmeshgate is serving model {model!r} on {url}\n\n"
        f"  curl -s {url}/v2/models/{model}/infer -H 'content-type: application/json' \\\n"
        f"       -d '{body}'\n\n"
        f"  python -c \"import numpy as np, tritonclient.http as t; c=t.InferenceServerClient('127.0.0.1:{http_port}'); "
        f"i=t.InferInput('features',[1,16],'FP32'); i.set_data_from_numpy(np.ones((1,16),np.float32)); "
        f"print(c.infer('{model}',[i]).as_numpy('probabilities'))\"\n\n"
        "Ctrl-C stops the gateway and every server it started.\n"
    )


async def _serve(args: argparse.Namespace, launch: bool, policy: Policy, text: str) -> int:
    from gateway.app import Gateway
    from gateway.fleet import Fleet, FleetError

    state_dir = Path(args.state_dir)
    token, token_hash = _admin_token(policy.admin.token_sha256, state_dir)
    signals = _Signals()
    fleet = Fleet(policy) if launch else None
    gateway = None
    try:
        if fleet is not None and fleet.members:
            print(f"starting {len(fleet.members)} reference model server(s); logs in {fleet.log_dir}", flush=True)
            fleet.spawn()
            if not await signals.until_stopped(fleet.wait_ready()):
                print("stopping...", flush=True)
                return 0
        gateway = Gateway(policy, text=text, path=args.policy, state_dir=state_dir, admin_token_sha256=token_hash,
                          http=args.http, admin=args.admin, watch_interval=0 if args.no_watch else 1.0)
        await gateway.start()
        models = ", ".join(sorted(gateway.snapshots.current.routes)) or "(none)"
        print(f"gateway ready: V2 REST http://{gateway.http_address.rsplit(':', 1)[0]}:{gateway.http_port} "
              f"admin http://{gateway.admin_address.rsplit(':', 1)[0]}:{gateway.admin_port} models: {models}",
              flush=True)
        print(f"policy {args.policy} is version {gateway.policies.version.number}; edits to it apply live "
              f"(history in {state_dir / 'history'})", flush=True)
        if token is not None:
            print(f"admin token for this session saved in {state_dir / 'admin-token'} "
                  "(the `meshgate policy` commands read it)", flush=True)
        routes = sorted(gateway.snapshots.current.routes)
        if launch and routes:
            print(_how_to_call(gateway.http_port, routes[0]), flush=True)
        controller = gateway.policies
        signals.on_hup = lambda: asyncio.ensure_future(controller.reload_file("sighup"))
        await signals.until_stopped()
        print("stopping...", flush=True)
        return 0
    except FleetError as e:
        print(f"meshgate: {e}", file=sys.stderr)
        return 1
    finally:
        if gateway is not None:
            await gateway.stop()
        if fleet is not None:
            fleet.stop()


def _cmd_up(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args, True, load_policy(args.policy), Path(args.policy).read_text()))


def _cmd_serve(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args, False, load_policy(args.policy), Path(args.policy).read_text()))


def _cmd_validate(args: argparse.Namespace) -> int:
    from policies.diff import summarize

    failed = 0
    for path in args.files:
        try:
            policy = load_policy(path)
        except PolicyError as e:
            print(e, file=sys.stderr)
            failed += 1
        else:
            print(f"{path}: ok ({len(policy.backends)} backends, {len(policy.routes)} routes)")
            for line in summarize(policy):
                print(f"  {line}")
    return 1 if failed else 0


def _client(args: argparse.Namespace) -> AdminClient:
    return AdminClient(args.admin_url, read_token(args.token, Path(args.state_dir)))


def _cmd_apply(args: argparse.Namespace) -> int:
    text = Path(args.file).read_text()
    load_policy(args.file)  # the same checks locally first, with this file's name in every error
    query = f"?filename={args.file}" + ("&dry_run=1" if args.dry_run else "")
    result = _client(args).call("POST", "/admin/policy" + query, text.encode(), "application/yaml")
    version = result["version"]["number"]
    if args.dry_run:
        print(f"dry run against live version {version}; nothing applied")
    elif result["applied"]:
        print(f"applied as version {version}")
    else:
        print(f"identical to live version {version}; nothing applied")
    print("\n".join(result["diff"]) or "no routing change")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    result = _client(args).call("GET", "/admin/policy/history")
    print(f"{'version':>7}  {'applied (UTC)':<20}  {'source':<9} {'sha256':<12}  who / note")
    for v in result["versions"]:
        mark = "*" if v["number"] == result["current"] else " "
        print(f"{v['number']:>6}{mark}  {v['applied_at']:<20}  {v['source']:<9} {v['sha256'][:12]}  "
              f"{v['who']}{' / ' + v['note'] if v['note'] else ''}")
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from policies.diff import diff_policies

    if Path(args.a).is_file() and Path(args.b).is_file():
        lines = diff_policies(load_policy(args.a), load_policy(args.b))
    else:
        lines = _client(args).call("GET", f"/admin/policy/diff?from={args.a}&to={args.b}")["diff"]
    print("\n".join(lines) or "no routing change")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    body = json.dumps({"version": args.version} if args.version is not None else {}).encode()
    result = _client(args).call("POST", "/admin/policy/rollback", body)
    print(f"rolled back: now version {result['version']['number']} ({result['version']['note']})")
    print("\n".join(result["diff"]) or "no routing change")
    return 0


def _cmd_reference(args: argparse.Namespace) -> int:
    from policies.reference import render

    print(render())
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from policies.model import Policy

    print(json.dumps(Policy.model_json_schema(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The reference model server parses its own flags (and is the only part that needs torch).
    if argv[:2] == ["backend", "serve"]:
        from backends.reference.server import serve_main
        return serve_main(argv[2:])

    parser = argparse.ArgumentParser(prog="meshgate", description="Inference gateway and traffic manager")
    sub = parser.add_subparsers(dest="command", required=True)

    for name, func, text in (("up", _cmd_up, "start the fleet a policy describes and the gateway in front of it"),
                             ("serve", _cmd_serve, "start the gateway only")):
        p = sub.add_parser(name, help=text)
        p.add_argument("policy", help="policy YAML file")
        p.add_argument("--http", help="data port address (default: the policy's listen.http)")
        p.add_argument("--admin", help="admin port address (default: the policy's listen.admin)")
        p.add_argument("--state-dir", default=".meshgate", help="policy history and the session admin token")
        p.add_argument("--no-watch", action="store_true", help="do not reload when the policy file changes")
        p.set_defaults(func=func)

    backend = sub.add_parser("backend", help="reference model server")
    backend_sub = backend.add_subparsers(dest="backend_command", required=True)
    backend_sub.add_parser("serve", help="serve a reference model (see: meshgate backend serve --help)")

    policy = sub.add_parser("policy", help="policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    validate = policy_sub.add_parser("validate", help="check policy files; errors name file, line and field")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(func=_cmd_validate)
    schema = policy_sub.add_parser("schema", help="print the policy JSON Schema (for editors)")
    schema.set_defaults(func=_cmd_schema)
    reference = policy_sub.add_parser("reference", help="print the field reference (Markdown) from the schema")
    reference.set_defaults(func=_cmd_reference)

    def live(name: str, text: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = policy_sub.add_parser(name, help=text)
        p.add_argument("--admin-url", default="http://127.0.0.1:9901", help="the gateway's admin API")
        p.add_argument("--token", help="admin token (default: the one saved in --state-dir)")
        p.add_argument("--state-dir", default=".meshgate")
        p.set_defaults(func=func)
        return p

    apply = live("apply", "apply a policy file to a running gateway", _cmd_apply)
    apply.add_argument("file")
    apply.add_argument("--dry-run", action="store_true", help="show the diff with the live version only")
    live("history", "list the applied policy versions", _cmd_history)
    diff = live("diff", "what changed between two versions (numbers) or two files", _cmd_diff)
    diff.add_argument("a")
    diff.add_argument("b")
    rollback = live("rollback", "restore an earlier version (default: the previous one)", _cmd_rollback)
    rollback.add_argument("version", nargs="?", type=int)

    args = parser.parse_args(argv)
    _event_loop_policy()
    from telemetry.logs import setup_logging
    setup_logging()
    try:
        return int(args.func(args))
    except PolicyError as e:
        print(e, file=sys.stderr)
        return 2
    except AdminError as e:
        print(f"meshgate: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
