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
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": rv},
            "spec": dict(clusterIP=ip, ports=[{"name": "p", "port": port, "protocol": proto}], **spec)}


def eps(name, ips, rv="1", ns="default", port=8080, proto="TCP"):
    return {"metadata": {"namespace": ns, "name": name + "-x", "resourceVersion": rv,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "p", "port": port, "protocol": proto}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "n1"} for ip in ips]}


def world(n):
    services = [svc("s%d" % i, "10.96.%d.%d" % (i // 250, i % 250 + 2)) for i in range(n)]
    slices = [eps("s%d" % i, ["10.244.1.%d" % (i % 250 + 2), "10.244.2.%d" % (i % 250 + 2)]) for i in range(n)]
    return services, slices


def test_one_endpoint_change_rewrites_only_that_service():
    p = Planner("n1")
    services, slices = world(50)
    old = p.plan(services, slices, ["192.168.1.10"])
    slices[7] = eps("s7", ["10.244.1.9", "10.244.3.3"], rv="2")
    new = p.plan(services, slices, ["192.168.1.10"])
    assert sum(1 for k in new if new[k] is not old.get(k)) == 1      # only s7 planned again
    script = diff(old, new)
    assert "s7" in script and "s8" not in script and "s6" not in script
    assert "delete chain ip podnet-proxy %s" % chain_name("ep", "default/s7/tcp/80__10.244.2.9/8080") in script
    assert "dnat to 10.244.3.3:8080" in script and "dnat to 10.244.1.9" not in script
    assert diff(new, new) == ""
    assert counts(new)[3] == 100


def test_service_removed_and_added():
    p = Planner("n1")
    services, slices = world(3)
    old = p.plan(services, slices, [])
    new = p.plan(services[1:] + [svc("new", "10.96.9.9")], slices, [])
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
    old = p.plan([a], sl, [])
    b = svc("s", "10.96.0.2", rv="2", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 5}})
    assert diff(old, p.plan([b], sl, [])) is None


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
    plan = p.plan(services, slices, ["192.168.1.10"])
    sh(partial, "nft", "-f", "-", input=full(plan))
    rv = 2
    for step in range(25):
        i = rnd.randrange(len(services))
        what = rnd.choice(["scale", "drop", "add", "affinity", "nodeport", "udp"])
        rv += 1
        name = services[i]["metadata"]["name"]
        if what == "scale":
            slices = [s for s in slices if s["metadata"]["name"] != name + "-x"]
            slices.append(eps(name, ["10.244.%d.%d" % (rnd.randrange(1, 4), rnd.randrange(2, 250))
                                     for _ in range(rnd.randrange(0, 4))], rv=str(rv)))
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
        new = p.plan(services, slices, ["192.168.1.10"])
        script = diff(plan, new)
        sh(partial, "nft", "-f", "-", input=full(new) if script is None else script)
        plan = new
    sh(whole, "nft", "-f", "-", input=full(plan))
    got = sh(partial, "nft", "list", "table", "ip", "podnet-proxy").stdout
    want = sh(whole, "nft", "list", "table", "ip", "podnet-proxy").stdout
    assert _normal(got) == _normal(want)
