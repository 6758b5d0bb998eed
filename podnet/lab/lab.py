"""`podnet lab up|down|status`: a whole cluster on this machine.

up builds the topology (topology.py), installs the CNI plugins into the lab's
own bin dir, starts the controller manager and one agent per node (each in
its own session, recorded by PID and start time), waits until every node is
Ready with a podCIDR, applies the manifests and waits for their pods. Running
it again completes whatever is missing (a dead agent is restarted) and
applies the manifests again. down removes everything, also after a crash.
"""

import json
import os
import signal
import subprocess
import sys
import time

from podnet.controllers.nodelifecycle import GRACE, TOLERATION
from podnet.lab import topology as topo
from podnet.lab.topology import LabError


def store_url(lab):
    return "sqlite://" + os.path.join(topo.state_dir(lab), "store.db")


def objects_for(lab):
    """The lab's API, as its admin (reads from informers, writes to the server)."""
    from podnet.lab import control

    return control.cluster(lab)


COREDNS_USER = "system:serviceaccount:kube-system:coredns"


def _spawn(lab, role, argv, netns_name=None):
    if topo.alive(lab, role):
        return False
    logs = os.path.join(topo.state_dir(lab), "logs")
    os.makedirs(logs, exist_ok=True)
    cmd = (["nsenter", "--net=/run/netns/" + netns_name, "--"] if netns_name else []) + argv
    with open(os.path.join(logs, role + ".log"), "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    topo.record(lab, role, proc.pid)
    return True


def _podnet(*args):
    return [sys.executable, "-m", "podnet.cli.main", *args]


def _check_pool(pool):
    """The LoadBalancer pool must lie on the underlay, where the external
    host can reach it (one elected node answers ARP for each IP)."""
    import ipaddress

    from podnet.controllers.planners import LB_POOL

    try:
        net = ipaddress.ip_network(pool or LB_POOL)
    except ValueError as exc:
        raise LabError("--lb-pool: %s" % exc) from None
    if net.version != 4 or not net.subnet_of(topo.UNDERLAY) or net.num_addresses < 4:
        raise LabError(
            "--lb-pool: %s must be an IPv4 range of at least 4 addresses inside the underlay %s" % (net, topo.UNDERLAY)
        )
    if ipaddress.ip_address(topo.EXTERNAL_IP) in net or any(
        ipaddress.ip_address(topo.node_ip(i)) in net for i in range(20)
    ):
        raise LabError("--lb-pool: %s overlaps node or external host addresses" % net)
    return str(net)


def up(
    lab,
    nodes=2,
    manifests=(),
    progress=None,
    timeout=120,
    routing="vxlan",
    direct_routing=False,
    route_reflector=None,
    lb_pool=None,
    store=None,
    encryption=None,
    node_grace=None,
    pod_toleration=None,
    etcd_members=None,
):
    """-> the lab document. `progress(msg)` reports each step. store:
    "sqlite" (default) or "etcd" (a real etcd for the lab), chosen once;
    encryption: "none" (default) or "wireguard" between nodes, chosen once."""
    say = progress or (lambda msg: None)
    topo.check_name(lab)
    sdir = topo.state_dir(lab)
    os.makedirs(sdir, mode=0o700, exist_ok=True)
    os.chmod(sdir, 0o700)  # the store, the CA key and the tokens: root only
    doc = topo.load(lab) if os.path.exists(os.path.join(sdir, "lab.json")) else None
    if doc is None:
        names = ["node%d" % (i + 1) for i in range(nodes)]
        doc = {
            "name": lab,
            "store": store_url(lab),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "nodes": [{"name": n, "ip": topo.node_ip(i), "netns": topo.ns_name(lab, n)} for i, n in enumerate(names)],
            "external": {"ip": topo.EXTERNAL_IP, "netns": topo.ns_name(lab, "ext")},
            "routing": {"mode": routing or "vxlan", "directRouting": direct_routing, "routeReflector": route_reflector},
            "clusterCIDR": "10.244.0.0/16",
            "loadBalancerPool": _check_pool(lb_pool),
            "underlay": {"netns": topo.ns_name(lab, "u"), "cidr": str(topo.UNDERLAY)},
            "storeBackend": store or "sqlite",
            "encryption": _check_encryption(encryption),
            # node lifecycle (issue 12): heartbeat grace and the unreachable toleration, seconds
            "nodeLifecycle": {"grace": float(node_grace or GRACE), "toleration": float(pod_toleration or TOLERATION)},
        }
        if etcd_members:
            if store != "etcd":
                raise LabError("--etcd-members needs --store etcd")
            doc["etcdMembers"] = int(etcd_members)
        topo.save(lab, doc)
    else:
        have_store = doc.get("storeBackend", "sqlite")
        if store and store != have_store:
            raise LabError(
                "lab %s keeps its state in %s; 'podnet lab down' it first to change to %s" % (lab, have_store, store)
            )
        if nodes and nodes != len(doc["nodes"]):
            say("lab %s already has %d nodes; keeping them (podnet lab add-node adds one)" % (lab, len(doc["nodes"])))
        have = doc.get("routing", {}).get("mode", "vxlan")
        if routing and routing != have:
            raise LabError("lab %s routes with %s; 'podnet lab down' it first to change to %s" % (lab, have, routing))
        have = doc.get("encryption", "none")
        if encryption and _check_encryption(encryption) != have:
            raise LabError(
                "lab %s runs with encryption %s; 'podnet lab down' it first to change to %s" % (lab, have, encryption)
            )
    say("network: underlay, %d nodes, external host" % len(doc["nodes"]))
    topo.build(lab, [n["name"] for n in doc["nodes"]], ips={n["name"]: n["ip"] for n in doc["nodes"]})
    from podnet.cni.install import install

    install(os.path.join(sdir, "bin"))
    from podnet.image.build import ensure_built

    ensure_built(say)  # busybox and nginx images, once per machine (podnet/image/build.py)
    from podnet.lab import control

    control.ensure_credentials(lab, doc)
    if doc.get("storeBackend") == "etcd" and doc.get("etcdMembers"):
        from podnet.lab import etcdcluster

        say("etcd cluster of %d members, each in its own namespace" % doc["etcdMembers"])
        doc["store"] = etcdcluster.start(lab, doc, _spawn)
        topo.save(lab, doc)
    elif doc.get("storeBackend") == "etcd":
        say("etcd (the lab's store)")
        doc["store"] = control.start_etcd(lab, doc, _spawn)
        topo.save(lab, doc)
    say(
        "API server on https://127.0.0.1:%d (and %s inside the lab)"
        % (control.api_port(lab, doc), control.internal_server())
    )
    # the agents reach the API server on the underlay address and wait for it
    # themselves, so they start (Python, imports) while it does
    respawn = {}
    agents_first = control.apiserver_running(lab)
    if not agents_first:
        _spawn_agents(lab, doc, say, respawn)
    control.start_apiserver(lab, doc, _spawn)
    say("controller manager")
    _spawn(lab, "controllers", _podnet("lab", "controllers", "--lab", lab))
    if doc.get("routing", {}).get("mode") == "bgp":
        say("BGP router on the external host (learns podCIDRs and LoadBalancer IPs)")
        external_router(lab, doc)
    say("external resolver (the lab's internet) on %s" % doc["external"]["ip"])
    _start_external_dns(lab, doc)
    objects = objects_for(lab)
    if agents_first:
        _spawn_agents(lab, doc, say, respawn)
    wait_nodes(lab, objects, [n["name"] for n in doc["nodes"]], timeout, say, respawn)
    from podnet.dns import addon

    say("kube-dns addon (Service kube-system/kube-dns, %s)" % addon.CLUSTER_DNS)
    apply_text(objects, addon.manifest_text(control.token_kubeconfig(lab, "coredns", COREDNS_USER)), "kube-dns addon")
    from podnet.ingress import addon as ingress_addon

    ingress_addon.install(lab, apply_text, objects, say)
    applied = []
    for text, source in manifests:
        applied += apply_text(objects, text, source)
    if applied:
        say("waiting for pods to be Ready")
        wait_pods_ready(objects, timeout, say, expect=expected_pods(objects))
    return doc, applied


def _check_encryption(value):
    from podnet.routing.wireguard import check_encryption

    try:
        return check_encryption(value)
    except ValueError as exc:
        raise LabError("--encryption: %s" % exc) from None


def _agent_argv(lab, doc, node):
    """The agent of `node`, with the lab's encryption on its command line
    (lab.json keeps it, so an agent started later gets the same)."""
    return _podnet("agent", "--lab", lab, "--node", node, "--encryption", doc.get("encryption", "none"))


def _spawn_agents(lab, doc, say, respawn):
    """One agent per node; an agent found running (not started now) may be
    on its way out (it got SIGTERM a moment ago): if it exits while we wait,
    wait_nodes starts it again once (respawn)."""
    from podnet.lab import control

    for n in doc["nodes"]:
        say("agent on %s" % n["name"])
        _write_node_resolv_conf(lab, doc, n["name"])
        control.node_kubeconfig(lab, n["name"])  # its token, made here rather than by each agent
        argv = _agent_argv(lab, doc, n["name"])
        if not _spawn(lab, "agent-" + n["name"], argv, n["netns"]):
            respawn["agent-" + n["name"]] = (argv, n["netns"])


def _start_external_dns(lab, doc):
    """podnet's DNS server with static records on the external host,
    recorded in procs.json like every lab process (lab down stops it)."""
    from podnet.dns import addon

    path = os.path.join(topo.state_dir(lab), "external.zone")
    with open(path, "w") as f:
        f.write(addon.external_zone(doc["external"]["ip"]))
    _spawn(
        lab,
        "external-dns",
        [
            sys.executable,
            "-m",
            "podnet.dns",
            "serve",
            "--static",
            path,
            "--listen",
            doc["external"]["ip"],
            "--workers",
            "1",
            "--no-forward",
        ],
        doc["external"]["netns"],
    )


def _write_node_resolv_conf(lab, doc, node):
    """<node dir>/resolv.conf: the node's resolver (dnsPolicy Default), the external host."""
    from podnet.dns import addon

    node_dir = os.path.join(topo.state_dir(lab), "nodes", node)
    os.makedirs(node_dir, exist_ok=True)
    with open(os.path.join(node_dir, "resolv.conf"), "w") as f:
        f.write(addon.node_resolv_conf(doc["external"]["ip"]))


def wait_nodes(lab, objects, names, timeout, say, respawn=None):
    respawn = dict(respawn or {})
    deadline = time.time() + timeout
    while True:
        ready = [
            n
            for n in objects.list("Node")
            if n["metadata"]["name"] in names
            and n["spec"].get("podCIDR")
            and any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        ]
        if len(ready) == len(names):
            return
        dead = [r for r, p in topo.processes(lab).items() if not p["alive"]]
        for role in [r for r in dead if r in respawn]:
            say("%s exited as we started; starting it again" % role)
            _spawn(lab, role, *respawn.pop(role))
            dead.remove(role)
        if dead:
            logs = os.path.join(topo.state_dir(lab), "logs")
            tails = []
            from podnet.agent.logrotate import tail

            for role in dead:  # the last words of each (rotated logs too), so the error alone says why
                last = tail(os.path.join(logs, role + ".log"), 12).rstrip()
                if last:
                    tails.append("--- %s.log:\n%s" % (role, last))
            raise LabError("%s exited; see %s\n%s" % (", ".join(dead), logs, "\n".join(tails)))
        if time.time() > deadline:
            raise LabError("nodes not Ready after %d s (%d of %d)" % (timeout, len(ready), len(names)))
        time.sleep(0.1)


def expected_pods(objects):
    """How many pods the cluster should have: bare pods plus every
    Deployment's replicas (the controller may not have made them yet)."""
    bare = [p for p in objects.list("Pod") if not p["metadata"].get("ownerReferences")]
    return len(bare) + sum(d["spec"].get("replicas", 1) for d in objects.list("Deployment"))


def wait_pods_ready(objects, timeout, say=None, namespace=None, expect=0):
    deadline = time.time() + timeout
    shown = None
    while True:
        pods = [p for p in objects.list("Pod", namespace) if not p["metadata"].get("deletionTimestamp")]
        ready = [
            p
            for p in pods
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
        ]
        done = [p for p in pods if p.get("status", {}).get("phase") in ("Succeeded", "Failed")]
        if len(ready) + len(done) == len(pods) and len(pods) >= expect:
            return pods
        if say and (len(ready), len(pods)) != shown:
            shown = (len(ready), len(pods))
            say("%d/%d pods Ready" % (len(ready), max(len(pods), expect)))
        if time.time() > deadline:
            raise LabError(
                "pods not Ready after %d s: %s"
                % (timeout, ", ".join(p["metadata"]["name"] for p in pods if p not in ready and p not in done))
            )
        time.sleep(0.1)


def apply_text(objects, text, source):
    """Validate every document first, then apply them in order."""
    from podnet.api import parse_manifests

    docs = parse_manifests(text, source)
    client = getattr(objects, "client", objects)  # a fresh read, not an informer's copy
    out = []
    for obj in docs:
        if obj["kind"] in ("Namespace",):
            pass
        elif obj["metadata"].get("namespace") and client.find("Namespace", None, obj["metadata"]["namespace"]) is None:
            if obj["metadata"]["namespace"] != "default" and not any(
                d["kind"] == "Namespace" and d["metadata"]["name"] == obj["metadata"]["namespace"] for d in docs
            ):
                raise LabError('%s: namespace "%s" not found' % (source, obj["metadata"]["namespace"]))
    for obj in docs:
        applied, what = objects.apply(obj)
        out.append((applied, what))
    return out


def ensure_default_namespaces(objects):
    for ns in ("default", "kube-system", "kube-node-lease"):
        if objects.find("Namespace", None, ns) is None:
            objects.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})


