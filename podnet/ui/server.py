"""`podnet lab ui`: the web view's HTTP server (aiohttp), on loopback only.

    GET  /              the page (podnet/ui/static/index.html)
    GET  /static/...    its CSS and JavaScript
    GET  /api/state     the picture's document (podnet/ui/model.py)
    GET  /api/events    server-sent events: "state" (the whole document, on
                        every change the API's watch reports), "flow" (one
                        flow record, as it arrives)
    POST /api/trace     {"from", "to", "protocol", "namespace"}: runs
                        podnet.diag.trace in a thread, answers its document

The server holds informers (podnet/client) on Nodes, Pods, Services,
EndpointSlices and NetworkPolicies; any change marks the picture dirty and a
pump sends one "state" at most every PUMP_PERIOD, so a burst of events (a
Deployment scaled to 50) costs one render, not fifty.

Requests whose Host is not the loopback address we bound, or whose Origin is
another site, are refused: a page elsewhere must not run traces in the lab
through the user's browser (DNS rebinding, cross-site POST).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
from typing import Any

from aiohttp import web

from podnet.ui import model
from podnet.ui.feed import Feed, Hub

log = logging.getLogger("podnet.ui")
STATIC = os.path.join(os.path.dirname(__file__), "static")
KINDS = ("Node", "Pod", "Service", "EndpointSlice", "NetworkPolicy")
PUMP_PERIOD = 0.25  # seconds: at most four renders a second per browser
KEEPALIVE = 15.0  # seconds between SSE comments, so proxies and the browser keep the stream
TRACE_PROTOCOLS = ("tcp", "udp", "icmp")
HOST = "127.0.0.1"  # never 0.0.0.0: the page runs traces in the lab


class View:
    """The lab's live state for the page: informers in, messages out."""

    def __init__(self, lab: str, cluster: Any, load_lab: Any, feed: Feed | None = None, hub: Hub | None = None):
        self.lab, self.cluster, self.load_lab = lab, cluster, load_lab
        self.feed, self.hub = feed or Feed(), hub or Hub()
        self.dirty = threading.Event()
        self.trace_lock = asyncio.Lock()
        self.streams: set[asyncio.Task[Any]] = set()  # open /api/events handlers, ended at shutdown

    def start_watch(self) -> None:
        for kind in KINDS:
            self.cluster.watch_dirty(kind, self.dirty)

    def snapshot(self) -> dict[str, Any]:
        c = self.cluster
        return model.snapshot(
            self.load_lab(self.lab),
            c.list("Node"),
            c.list("Pod"),
            c.list("Service"),
            c.list("EndpointSlice"),
            c.list("NetworkPolicy"),
        )

    async def pump(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PUMP_PERIOD)
            if self.dirty.is_set() and self.hub.clients:
                self.dirty.clear()
                try:
                    # informers' lists can wait for a first sync: off the loop
                    snap = await loop.run_in_executor(None, self.snapshot)
                except Exception as exc:  # the API away for a moment: next change tries again
                    log.warning("ui: building the picture: %s", exc)
                    self.dirty.set()
                    continue
                self.hub.publish("state", snap)

    def add_flow(self, record: dict[str, Any]) -> None:
        """From the flow poller's thread: into the feed and to every browser."""
        self.hub.publish_threadsafe("flow", self.feed.add(record))


def _sse(event: str, data: Any) -> bytes:
    return ("event: %s\ndata: %s\n\n" % (event, json.dumps(data, separators=(",", ":")))).encode()


@web.middleware
async def _same_origin(request: web.Request, handler: Any) -> web.StreamResponse:
    port = request.app["bind"]["port"]
    allowed = {"%s:%d" % (HOST, port), "localhost:%d" % port}
    if request.host not in allowed:
        raise web.HTTPForbidden(text="podnet ui: Host %r is not this server's loopback address\n" % request.host)
    origin = request.headers.get("Origin")
    if origin is not None and origin.split("://", 1)[-1] not in allowed:
        raise web.HTTPForbidden(text="podnet ui: requests from origin %r are refused\n" % origin)
    return await handler(request)


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(os.path.join(STATIC, "index.html"))


async def _state(request: web.Request) -> web.Response:
    view: View = request.app["view"]
    snap = await asyncio.get_running_loop().run_in_executor(None, view.snapshot)
    return web.json_response(dict(snap, flows=view.feed.since(0)))


