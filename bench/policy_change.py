"""bench/policy.py's one-change figures: a policy change and a pod label
change at 1,000 policies, timed from the store event to `nft` returning,
through the reconciler's per-change path (partial sync) against the full
sync every event used to cost, each checked against a full apply of the same
state. Run through bench/policy.py (its docstring says what is measured)."""

import json
import resource
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from podnet.cli.rules import parse_table
from podnet.kernel import nft
from podnet.policy import nftscript
from podnet.policy.planner import plan
from podnet.policy.reconciler import PolicyReconciler


class Store:
    """The agent's informer copies, in memory: list/find as podnet.client.Cluster
    serves them, and the watch callbacks, which put() calls as an informer
    does when a watch event delivers an object."""

    def __init__(self, pods, namespaces, pols, node):
        self.items = {"Pod": {}, "Namespace": {}, "NetworkPolicy": {}}
        self.handlers = {kind: [] for kind in self.items}
        for kind, objs in (("Pod", pods), ("Namespace", namespaces), ("NetworkPolicy", pols)):
            for o in objs:
                self.items[kind][self._key(o)] = o
        self.name = node
        self.node = {
            "kind": "Node",
            "metadata": {"name": node},
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.200.11"}]},
        }

    @staticmethod
    def _key(o):
        return "%s/%s" % (o["metadata"].get("namespace") or "", o["metadata"]["name"])

    def watch_dirty(self, kind, dirty, on_change=None):
        if on_change is not None:
            self.handlers[kind].append(on_change)

    def list(self, kind):
        return sorted(self.items[kind].values(), key=self._key)

    def find(self, kind, ns, name):
        return self.node if (kind, name) == ("Node", self.name) else None

    def put(self, obj):
        kind, key = obj["kind"], self._key(obj)
        old, self.items[kind][key] = self.items[kind].get(key), obj
        for h in self.handlers[kind]:
            h(key, old, obj)


def _table(ns):
    chains, elements = parse_table(nft.list_table(nftscript.FAMILY, nftscript.TABLE, ns=ns, stateless=True))
    return chains, {name: sorted(e) for name, e in elements.items()}