def add_node(lab, timeout=60):
    """A new node: plugged into the underlay, its agent started; the other
    agents route to it as soon as its Node has a podCIDR."""
    doc = topo.load(lab)
    taken = {n["name"] for n in doc["nodes"]}
    i = len(doc["nodes"])
    while "node%d" % (i + 1) in taken:
        i += 1
    name = "node%d" % (i + 1)
    used_ips = {n["ip"] for n in doc["nodes"]}
    ip = next(topo.node_ip(k) for k in range(200) if topo.node_ip(k) not in used_ips)
    doc["nodes"].append({"name": name, "ip": ip, "netns": topo.ns_name(lab, name)})
    topo.save(lab, doc)
    topo.build(lab, [n["name"] for n in doc["nodes"]], ips={n["name"]: n["ip"] for n in doc["nodes"]})
    _write_node_resolv_conf(lab, doc, name)
    _spawn(lab, "agent-" + name, _agent_argv(lab, doc, name), topo.ns_name(lab, name))
    external_router(lab, doc)
    wait_nodes(lab, objects_for(lab), [name], timeout, lambda m: None)
    return name


def remove_node(lab, node):
    """Stop the node's agent, everything running in its namespaces, delete
    its namespaces, its Node and the pods bound to it (a Deployment replaces
    them elsewhere). The other agents drop its routes on their next pass."""
    doc = topo.load(lab)
    if node not in {n["name"] for n in doc["nodes"]}:
        raise LabError("no node %r in lab %s" % (node, lab))
    from podnet.agent.agent import pod_netns
    from podnet.client import NotFound
    from podnet.kernel import netns

    objects = objects_for(lab)
    topo.stop_recorded(lab, roles=["agent-" + node])
    pods = [p for p in objects.list("Pod") if p["spec"].get("nodeName") == node]
    names = [topo.ns_name(lab, node)] + [pod_netns(lab, p["metadata"]["uid"]) for p in pods]
    netns.kill_processes_in(names)
    for name in reversed(names):
        netns.delete(name)
    from podnet.image import store as image_store

    image_store.cleanup(image_store.Store(os.path.join(topo.state_dir(lab), "nodes", node, "podman")))
    for p in pods:
        try:
            objects.delete("Pod", p["metadata"]["namespace"], p["metadata"]["name"], grace=0)
        except NotFound:
            pass
    try:
        objects.delete("Node", None, node)
    except NotFound:
        pass
    doc["nodes"] = [n for n in doc["nodes"] if n["name"] != node]
    topo.save(lab, doc)
    external_router(lab, doc)
    import shutil

    shutil.rmtree(os.path.join(topo.state_dir(lab), "nodes", node), ignore_errors=True)


