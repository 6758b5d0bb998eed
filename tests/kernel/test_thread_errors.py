"""No informer, watch or reconcile thread ends on an unexpected exception
(issue 11, item 2): it logs, counts it in podnet_thread_errors_total
{component}, re-lists and carries on.

Faults are injected where they enter: a client whose watch hands the
informer a malformed event (no metadata, an event type it does not know)
ahead of the next real one, a subscriber that raises, a sync that raises.
Against a real API server; the last test runs the real proxy reconciler in
a network namespace and shows that the Services table still follows the
changes made after the faults.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
import time

import pytest
from prometheus_client import generate_latest

from podnet.agent.metrics import REGISTRY
from podnet.client import loop
from podnet.client.informer import Informer
from podnet.client.loop import THREAD_ERRORS
from tests.helpers import wait_for


class InjectingClient:
    """The real client, except that its watches yield the queued events
    first, just before the next event the server sends."""

    def __init__(self, real):
        self.real = real
        self.queue = collections.deque()

    def __getattr__(self, name):
        return getattr(self.real, name)

    def watch(self, *args, **kw):
        for ev in self.real.watch(*args, **kw):
            while self.queue:
                yield self.queue.popleft()
            yield ev


def service(name):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def ensure_default_namespace(client):
    if client.find("Namespace", None, "default") is None:
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})


def metric(component):
    text = generate_latest(REGISTRY).decode()
    for line in text.splitlines():
        if line.startswith('podnet_thread_errors_total{component="%s"}' % component):
            return float(line.split()[-1])
    return 0.0


def test_an_informer_survives_malformed_events_and_a_raising_subscriber(api_server):
    real = api_server.client()
    ensure_default_namespace(real)
    client = InjectingClient(real)
    inf = Informer(client, "Service", "default")
    stop = threading.Event()
    seen = []

    def subscriber(key, old, new):
        if new is not None and new["metadata"]["name"] == "boom":
            raise RuntimeError("a subscriber's bug")
        seen.append(key)

    before = {c: THREAD_ERRORS.get(c) for c in ("informer/services", "handler/services")}
    inf.add(threading.Event(), subscriber).start(stop)
    try:
        assert inf.synced.wait(20)
        thread = next(t for t in threading.enumerate() if t.name == "informer-services")
        relists = inf.relists
        for n, bad in enumerate(
            [
                ("ADDED", {"kind": "Service", "spec": {}}),  # no metadata
                ("SURPRISE", {"metadata": {"name": "x", "namespace": "default", "resourceVersion": "1"}}),
            ],
            start=1,
        ):
            client.queue.append(bad)
            real.create(service("trigger%d" % n))  # a real event, so the watch hands the bad one over
            wait_for(
                'THREAD_ERRORS.get("informer/services") == before["informer/services"] + n',
                lambda n=n: THREAD_ERRORS.get("informer/services") == before["informer/services"] + n,
                20,
            )
        real.create(service("boom"))
        wait_for(
            'THREAD_ERRORS.get("handler/services") == before["handler/services"] + 1',
            lambda: THREAD_ERRORS.get("handler/services") == before["handler/services"] + 1,
            20,
        )
        real.create(service("after"))
        wait_for(
            'inf.get("/registry/services/default/after") is not None',
            lambda: inf.get("/registry/services/default/after") is not None,
            20,
        )
        assert thread.is_alive() and inf.relists >= relists + 2  # each fault: a fresh list
        assert "/registry/services/default/after" in seen
        # the re-lists brought the events the faults stood in front of
        assert {o["metadata"]["name"] for o in inf.values()} >= {"trigger1", "trigger2", "boom", "after"}
        assert metric("informer/services") == THREAD_ERRORS.get("informer/services")
        assert metric("handler/services") >= 1
    finally:
        stop.set()


def test_a_reconcile_loop_survives_any_exception_and_counts_it():
    calls = []

    def sync():
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise KeyError("a bug in a pass")

    dirty, stop = threading.Event(), threading.Event()
    before = THREAD_ERRORS.get("test pass")
    log = __import__("logging").getLogger("test")
    t = threading.Thread(target=loop.run, args=(sync, dirty, stop, 3600, log, "test pass"), daemon=True)
    t.start()
    try:
        wait_for(
            "len(calls) >= 3", lambda: len(calls) >= 3, 10
        )  # two failures, then a pass that works, without a new event
        assert t.is_alive() and THREAD_ERRORS.get("test pass") == before + 2
        dirty.set()
        wait_for("len(calls) >= 4", lambda: len(calls) >= 4, 5)
        assert metric("test pass") == before + 2
    finally:
        stop.set()
        t.join(5)
    assert not t.is_alive()


# ---- the real proxy reconciler in a network namespace --------------------------------

PROXY = r"""
import collections, json, sys, threading
from prometheus_client import generate_latest
from podnet.agent.metrics import REGISTRY
from podnet.client import connect
from podnet.client.loop import THREAD_ERRORS
from podnet.proxy.reconciler import ProxyReconciler

