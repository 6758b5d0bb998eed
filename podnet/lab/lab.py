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
import subprocess
import sys
import time

from podnet.lab import topology as topo
from podnet.lab.topology import LabError


def store_url(lab):
    return "sqlite://" + os.path.join(topo.state_dir(lab), "store.db")


def objects_for(lab):
    from podnet.store.base import open_store
    from podnet.store.objects import Objects
    return Objects(open_store(store_url(lab)))


def _spawn(lab, role, argv, netns_name=None):
    if topo.alive(lab, role):
        return False
    logs = os.path.join(topo.state_dir(lab), "logs")
    os.makedirs(logs, exist_ok=True)
    cmd = (["nsenter", "--net=/run/netns/" + netns_name, "--"] if netns_name else []) + argv
    with open(os.path.join(logs, role + ".log"), "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    topo.record(lab, role, proc.pid)
    return True


def _podnet(*args):
    return [sys.executable, "-m", "podnet.cli.main", *args]


def up(lab, nodes=2, manifests=(), progress=None, timeout=120):
    """-> the lab document. `progress(msg)` reports each step."""
    say = progress or (lambda msg: None)
    topo.check_name(lab)
    sdir = topo.state_dir(lab)
    os.makedirs(sdir, exist_ok=True)
    doc = topo.load(lab) if os.path.exists(os.path.join(sdir, "lab.json")) else None
    if doc is None:
        names = ["node%d" % (i + 1) for i in range(nodes)]
        doc = {"name": lab, "store": store_url(lab), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "nodes": [{"name": n, "ip": topo.node_ip(i), "netns": topo.ns_name(lab, n)} for i, n in enumerate(names)],
               "external": {"ip": topo.EXTERNAL_IP, "netns": topo.ns_name(lab, "ext")},
               "underlay": {"netns": topo.ns_name(lab, "u"), "cidr": str(topo.UNDERLAY)}}
        topo.save(lab, doc)
    elif nodes and nodes != len(doc["nodes"]):
        say("lab %s already has %d nodes; keeping them" % (lab, len(doc["nodes"])))
    say("network: underlay, %d nodes, external host" % len(doc["nodes"]))
    topo.build(lab, [n["name"] for n in doc["nodes"]])
    from podnet.cni.install import install
    install(os.path.join(sdir, "bin"))
    say("controller manager")
    _spawn(lab, "controllers", _podnet("lab", "controllers", "--lab", lab))
    for n in doc["nodes"]:
        say("agent on %s" % n["name"])
        _spawn(lab, "agent-" + n["name"], _podnet("agent", "--lab", lab, "--node", n["name"]), n["netns"])
    objects = objects_for(lab)
    wait_nodes(lab, objects, [n["name"] for n in doc["nodes"]], timeout, say)
    applied = []
    for text, source in manifests:
        applied += apply_text(objects, text, source)
    if applied:
        say("waiting for pods to be Ready")
        wait_pods_ready(objects, timeout, say, expect=expected_pods(objects))
    return doc, applied


def wait_nodes(lab, objects, names, timeout, say):
    deadline = time.time() + timeout
    while True:
        ready = [n for n in objects.list("Node") if n["metadata"]["name"] in names and n["spec"].get("podCIDR")
                 and any(c.get("type") == "Ready" and c.get("status") == "True"
                         for c in n.get("status", {}).get("conditions", []))]
        if len(ready) == len(names):
            return
        dead = [r for r, p in topo.processes(lab).items() if not p["alive"]]
        if dead:
            raise LabError("%s exited; see %s" % (", ".join(dead), os.path.join(topo.state_dir(lab), "logs")))
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
        ready = [p for p in pods if any(c.get("type") == "Ready" and c.get("status") == "True"
                                        for c in p.get("status", {}).get("conditions", []))]
        done = [p for p in pods if p.get("status", {}).get("phase") in ("Succeeded", "Failed")]
        if len(ready) + len(done) == len(pods) and len(pods) >= expect:
            return pods
        if say and (len(ready), len(pods)) != shown:
            shown = (len(ready), len(pods))
            say("%d/%d pods Ready" % (len(ready), max(len(pods), expect)))
        if time.time() > deadline:
            raise LabError("pods not Ready after %d s: %s" % (timeout, ", ".join(
                p["metadata"]["name"] for p in pods if p not in ready and p not in done)))
        time.sleep(0.1)


def apply_text(objects, text, source):
    """Validate every document first, then apply them in order."""
    from podnet.api import parse_manifests
    docs = parse_manifests(text, source)
    out = []
    for obj in docs:
        if obj["kind"] in ("Namespace",):
            pass
        elif obj["metadata"].get("namespace") and objects.find("Namespace", None, obj["metadata"]["namespace"]) is None:
            if obj["metadata"]["namespace"] != "default" and not any(
                    d["kind"] == "Namespace" and d["metadata"]["name"] == obj["metadata"]["namespace"] for d in docs):
                raise LabError('%s: namespace "%s" not found' % (source, obj["metadata"]["namespace"]))
    for obj in docs:
        applied, what = objects.apply(obj)
        out.append((applied, what))
    return out


def ensure_default_namespaces(objects):
    for ns in ("default", "kube-system"):
        if objects.find("Namespace", None, ns) is None:
            objects.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})


def down(lab):
    topo.destroy(lab)


def status(lab):
    doc = topo.load(lab)
    return doc, topo.processes(lab)


def run_controllers(lab):
    """`podnet lab controllers`: the controller manager's process."""
    import logging
    import signal
    import threading
    from podnet.controllers.manager import Manager
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    objects = objects_for(lab)
    ensure_default_namespaces(objects)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    Manager(objects).run(stop)


def run_agent(lab, node):
    import logging
    import signal
    import threading
    from podnet.agent.agent import Agent
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    doc = topo.load(lab)
    ip = next(n["ip"] for n in doc["nodes"] if n["name"] == node)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    agent = Agent(lab, node, ip, objects_for(lab), os.path.join(topo.state_dir(lab), "nodes", node),
                  os.path.join(topo.state_dir(lab), "bin"))
    agent.run(stop)


def dump(doc):
    return json.dumps(doc, indent=1)