def external_router(lab, doc):
    """bgp labs: a BIRD on the external host that peers with every node, as
    the upstream router a real cluster's nodes would peer with; that is how
    the external host reaches LoadBalancer IPs. Other modes: nothing. The
    daemon runs in the external namespace, so `lab down` stops it with
    everything else running there."""
    if doc.get("routing", {}).get("mode") != "bgp":
        return None
    from podnet.routing.bgp import Bird, render_upstream_config

    bird = Bird("/run/netns/" + doc["external"]["netns"], os.path.join(topo.state_dir(lab), "external-bird"))
    return bird.ensure(render_upstream_config(doc["external"]["ip"], [(n["name"], n["ip"]) for n in doc["nodes"]]))


def down(lab):
    topo.destroy(lab)


def status(lab):
    doc = topo.load(lab)
    return doc, topo.processes(lab)


def run_controllers(lab):
    """`podnet lab controllers`: the controller manager's process."""
    import logging
    import threading

    from podnet.controllers.manager import Manager

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from podnet.client import connect
    from podnet.lab import control

    stop = threading.Event()
    objects = connect(control.component_kubeconfig(lab, "controllers"), "podnet-controllers", stop)
    objects.client.wait_ready(stop)
    ensure_default_namespaces(objects)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    from podnet.agent import logrotate

    # one rotator per lab for every lab process's stdout/stderr (<lab>/logs)
    logrotate.start_for_lab(os.path.join(topo.state_dir(lab), "logs"), stop)
    from podnet.controllers.planners import LB_POOL

    doc = topo.load(lab)
    life = doc.get("nodeLifecycle") or {}
    Manager(
        objects,
        lb_pool=doc.get("loadBalancerPool", LB_POOL),
        node_grace=life.get("grace", GRACE),
        node_toleration=life.get("toleration", TOLERATION),
    ).run(stop)


