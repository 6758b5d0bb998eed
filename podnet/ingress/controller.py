"""python -m podnet.ingress.controller: the ingress-nginx pod's process.

Like ingress-nginx, the controller runs inside the nginx pod: it is a client
of the API server (a kubeconfig file, as the kube-dns addon's pods have),
watches Ingresses, IngressClasses, Gateways, GatewayClasses, HTTPRoutes,
Services, EndpointSlices and Secrets (informers: events only mark work
pending), and each pass renders the whole configuration from full state
(level-triggered). Only when the text changed: `nginx -t`, then a graceful
reload. When nginx rejects the text, the object behind it is found by
rendering without each served object in turn; that one is left out (so the
rest is served) and gets a Warning Event saying what nginx said.

Status: each Ingress of ours gets status.loadBalancer from the publish
Service (podnet-ingress/ingress-nginx, a LoadBalancer); each Gateway its
addresses and conditions; each attached HTTPRoute its status.parents.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
import time
from typing import Any

from podnet.ingress import render as rnd
from podnet.ingress import status as st
from podnet.ingress.nginx import Nginx

log = logging.getLogger("podnet.ingress")
RESYNC = 30.0
Obj = dict[str, Any]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Controller:
    def __init__(self, cluster: Any, nginx: Nginx, publish: tuple[str, str], recorder: Any = None, workers: int = 1):
        self.cluster, self.nginx, self.publish = cluster, nginx, publish
        self.recorder = recorder
        self.workers = workers
        self.live: str | None = None  # the text nginx serves
        self.left_out: dict[tuple[str, str, str], str] = {}  # object -> why nginx rejected it
        self.refused: str | None = None  # the last full text nginx -t rejected
        self.dirty = threading.Event()
        self.stop = cluster.stop

    def inputs(self) -> rnd.Inputs:
        c = self.cluster
        return rnd.Inputs(
            c.list("IngressClass"),
            c.list("Ingress"),
            c.list("GatewayClass"),
            c.list("Gateway"),
            c.list("HTTPRoute"),
            c.list("Service"),
            c.list("EndpointSlice"),
            c.list("Secret"),
        )

    def render(self, inp: rnd.Inputs, without: frozenset[tuple[str, str, str]]) -> rnd.Rendered:
        return rnd.render(inp, self.nginx.run_dir, self.nginx.cert_dir, without, self.workers)

    def sync(self) -> None:
        """Render everything; when that text is new, nginx -t it; a rejected
        text is retried without what was left out before, then without each
        object in turn (the culprit). The text nginx refused last time is
        remembered, so a pass with nothing new runs no nginx -t."""
        inp = self.inputs()
        r = self.render(inp, frozenset())
        if r.text != self.refused and (r.text != self.live or not self.nginx.alive()):
            self.nginx.write_files(r.files)
            why = self.nginx.test(r.text)
            if why is None:
                self.left_out = {}
            else:
                self.refused = r.text
                r = self._without_culprit(inp, r, why)
            self._load(r)
        elif r.text == self.refused:
            r = self.render(inp, frozenset(self.left_out))
            if not self.nginx.alive():
                self._load(r)
        self._report(inp, r)

    def _load(self, r: rnd.Rendered) -> None:
        if r.text != self.live or not self.nginx.alive():
            self.nginx.load(r.text)
            self.live = r.text
            self.nginx.prune_files(set(r.files))
            log.info("nginx: loaded (%d reloads), %d bytes", self.nginx.reloads, len(r.text))

    def _without_culprit(self, inp: rnd.Inputs, r: rnd.Rendered, why: str) -> rnd.Rendered:
        """nginx rejected r: keep out what was out before if that is enough,
        else also the first served object whose absence fixes it."""
        if self.left_out:
            trial = self.render(inp, frozenset(self.left_out))
            self.nginx.write_files(trial.files)
            if self.nginx.test(trial.text) is None:
                return trial
        for key in r.served:
            trial = self.render(inp, frozenset(self.left_out) | {key})
            self.nginx.write_files(trial.files)
            if self.nginx.test(trial.text) is None:
                self.left_out[key] = why
                log.warning("nginx rejects the configuration of %s %s/%s: %s", *key, why)
                return trial
        raise RuntimeError("nginx -t rejects the configuration and no single object explains it: %s" % why)

    # ---- what the objects are told ---------------------------------------------------

    def _report(self, inp: rnd.Inputs, r: rnd.Rendered) -> None:
        for p in r.problems:
            self._event(p.kind, p.namespace, p.name, p.reason, p.message)
        for (kind, ns, name), why in self.left_out.items():
            self._event(kind, ns, name, "Rejected", "nginx -t rejects this object's configuration: %s" % why)
        pns, pname = self.publish
        ips = st.lb_addresses(self.cluster.find("Service", pns, pname))
        for ing in r.ingresses:
            new = st.ingress_status(ing, ips)
            self._write_status(ing, new)
        now = _now()
        gws = {(g["metadata"].get("namespace") or "default", g["metadata"]["name"]): g for g in inp.gateways}
        for key, res in r.gateways.items():
            self._write_status(
                gws[key], st.gateway_status(gws[key], res, ips, self.left_out.get(("Gateway",) + key), now)
            )
        routes = {(x["metadata"].get("namespace") or "default", x["metadata"]["name"]): x for x in inp.httproutes}
        for key, rres in r.routes.items():
            if key in routes:
                problem = self.left_out.get(("HTTPRoute",) + key)
                self._write_status(routes[key], st.route_status(routes[key], rres, problem, now))

    def _write_status(self, obj: Obj, new: Obj) -> None:
        if _without_times(obj.get("status") or {}) == _without_times(new):
            return
        m = obj["metadata"]

        def change(o: Obj) -> None:
            o["status"] = new

        try:
            self.cluster.mutate(obj["kind"], m.get("namespace"), m["name"], change, status=True)
        except Exception as exc:  # status is retried next pass; serving goes on
            log.warning("status of %s %s/%s: %s", obj.get("kind"), m.get("namespace"), m["name"], exc)

    def _event(self, kind: str, ns: str, name: str, reason: str, message: str) -> None:
        log.warning("%s %s/%s: %s", kind, ns, name, message)
        if self.recorder is None:
            return
        obj = self.cluster.find(kind, ns, name)
        if obj is not None:
            self.recorder.event(obj, "Warning", reason, message)


def _without_times(status: Any) -> Any:
    if isinstance(status, dict):
        return {k: _without_times(v) for k, v in status.items() if k != "lastTransitionTime"}
    if isinstance(status, list):
        return [_without_times(v) for v in status]
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m podnet.ingress.controller")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--run-dir", required=True, help="nginx's config, pid, temp files and certificates")
    p.add_argument("--publish-service", default="podnet-ingress/ingress-nginx")
    p.add_argument("--workers", type=int, default=1, help="nginx worker processes")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    from podnet.client import connect
    from podnet.client.events import Recorder
    from podnet.client.loop import run

    # one directory per pod (its hostname is the pod name): two replicas never share files
    run_dir = os.path.join(args.run_dir, os.environ.get("HOSTNAME") or str(os.getpid()))
    stop = threading.Event()
    cluster = connect(args.kubeconfig, "podnet-ingress-nginx", stop)
    dirty = threading.Event()
    nginx = Nginx(run_dir, on_exit=dirty)  # nginx gone: the next pass (now) starts it again
    ns, _, name = args.publish_service.partition("/")
    ctl = Controller(cluster, nginx, (ns, name), Recorder(cluster.client, "ingress-nginx"), args.workers)
    ctl.dirty = dirty

    def quit_(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, quit_)
    signal.signal(signal.SIGINT, quit_)
    for kind in rnd.KINDS:
        cluster.watch_dirty(kind, ctl.dirty)
    try:
        run(ctl.sync, ctl.dirty, stop, RESYNC, log, "ingress sync")
    finally:
        nginx.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
