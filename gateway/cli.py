"""The ``meshgate`` command: thin wrappers that parse arguments, call the library and print."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from policies.loader import PolicyError, load_policy


def _event_loop_policy() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; degrade rather than fail
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _until_signalled() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


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


async def _serve(args: argparse.Namespace, launch: bool) -> int:
    from gateway.app import Gateway
    from gateway.fleet import Fleet, FleetError

    policy = load_policy(args.policy)
    fleet = Fleet(policy) if launch else None
    gateway = None
    try:
        if fleet is not None and fleet.members:
            print(f"starting {len(fleet.members)} reference model server(s); logs in {fleet.log_dir}", flush=True)
            fleet.spawn()
            await fleet.wait_ready()
        gateway = Gateway(policy, http=args.http, admin=args.admin)
        await gateway.start()
        models = ", ".join(sorted(gateway.snapshots.current.routes)) or "(none)"
        print(f"gateway ready: V2 REST http://{gateway.http_address.rsplit(':', 1)[0]}:{gateway.http_port} "
              f"admin http://{gateway.admin_address.rsplit(':', 1)[0]}:{gateway.admin_port} models: {models}",
              flush=True)
        routes = sorted(gateway.snapshots.current.routes)
        if launch and routes:
            print(_how_to_call(gateway.http_port, routes[0]), flush=True)
        await _until_signalled()
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
    return asyncio.run(_serve(args, launch=True))


def _cmd_serve(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args, launch=False))


def _cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            policy = load_policy(path)
        except PolicyError as e:
            print(e, file=sys.stderr)
            failed += 1
        else:
            print(f"{path}: ok ({len(policy.backends)} backends, {len(policy.routes)} routes)")
    return 1 if failed else 0


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
        p.set_defaults(func=func)

    backend = sub.add_parser("backend", help="reference model server")
    backend_sub = backend.add_subparsers(dest="backend_command", required=True)
    backend_sub.add_parser("serve", help="serve a reference model (see: meshgate backend serve --help)")

    policy = sub.add_parser("policy", help="policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    validate = policy_sub.add_parser("validate", help="check policy files; errors name file, line and field")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(func=_cmd_validate)

    args = parser.parse_args(argv)
    _event_loop_policy()
    from telemetry.logs import setup_logging
    setup_logging()
    try:
        return int(args.func(args))
    except PolicyError as e:
        print(e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