def rotate_keys(lab, node, timeout=30.0):
    """`podnet lab rotate-keys NODE`: a new WireGuard key pair for the node.
    The new private key replaces <node dir>/wireguard.key (0600, atomically);
    SIGHUP wakes the node's agent (by its recorded PID), which sets the key
    on podnet.wg and publishes the public key; every other agent follows the
    Node. -> (old public key, new public key) once the Node shows the new one."""
    doc = topo.load(lab)
    if doc.get("encryption", "none") != "wireguard":
        raise LabError("lab %s runs without encryption ('podnet lab up --encryption wireguard')" % lab)
    if node not in {n["name"] for n in doc["nodes"]}:
        raise LabError("no node %r in lab %s" % (node, lab))
    from podnet.routing import wgapply
    from podnet.routing import wireguard as wgp

    path = os.path.join(topo.state_dir(lab), "nodes", node, wgp.KEY_FILE)
    old = wgp.public_key(wgapply.read_key(path)) if os.path.exists(path) else None
    key = wgp.generate_private_key()
    wgapply.write_key(path, key)
    new = wgp.public_key(key)
    proc = topo.processes(lab).get("agent-" + node)
    if proc and proc["alive"]:
        os.kill(proc["pid"], signal.SIGHUP)  # else: its next start reads the new key
    objects = objects_for(lab)
    deadline = time.time() + timeout
    while True:
        n = objects.client.find("Node", None, node)
        if n and (n["metadata"].get("annotations") or {}).get(wgp.ANN_KEY) == new:
            return old, new
        if time.time() > deadline:
            raise LabError("node %s did not take its new key within %d s (is its agent running?)" % (node, timeout))
        time.sleep(0.1)