def _cpu():
    """ms of CPU this process and its finished children (nft) used: a figure
    a busy machine disturbs less than the wall clock."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime) * 1000


def bench_change(node_ns, ref_ns, world, rounds):
    """One policy change and one pod label change at `count` policies, from the
    informer callback delivering the object to `nft` returning: the per-change
    reconciler (partial sync) against the full sync every event used to cost
    (plan + render + `nft -f` of the whole table; the old pass then also
    listed the table, not counted here). After each change the node's table
    must equal a full apply of the same state in another namespace."""
    pods, namespaces, pols, node = world
    count = len(pols)
    store = Store(pods, namespaces, pols, node)
    r = PolicyReconciler(node, store, "10.244.0.0/16", ns=node_ns)
    r.sync()  # the start: a full sync
    times = {w: {"old": [], "new": [], "plan": [], "nft": [], "cpu": []} for w in ("policy", "pod label")}
    for i in range(rounds):
        pol = json.loads(json.dumps(store.items["NetworkPolicy"]["ns0/np-0500"]))
        pol["spec"]["ingress"][0]["ports"][0]["port"] = 81 if i % 2 == 0 else 80
        pod = json.loads(json.dumps(store.items["Pod"]["ns3/pod-04"]))
        pod["metadata"]["labels"]["app"] = "app5" if i % 2 == 0 else "app4"
        for what, obj in (("policy", pol), ("pod label", pod)):
            partial = r.syncs["partial"]
            r.last_check = time.monotonic()  # the periodic drift check is not part of a change
            c0 = _cpu()
            t0 = time.perf_counter()
            store.put(obj)
            r.sync()
            t1 = time.perf_counter()
            times[what]["cpu"].append(_cpu() - c0)
            if r.syncs["partial"] != partial + 1 or r.syncs["full"] != 1:
                raise SystemExit("the %s change was not written as a partial sync: %s" % (what, r.syncs))
            p = plan(
                store.list("NetworkPolicy"),
                store.list("Pod"),
                store.list("Namespace"),
                node,
                ["192.168.200.11", "10.244.0.1"],
            )
            nft.apply(nftscript.render(p), ns=ref_ns, what="bench full")
            t2 = time.perf_counter()
            times[what]["new"].append((t1 - t0) * 1000)
            times[what]["plan"].append(r.last_phases["plan"])
            times[what]["nft"].append(r.last_phases["nft"])
            times[what]["old"].append((t2 - t1) * 1000)
            if _table(node_ns) != _table(ref_ns):
                raise SystemExit("after the %s change the partial syncs' table differs from a full apply" % what)
    out = {}
    for what, t in times.items():
        out[what] = {k: statistics.median(v) for k, v in t.items()}
        print(
            "change %-9s at %d policies: full sync (old) %6.1f ms   partial sync (new) %5.1f ms (plan %.1f, nft %.1f;"
            " CPU %.1f)   (median of %d; tables equal)"
            % (
                what,
                count,
                out[what]["old"],
                out[what]["new"],
                out[what]["plan"],
                out[what]["nft"],
                out[what]["cpu"],
                rounds,
            ),
            flush=True,
        )
    return out


API_VERSIONS = {"NetworkPolicy": "networking.k8s.io/v1"}


def bench_api(node_ns, ref_ns, world, rounds, prefix):
    """The same two changes written through a real API server (its own
    sqlite store, podnet.apiserver.local, in a temporary directory), the
    reconciler's loop running in a thread on informers as in the agent:
    timed from the write request (one PUT) until the node's `nft` returned.
    Checked like bench_change."""
    from podnet.apiserver.local import ApiServer

    pods, namespaces, pols, node = world
    count = len(pols)
    tmp = tempfile.mkdtemp(prefix=prefix + "api-")
    api, c, stop, thread = None, None, threading.Event(), None
    try:
        api = ApiServer(tmp)
        c = api.cluster("bench-policy")
        store = Store(pods, namespaces, [], node)
        c.create(dict(store.node, apiVersion="v1"))
        with ThreadPoolExecutor(4) as ex:
            for batch in (namespaces, pods + pols):
                list(ex.map(lambda o: c.create(dict(o, apiVersion=API_VERSIONS.get(o["kind"], "v1"))), batch))
        r = PolicyReconciler(node, c, "10.244.0.0/16", ns=node_ns)
        done = []  # (kind, when nft returned)
        apply = r._apply

        def noted(script, kind, p, t0):
            apply(script, kind, p, t0)
            done.append((kind, time.monotonic()))

        r._apply = noted
        thread = threading.Thread(target=r.run, args=(stop,), daemon=True)
        thread.start()
        wait = time.monotonic() + 120
        while not done and time.monotonic() < wait:
            time.sleep(0.05)
        if not done:
            raise SystemExit("the reconciler did not write the table through the API server in 120 s")
        times = {"policy": [], "pod label": []}
        for i in range(rounds):
            pol = json.loads(json.dumps(c.find("NetworkPolicy", "ns0", "np-0500")))
            pol["spec"]["ingress"][0]["ports"][0]["port"] = 81 if i % 2 == 0 else 80
            pod = json.loads(json.dumps(c.find("Pod", "ns3", "pod-04")))
            pod["metadata"]["labels"]["app"] = "app5" if i % 2 == 0 else "app4"
            for what, obj in (("policy", pol), ("pod label", pod)):
                n = len(done)
                r.last_check = time.monotonic()  # the periodic drift check is not part of a change
                t0 = time.monotonic()
                c.update(obj)
                wait = time.monotonic() + 30
                while len(done) == n and time.monotonic() < wait:
                    time.sleep(0.0005)
                if len(done) == n or done[n][0] != "partial":
                    raise SystemExit("the %s change through the API server: no partial sync (%s)" % (what, done[n:]))
                times[what].append((done[n][1] - t0) * 1000)
                time.sleep(0.2)  # let the pass end before reading its table
                want = plan(c.list("NetworkPolicy"), c.list("Pod"), c.list("Namespace"), node, r.inc.node_ips)
                nft.apply(nftscript.render(want), ns=ref_ns, what="bench full")
                if _table(node_ns) != _table(ref_ns):
                    raise SystemExit("after the %s change (API) the table differs from a full apply" % what)
        out = {}
        for what, t in times.items():
            out[what] = statistics.median(t)
            print(
                "change %-9s at %d policies through the API server: write -> nft returned %5.1f ms"
                "   (median of %d; tables equal)" % (what, count, out[what], rounds),
                flush=True,
            )
        return out
    finally:
        stop.set()
        if thread is not None:
            thread.join(10)
        if c is not None:
            c.stop.set()  # its informers' threads
        if api is not None:
            api.stop()  # by the PID it started
        shutil.rmtree(tmp, ignore_errors=True)
