"""The alternative we measured against: a proxy built on aiohttp's server and ClientSession.

Kept only so bench/run.py can show, in the same run, why meshgate's data port is not built
this way. Usage: aiohttp_proxy.py LISTEN_PORT UPSTREAM_PORT
"""

from __future__ import annotations

import sys

import aiohttp
import uvloop
from aiohttp import web


def main() -> None:
    listen, upstream = int(sys.argv[1]), int(sys.argv[2])
    base = f"http://127.0.0.1:{upstream}"

    async def start(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    async def proxy(request: web.Request) -> web.Response:
        body = await request.read()
        async with request.app["session"].post(base + request.path, data=body,
                                               headers={"content-type": request.content_type}) as r:
            return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", proxy)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=listen, access_log=None, print=None)


if __name__ == "__main__":
    main()