class InjectingClient:
    def __init__(self, real):
        self.real, self.queue = real, collections.deque()
    def __getattr__(self, name):
        return getattr(self.real, name)
    def watch(self, kind, *args, **kw):
        for ev in self.real.watch(kind, *args, **kw):
            while self.queue and getattr(kind, "kind", kind) == "Service":
                yield self.queue.popleft()
            yield ev

stop = threading.Event()
cluster = connect(sys.argv[1], stop=stop)
cluster.client = injecting = InjectingClient(cluster.client)  # the informers are made after this
proxy = ProxyReconciler("n1", cluster, "10.244.0.0/16", sys.argv[2], uplink="lo")
threading.Thread(target=proxy.run, args=(stop,), daemon=True, name="proxy").start()

def subscriber(key, old, new):
    if new is not None and new["metadata"]["name"] == "boom":
        raise RuntimeError("a subscriber's bug")

cluster.watch_dirty("Service", threading.Event(), subscriber)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "nometa":
        injecting.queue.append(("ADDED", {"kind": "Service", "spec": {}}))
    elif cmd == "unknown":
        injecting.queue.append(("SURPRISE", {"metadata": {"name": "x", "namespace": "default"}}))
    elif cmd == "quit":
        break
    out = {
        "threads": sorted(t.name for t in threading.enumerate() if t.is_alive()),
        "errors": dict(THREAD_ERRORS.items()),
        "metrics": [l for l in generate_latest(REGISTRY).decode().splitlines() if "thread_errors" in l],
    }
    print(json.dumps(out), flush=True)
stop.set()
"""


@pytest.mark.kernel
def test_the_proxy_follows_services_created_after_the_faults(namespaces, tmp_path):
    from podnet.apiserver.local import ApiServer
    from tests.conftest import sh

    ns = namespaces.new("therr")
    api = ApiServer(tmp_path / "api", netns=[ns])
    proc = None
    try:
        client = api.client()
        ensure_default_namespace(client)
        proc = subprocess.Popen(
            ["nsenter", "--net=/run/netns/" + ns, "--", sys.executable, "-c", PROXY, api.kubeconfig, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(tmp_path / "proxy.log", "wb"),
            text=True,
        )

        def status(cmd="status"):
            proc.stdin.write(cmd + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            assert line, "the proxy process ended: %s" % (tmp_path / "proxy.log").read_text()[-3000:]
            return json.loads(line)

        def in_table(ip):
            res = sh(ns, "nft", "list", "table", "ip", "podnet-proxy", check=False)
            return res.returncode == 0 and ip in res.stdout

        def errors(component):
            return status()["errors"].get(component, 0)

        first = client.create(service("before"))
        wait_for('in_table(first["spec"]["clusterIP"])', lambda: in_table(first["spec"]["clusterIP"]), 30)
        status("nometa")
        client.create(service("trigger1"))
        wait_for('errors("informer/services") == 1', lambda: errors("informer/services") == 1, 20)
        status("unknown")
        client.create(service("trigger2"))
        wait_for('errors("informer/services") == 2', lambda: errors("informer/services") == 2, 20)
        client.create(service("boom"))
        wait_for('errors("handler/services") >= 1', lambda: errors("handler/services") >= 1, 20)
        after = client.create(service("after"))
        wait_for('in_table(after["spec"]["clusterIP"])', lambda: in_table(after["spec"]["clusterIP"]), 30)
        st = status()
        assert "informer-services" in st["threads"] and "proxy" in st["threads"]
        assert 'podnet_thread_errors_total{component="informer/services"} 2.0' in st["metrics"]
        client.delete("Service", "default", "after")
        wait_for('not in_table(after["spec"]["clusterIP"])', lambda: not in_table(after["spec"]["clusterIP"]), 30)
    finally:
        if proc is not None:
            try:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
            except OSError:
                pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()  # by the PID we started
                proc.wait()
        api.stop()


def test_subscribing_does_not_wait_for_an_api_server_that_is_not_answering_yet(api_server):
    """watch_dirty at the top of a reconciler's thread returns at once while
    the API server is down (it used to raise after 30 s, ending the thread);
    the dirty event comes when the first list is in."""
    ensure_default_namespace(api_server.client())
    api_server.stop()
    stop, dirty = threading.Event(), threading.Event()
    cluster = api_server.cluster()
    cluster.stop = stop
    try:
        t0 = time.monotonic()
        cluster.watch_dirty("Service", dirty)
        assert time.monotonic() - t0 < 1 and not dirty.is_set()
        api_server.start()
        assert dirty.wait(20)
        assert cluster.list("Service", "default") == []
    finally:
        stop.set()