def run_agent(lab, node, kubeconfig=None, encryption=None):
    import logging
    import threading

    from podnet.agent.agent import Agent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    doc = topo.load(lab)
    ip = next(n["ip"] for n in doc["nodes"] if n["name"] == node)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # SIGHUP (`lab rotate-keys` wrote a new key): a routing pass now; set
    # before anything else, so an early one does not end the agent
    wake = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: wake.set())
    encryption = _check_encryption(encryption or doc.get("encryption"))
    from podnet.routing.reconciler import RoutingReconciler

    r = doc.get("routing", {})
    from podnet.client import connect
    from podnet.lab import control

    objects = connect(kubeconfig or control.node_kubeconfig(lab, node), "podnet-agent/" + node, stop)
    objects.client.wait_ready(stop)  # lab up starts the agents while the API server starts
    node_dir = os.path.join(topo.state_dir(lab), "nodes", node)
    upstreams = [("external", doc["external"]["ip"])] if r.get("mode") == "bgp" else []
    routing = RoutingReconciler(
        r.get("mode", "vxlan"),
        node,
        objects,
        doc["underlay"]["cidr"],
        doc.get("clusterCIDR", "10.244.0.0/16"),
        "/run/netns/" + topo.ns_name(lab, node),
        os.path.join(node_dir, "bird"),
        r.get("directRouting", False),
        r.get("routeReflector"),
        upstreams=upstreams,
        encryption=encryption,
        node_dir=node_dir,
        dirty=wake,
    )
    from podnet.policy.reconciler import PolicyReconciler
    from podnet.proxy.reconciler import ProxyReconciler

    cluster_cidr = doc.get("clusterCIDR", "10.244.0.0/16")
    extras = [
        ProxyReconciler(node, objects, cluster_cidr, node_dir, mode=r.get("mode", "vxlan")),
        PolicyReconciler(node, objects, cluster_cidr),
    ]
    from podnet.agent import watchmetrics  # noqa: F401 - registers the informer counters on /metrics
    from podnet.agent.lease import LeaseRenewer

    # the heartbeat; after a gap longer than the grace it fences the node's LoadBalancer IPs first
    renewer = LeaseRenewer(objects, node, (doc.get("nodeLifecycle") or {}).get("grace", GRACE), fence=extras[0].fence)
    extras[0].may_announce = renewer.may_announce
    extras.append(renewer)
    agent = Agent(
        lab, node, ip, objects, node_dir, os.path.join(topo.state_dir(lab), "bin"), routing=routing, extras=extras
    )
    agent.run(stop)


def dump(doc):
    return json.dumps(doc, indent=1)