async def _events(request: web.Request) -> web.StreamResponse:
    view: View = request.app["view"]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    q = view.hub.subscribe()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is not None:
        view.streams.add(task)
    try:
        await resp.write(_sse("state", await loop.run_in_executor(None, view.snapshot)))
        for item in view.feed.since(0):
            await resp.write(_sse("flow", item))
        while True:
            try:
                event, data = await asyncio.wait_for(q.get(), KEEPALIVE)
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")
                continue
            if event == "state" and data is None:  # this browser fell behind: the current state
                data = await loop.run_in_executor(None, view.snapshot)
            await resp.write(_sse(event, data))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        view.hub.unsubscribe(q)
        if task is not None:
            view.streams.discard(task)
    return resp


def trace_request(body: Any) -> tuple[str, str, str, str]:
    """(from, to, protocol, namespace) from the POST's JSON, or ValueError
    naming the field that is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    src, dst = body.get("from"), body.get("to")
    proto = body.get("protocol") or "tcp"
    ns = body.get("namespace") or "default"
    for name, v in (("from", src), ("to", dst), ("namespace", ns)):
        if not isinstance(v, str) or not v.strip():
            raise ValueError("%s: a non-empty string is required" % name)
    if proto not in TRACE_PROTOCOLS:
        raise ValueError("protocol: %r is not one of %s" % (proto, ", ".join(TRACE_PROTOCOLS)))
    return str(src).strip(), str(dst).strip(), proto, ns


async def _trace(request: web.Request) -> web.Response:
    view: View = request.app["view"]
    try:
        src, dst, proto, ns = trace_request(await request.json())
    except (ValueError, json.JSONDecodeError) as exc:
        return web.json_response({"error": "trace: %s" % exc}, status=400)
    from podnet.diag import trace
    from podnet.diag.targets import TargetError
    from podnet.kernel.nft import NftError

    # one trace at a time: each installs trace rules and monitors in every
    # namespace on its path, and two at once would read each other's lines
    async with view.trace_lock:
        loop = asyncio.get_running_loop()
        try:
            doc = await loop.run_in_executor(
                None, lambda: trace.trace(view.lab, view.cluster.client, src, dst, namespace=ns, proto=proto)
            )
        except TargetError as exc:
            return web.json_response({"error": "trace %s -> %s: %s" % (src, dst, exc)}, status=400)
        except (NftError, OSError) as exc:
            return web.json_response(
                {"error": "trace %s -> %s: the kernel side failed: %s" % (src, dst, exc)}, status=500
            )
        except Exception as exc:  # a bug or the API away: the page shows it, the log has the traceback
            log.exception("ui: trace %s -> %s", src, dst)
            return web.json_response({"error": "trace %s -> %s failed: %r" % (src, dst, exc)}, status=500)
    return web.json_response(doc)


def make_app(view: View, bind: dict[str, int]) -> web.Application:
    """bind: {"port": P}, a dict so serve() can fill in the port it got
    after the app is frozen (the Host check needs it)."""
    app = web.Application(middlewares=[_same_origin])
    app["view"], app["bind"] = view, bind
    app.router.add_get("/", _index)
    app.router.add_get("/api/state", _state)
    app.router.add_get("/api/events", _events)
    app.router.add_post("/api/trace", _trace)
    app.router.add_static("/static/", STATIC)
    return app


async def serve(view: View, port: int, ready: Any = None, stop: asyncio.Event | None = None) -> None:
    """Bind 127.0.0.1:port (0: any free port), call ready(url), serve until
    stop is set (or the task is cancelled)."""
    view.hub.loop = asyncio.get_running_loop()
    view.start_watch()
    bind = {"port": port}
    app = make_app(view, bind)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    bound = bind["port"] = runner.addresses[0][1]
    pump = asyncio.create_task(view.pump())
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGTERM and SIGINT end the server cleanly (SIGINT even where a shell
    # started us in the background with it ignored)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if ready is not None:
            ready("http://%s:%d/" % (HOST, bound))
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        pump.cancel()
        # an open event stream never ends by itself: without this, shutdown
        # would wait for the browser to go away (aiohttp's shutdown timeout)
        for t in list(view.streams):
            t.cancel()
        await runner.cleanup()
