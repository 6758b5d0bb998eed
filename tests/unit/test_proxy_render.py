"""Partial syncs (podnet.proxy.render.diff): pure checks of what a change
rewrites, and a kernel check that the agent's Services loop, through a chain
of partial syncs, leaves exactly the table a full render of the final state
gives (every chain's rules in order)."""

import json
import random

import pytest

from podnet.proxy.planner import Planner, chain_name
from podnet.proxy.render import counts, diff, full
from tests.conftest import sh


def svc(name, ip, port=80, rv="1", ns="default", proto="TCP", **spec):
    return {
        "metadata": {"namespace": ns, "name": name, "resourceVersion": rv},
        "spec": dict(clusterIP=ip, ports=[{"name": "p", "port": port, "protocol": proto}], **spec),
    }


def eps(name, ips, rv="1", ns="default", port=8080, proto="TCP"):
    return {
        "metadata": {
            "namespace": ns,
            "name": name + "-x",
            "resourceVersion": rv,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "p", "port": port, "protocol": proto}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "n1"} for ip in ips],
    }


def world(n):
    services = [svc("s%d" % i, "10.96.%d.%d" % (i // 250, i % 250 + 2)) for i in range(n)]
    slices = [eps("s%d" % i, ["10.244.1.%d" % (i % 250 + 2), "10.244.2.%d" % (i % 250 + 2)]) for i in range(n)]
    return services, slices


def test_one_endpoint_change_rewrites_only_that_service():
    p = Planner("n1")
    services, slices = world(50)
    p.replan_all(services, slices)
    old = p.plan(["192.168.1.10"])
    slices[7] = eps("s7", ["10.244.1.9", "10.244.3.3"], rv="2")
    p.update("default/s7", services[7], [slices[7]])
    new = p.plan(["192.168.1.10"])
    # only s7 planned again (and the skeleton: its hairpin pairs gained 10.244.3.3)
    assert {k for k in new if new[k] is not old.get(k)} == {"default/s7", ""}
    script = diff(old, new)
    assert "s7" in script and "s8" not in script and "s6" not in script
    assert "flush chain ip podnet-proxy %s" % chain_name("svc", "default/s7/tcp/80") in script
    assert "dnat to 10.244.3.3:8080" in script and "dnat to 10.244.2.9" not in script
    assert diff(new, new) == ""
    assert counts(new)[3] == 100


def test_service_removed_and_added():
    p = Planner("n1")
    services, slices = world(3)
    p.replan_all(services, slices)
    old = p.plan([])
    p.update("default/s0", None, [])
    p.update("default/new", svc("new", "10.96.9.9"), [])
    new = p.plan([])
    script = diff(old, new)
    assert "delete element ip podnet-proxy service-ips { 10.96.0.2 . tcp . 80 }" in script
    assert "delete element ip podnet-proxy cluster-ips { 10.96.0.2 }" in script
    assert "add element ip podnet-proxy no-endpoint-services { 10.96.9.9 . tcp . 80 : goto reject-chain }" in script
    # chains are deleted only after the elements that point at them
    lines = script.splitlines()
    first_delete = min(i for i, x in enumerate(lines) if x.startswith("delete chain"))
    assert all(not x.startswith(("delete element", "add element")) for x in lines[first_delete:])


def test_affinity_timeout_change_needs_full_sync():
    p = Planner("n1")
    a = svc("s", "10.96.0.2", sessionAffinity="ClientIP")
    sl = [eps("s", ["10.244.1.2"])]
    p.update("default/s", a, sl)
    old = p.plan([])
    b = svc(
        "s", "10.96.0.2", rv="2", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 5}}
    )
    p.update("default/s", b, sl)
    assert diff(old, p.plan([])) is None


class Informer:
    """What ProxyReconciler.sync reads of an informer: the local copies by
    store key (the real one keeps them the same way, fed by a watch)."""

    def __init__(self, objects=None):
        self.objects = dict(objects or {})

    def values(self):
        return list(self.objects.values())

    def get(self, key):
        return self.objects.get(key)


def _listing(ns):
    """The table as nft reads it back: {chain: [rules, in order]} and
    {set or map: (declaration, elements as a set)}. Rule order is what the
    kernel evaluates, so it is compared as a list; elements have no order."""
    doc = json.loads(sh(ns, "nft", "-j", "list", "table", "ip", "podnet-proxy").stdout)["nftables"]
    chains, sets = {}, {}
    for item in doc:
        if "chain" in item:
            c = item["chain"]
            chains[c["name"]] = {k: v for k, v in c.items() if k != "handle"}, []
        elif "rule" in item:
            r = item["rule"]
            chains[r["chain"]][1].append(json.dumps(r["expr"], sort_keys=True))
        elif "set" in item or "map" in item:
            kind = "set" if "set" in item else "map"
            decl = {k: v for k, v in item[kind].items() if k not in ("handle", "elem")}
            elements = {json.dumps(e, sort_keys=True) for e in item[kind].get("elem", [])}
            sets[kind + " " + decl["name"]] = json.dumps(decl, sort_keys=True), elements
    return chains, sets


def _nodes():
    node = {
        "metadata": {"name": "n1"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    return Informer({"/registry/minions/n1": node})


@pytest.mark.kernel
def test_partial_syncs_equal_a_full_sync(namespaces, tmp_path):
    """The agent's Services loop (ProxyReconciler.sync, fed as its informers
    feed it) through 25 random changes after its first sync: every one is a
    partial sync (its own counter says so), and the table they leave has
    every chain's rules in the same order as a full render of the same
    state, and the same sets and maps."""
    from podnet.kernel import netns
    from podnet.proxy.reconciler import SVC_PREFIX, ProxyReconciler

    partial, whole = namespaces.new("part"), namespaces.new("full")
    rnd = random.Random(7)
    services, slices = world(30)
    rec = ProxyReconciler("n1", None, "10.244.0.0/16", str(tmp_path))
    rec.services = Informer({SVC_PREFIX + "default/" + x["metadata"]["name"]: x for x in services})
    rec.slices = Informer({"/registry/endpointslices/default/" + x["metadata"]["name"]: x for x in slices})
    rec.nodes = _nodes()
    for key, obj in rec.slices.objects.items():
        rec._slice_changed(key, None, obj)

    def sync():
        with netns.Netns(partial) as ns, netns.entered(ns):
            rec.sync()

    sync()
    assert rec.syncs == {"full": 1, "partial": 0}
    rv = 2
    for _ in range(25):
        i = rnd.randrange(len(services))
        what = rnd.choice(["scale", "drop", "add", "affinity", "nodeport", "udp"])
        rv += 1
        name = services[i]["metadata"]["name"]
        if what == "scale":
            slices = [s for s in slices if s["metadata"]["name"] != name + "-x"]
            slices.append(
                eps(
                    name,
                    ["10.244.%d.%d" % (rnd.randrange(1, 4), rnd.randrange(2, 250)) for _ in range(rnd.randrange(0, 4))],
                    rv=str(rv),
                )
            )
        elif what == "drop":
            services.pop(i)
        elif what == "add":
            services.append(svc("n%d" % rv, "10.97.0.%d" % (rv % 250 + 2), rv=str(rv)))
            slices.append(eps("n%d" % rv, ["10.244.3.%d" % (rv % 250 + 2)], rv=str(rv)))
        elif what == "affinity":
            services[i] = svc(name, services[i]["spec"]["clusterIP"], rv=str(rv), sessionAffinity="ClientIP")
        elif what == "nodeport":
            services[i] = svc(name, services[i]["spec"]["clusterIP"], rv=str(rv), type="NodePort")
            services[i]["spec"]["ports"][0]["nodePort"] = 30000 + i
        else:
            services[i] = svc(name, services[i]["spec"]["clusterIP"], rv=str(rv), proto="UDP")
        # what the informers do: new copies, then the callbacks mark the Service pending
        before_svc, before_sl = dict(rec.services.objects), dict(rec.slices.objects)
        rec.services.objects = {SVC_PREFIX + "default/" + x["metadata"]["name"]: x for x in services}
        rec.slices.objects = {"/registry/endpointslices/default/" + x["metadata"]["name"]: x for x in slices}
        for key in set(before_svc) | set(rec.services.objects):
            if before_svc.get(key) is not rec.services.objects.get(key):
                rec._service_changed(key, before_svc.get(key), rec.services.objects.get(key))
        for key in set(before_sl) | set(rec.slices.objects):
            if before_sl.get(key) is not rec.slices.objects.get(key):
                rec._slice_changed(key, before_sl.get(key), rec.slices.objects.get(key))
        sync()
        # the partial path: a full sync would have counted as one
        assert rec.syncs["full"] == 1, "step %s went through a full sync" % what
    assert rec.syncs["partial"] >= 20  # every step that changed rules (a repeated nodePort change does not)
    fresh = Planner("n1", "10.244.0.0/16")  # the same state planned from scratch, rendered whole
    fresh.replan_all(services, slices)
    assert fresh.plan(["192.168.1.10"]).keys() == rec.applied.keys()
    sh(whole, "nft", "-f", "-", input=full(fresh.plan(["192.168.1.10"])))
    got, want = _listing(partial), _listing(whole)
    assert got[0].keys() == want[0].keys()
    for chain in want[0]:
        assert got[0][chain] == want[0][chain], "chain %s differs" % chain
    assert got[1] == want[1]
