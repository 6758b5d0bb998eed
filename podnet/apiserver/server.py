"""`podnet apiserver`: the Kubernetes REST API over a podnet store, HTTPS only.

Listeners: any number of `ADDR:PORT`, each optionally inside a named
network namespace (`--listen pn-lab-u=192.168.200.1:6443`). A socket stays
in the namespace it was created in, so one process serves the user's
kubectl on the root namespace's loopback and the node agents on the lab's
underlay, and adds no address or route to the root namespace.

Authentication (anything else gets 401): a client certificate signed by the
cluster CA (CN = user, O = groups; checked after the handshake, see
tlsauth.py), or a bearer token from the tokens file. /healthz, /livez,
/readyz and /version answer anyone, as kube-apiserver's public-info role
allows. Authorization: the Node authorizer, then RBAC (rbacpolicy.py,
authz.py); the default policy is written at start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
import ssl
from typing import Any

from aiohttp import web

from podnet.apiserver import bootstrap, errors, openapi, rbacpolicy, tlsauth
from podnet.apiserver.cache import Cache
from podnet.apiserver.certs import Pki
from podnet.apiserver.errors import StatusError
from podnet.apiserver.gc import Collector
from podnet.apiserver.handlers import Handlers, json_response
from podnet.apiserver.registry import Registry

log = logging.getLogger("podnet.apiserver")
PUBLIC = ("/healthz", "/livez", "/readyz", "/version") + bootstrap.PATHS  # the join endpoints check their token
VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-podnet",
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "python",
    "compiler": "cpython",
    "platform": "linux/amd64",
}


class Tokens:
    """The tokens file, re-read when it changes (a new node's token works at once)."""

    def __init__(self, pki: Pki):
        self.pki, self.mtime, self.table = pki, -1.0, {}  # type: ignore[var-annotated]

    def lookup(self, token: str) -> dict[str, Any] | None:
        try:
            m = os.stat(self.pki.tokens_file).st_mtime
        except FileNotFoundError:
            return None
        if m != self.mtime:
            self.table, self.mtime = self.pki.tokens(), m
        who = self.table.get(token)
        return dict(who) if isinstance(who, dict) else None


def make_app(registry: Registry, pki: Pki, streams: Any = None) -> web.Application:
    tokens = Tokens(pki)
    with open(pki.ca_cert, "rb") as f:
        certs = tlsauth.Verifier(f.read())
    try:
        from podnet.apiserver import table
    except ImportError:  # built in parallel; lists work without Tables
        table = None  # type: ignore[assignment]
    h = Handlers(registry, table, streams)
    authorizer = rbacpolicy.Authorizer(registry)

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            if request.path not in PUBLIC:
                who = None
                auth = request.headers.get("Authorization", "")
                if auth.startswith("Bearer "):
                    who = tokens.lookup(auth[7:].strip())
                else:
                    ssl_obj = request.transport.get_extra_info("ssl_object") if request.transport else None
                    # checked here, not in the handshake: a certificate of
                    # another CA gets a 401, as from kube-apiserver
                    who = certs.user(ssl_obj.getpeercert(binary_form=True) if ssl_obj else None)
                if who is None:
                    raise errors.unauthorized()
                request["user"] = who
                await authorizer.check(request, who)  # Node, then RBAC: a 403 naming what was refused
            resp: web.StreamResponse = await handler(request)
            return resp
        except StatusError as exc:
            return exc.response()
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # an internal error is a 500 Status, logged with its trace
            log.exception("%s %s", request.method, request.path)
            return StatusError(500, "InternalError", "Internal error occurred: %s" % exc).response()

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def version(request: web.Request) -> web.Response:
        return json_response(VERSION)

    async def not_found(request: web.Request) -> web.Response:
        raise StatusError(404, "NotFound", "the server could not find the requested resource")

    app = web.Application(middlewares=[middleware], client_max_size=64 * 1024 * 1024)
    for p in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(p, healthz)
    app.router.add_get("/version", version)
    app.router.add_route("*", "/api", h.discovery)
    app.router.add_route("*", "/apis", h.discovery)
    app.router.add_route("*", "/api/{tail:.*}", h.core)
    app.router.add_route("*", "/apis/{tail:.*}", h.grouped)
    openapi.add_routes(app)  # /openapi/v2, /openapi/v3[/...]; built in a thread at start-up
    bootstrap.add_routes(app, pki)  # `podnet agent join`: discovery and the token exchange
    app.router.add_route("*", "/{tail:.*}", not_found)
    app["handlers"] = h
    return app


def ssl_context(pki: Pki) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(pki.path("apiserver.crt"), pki.path("apiserver.key"))
    ctx.load_verify_locations(pki.ca_cert)
    ctx.verify_mode = ssl.CERT_OPTIONAL  # a client cert, or a token in the request
    tlsauth.accept_any_client_cert(ctx)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def listen_socket(spec: str) -> socket.socket:
    """'ADDR:PORT' or 'NETNS=ADDR:PORT' -> a listening TCP socket."""
    from podnet.kernel import netns

    where, _, addr = spec.rpartition("=")
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET

    def make() -> socket.socket:
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
        s.listen(512)
        s.setblocking(False)
        return s

    if not where:
        return make()
    ns = netns.Netns(where)
    try:
        with netns.entered(ns):
            return make()
    finally:
        ns.close()


async def serve(
    store_url: str,
    pki_dir: str,
    listens: list[str],
    streams: Any = None,
    service_cidr: str = "10.96.0.0/12",
    node_ports: range = range(30000, 32768),
) -> None:
    from podnet.store.base import open_store

    pki = Pki(pki_dir)
    store = open_store(store_url)
    cache = Cache(store)
    loop = asyncio.get_running_loop()
    cache.start(loop)
    registry = Registry(store, cache, service_cidr=service_cidr, node_ports=node_ports)
    if n := registry.record_allocations():
        log.info("recorded the allocations of %d Services stored without them", n)
    if n := rbacpolicy.ensure_bootstrap(registry):
        log.info("wrote %d default RBAC objects", n)
    collector = Collector(registry)
    app = make_app(registry, pki, streams)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    ctx = ssl_context(pki)
    for spec in listens:
        await web.SockSite(runner, listen_socket(spec), ssl_context=ctx).start()
        log.info("serving on https://%s", spec)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gc_task = asyncio.create_task(collector.run())
    await stop.wait()
    gc_task.cancel()
    cache.stop()
    await runner.cleanup()
    store.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="podnet apiserver", description=__doc__.split("\n")[0])
    p.add_argument("--store", required=True, help="sqlite:///path.db or etcd://host:port[,host:port]")
    p.add_argument("--pki", required=True, help="the directory with ca.crt, apiserver.crt/.key, tokens.yaml")
    p.add_argument("--listen", action="append", required=True, help="ADDR:PORT or NETNS=ADDR:PORT (repeatable)")
    p.add_argument("--lab", help="the lab whose pods the log/exec/attach/portforward subresources reach")
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/12", help="the CIDR ClusterIPs are allocated from")
    p.add_argument("--service-node-port-range", default="30000-32767", help="the NodePorts allocated, FIRST-LAST")
    args = p.parse_args(argv)
    try:
        ipaddress.ip_network(args.service_cluster_ip_range)
        lo, _, hi = args.service_node_port_range.partition("-")
        node_ports = range(int(lo), int(hi) + 1)
    except ValueError as exc:
        p.error("--service-cluster-ip-range / --service-node-port-range: %s" % exc)
    if not node_ports or node_ports[0] < 1 or node_ports[-1] > 65535:
        p.error("--service-node-port-range %s: not a range of ports" % args.service_node_port_range)
    os.umask(0o077)  # the store and its journal: root only
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    streams = None
    if args.lab:
        from podnet.apiserver.nodes import LabStreams

        streams = LabStreams(args.lab)
    asyncio.run(serve(args.store, args.pki, args.listen, streams, args.service_cluster_ip_range, node_ports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
