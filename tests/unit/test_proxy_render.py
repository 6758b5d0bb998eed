"""Partial syncs (podnet.proxy.render.diff): pure checks of what a change
rewrites, and a kernel check that a chain of partial syncs leaves exactly the
table a full sync of the final state gives."""

import random
import re

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


def _normal(listing):
    # nft lists a dynamic set's members too; ours are empty here. Sort lines
    # inside each element block so element order does not matter.
    return sorted(re.sub(r"\s+", " ", x).strip() for x in listing.replace(",", "\n").splitlines() if x.strip())


@pytest.mark.kernel
def test_partial_syncs_equal_a_full_sync(namespaces):
    partial, whole = namespaces.new("part"), namespaces.new("full")
    rnd = random.Random(7)
    p = Planner("n1")
    services, slices = world(30)
    p.replan_all(services, slices)
    plan = p.plan(["192.168.1.10"])
    sh(partial, "nft", "-f", "-", input=full(plan))
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
        key = "default/" + name
        now = {x["metadata"]["name"]: x for x in services}
        p.update(key, now.get(name), [x for x in slices if x["metadata"]["name"] == name + "-x"])
        if what == "add":
            n = services[-1]["metadata"]["name"]
            p.update("default/" + n, services[-1], [x for x in slices if x["metadata"]["name"] == n + "-x"])
        new = p.plan(["192.168.1.10"])
        script = diff(plan, new)
        sh(partial, "nft", "-f", "-", input=full(new) if script is None else script)
        plan = new
    fresh = Planner("n1")  # the same state planned from scratch
    fresh.replan_all(services, slices)
    assert fresh.plan(["192.168.1.10"]).keys() == plan.keys()
    sh(whole, "nft", "-f", "-", input=full(fresh.plan(["192.168.1.10"])))
    got = sh(partial, "nft", "list", "table", "ip", "podnet-proxy").stdout
    want = sh(whole, "nft", "list", "table", "ip", "podnet-proxy").stdout
    assert _normal(got) == _normal(want)
