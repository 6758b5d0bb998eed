"""Who may use a Service's external addresses, in a 3-node lab: a
LoadBalancer's loadBalancerSourceRanges (kube-proxy's firewall check), and
pods reaching the external address of a Service whose traffic policies are
both Local from a node without an endpoint (kube-proxy's short-circuit).
Traffic from real pods and from the external host, which gets a second
underlay address inside the lab so that one source is listed and one not."""

import json
import os

import pytest

from tests.kernel.test_lab import Lab, leftovers
from tests.kernel.test_services import AGNHOST, deployment

pytestmark = pytest.mark.kernel

LISTED = "192.168.200.100"  # the external host's own address
UNLISTED = "192.168.200.101"  # its second one, outside the ranges
EXTERNAL_IP = "192.168.201.8"

MANIFESTS = """apiVersion: v1
kind: Service
metadata: {name: ranged}
spec:
  type: LoadBalancer
  selector: {app: web}
  loadBalancerSourceRanges: [%s/32, 10.99.0.0/16]
  ports: [{port: 80, targetPort: 8080, nodePort: 30090}]
---
apiVersion: v1
kind: Pod
metadata: {name: lone, labels: {app: lone}}
spec:
  nodeName: node3
  containers:
  - name: netexec
    image: %s
    args: [netexec, --http-port=8080]
    readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: lone}
spec:
  type: LoadBalancer
  internalTrafficPolicy: Local
  externalTrafficPolicy: Local
  externalIPs: [%s]
  selector: {app: lone}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: far}
spec:
  nodeName: node1
  containers:
  - {name: pause, image: registry.k8s.io/pause:3.9}
---
apiVersion: v1
kind: Pod
metadata: {name: near}
spec:
  nodeName: node3
  containers:
  - {name: pause, image: registry.k8s.io/pause:3.9}
""" % (LISTED, AGNHOST, EXTERNAL_IP)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("p%d" % (os.getpid() % 100000), root)
    lab.root = root
    try:
        lab.run(
            "lab",
            "up",
            "--name",
            lab.name,
            "--nodes",
            "3",
            "-f",
            "-",
            "--timeout",
            "90",
            input=deployment("web", 3) + "---\n" + MANIFESTS,
            timeout=150,
        )
        lab.doc = json.load(open(os.path.join(root, lab.name, "lab.json")))
        # a second source on the external host (inside the lab's own namespace)
        lab.run("lab", "exec", "external", "--", "ip", "addr", "add", UNLISTED + "/24", "dev", "eth0")
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def svc(lab, name):
    return json.loads(lab.run("get", "svc", name, "-o", "json").stdout)


def lb_ip(lab, name):
    ing = lab.wait(
        name + " LoadBalancer ingress",
        lambda: svc(lab, name).get("status", {}).get("loadBalancer", {}).get("ingress"),
        60,
    )
    return ing[0]["ip"]


def ready_endpoints(lab, name):
    sl = lab.get("endpointslices", "-l", "kubernetes.io/service-name=" + name)
    return [e for s in sl for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")]


def curl(lab, where, url, source=None, timeout=3):
    """(curl's exit code, body): 0 served, 28 timed out (dropped), 7 refused."""
    argv = ["curl", "-s", "-m", str(timeout)] + (["--interface", source] if source else []) + [url]
    prefix = ["lab", "exec", where] if where in ("external", "node1", "node2", "node3") else ["exec", where]
    res = lab.run(*prefix, "--", *argv, check=False, timeout=60)
    return res.returncode, res.stdout.strip()


def served(lab, where, url, source=None):
    """Waits until it answers: the rules and the LoadBalancer IP's owner
    settle a moment after the Service gets its address."""
    last = [None]

    def ok():
        last[0] = curl(lab, where, url, source)
        return last[0][0] == 0

    try:
        lab.wait("%s -> %s" % (where, url), ok, 30)
    except AssertionError:
        raise AssertionError("%s -> %s from %s: never served, curl says %r" % (where, url, source, last[0])) from None


def test_source_ranges_drop_unlisted_clients_at_the_load_balancer_ip_only(lab):
    lab.wait("ranged endpoints", lambda: len(ready_endpoints(lab, "ranged")) == 3, 60)
    ip = lb_ip(lab, "ranged")
    url = "http://%s/clientip" % ip
    served(lab, "external", url, LISTED)
    for _ in range(3):
        rc, body = curl(lab, "external", url, LISTED)
        assert rc == 0 and body, (rc, body)
    # outside the ranges: dropped (curl times out, 28), every time
    for _ in range(2):
        rc, body = curl(lab, "external", url, UNLISTED)
        assert (rc, body) == (28, ""), (rc, body)
    # the NodePort of the same Service is not subject to the ranges: open to both
    for node in lab.doc["nodes"]:
        for source in (LISTED, UNLISTED):
            rc, body = curl(lab, "external", "http://%s:30090/clientip" % node["ip"], source)
            assert rc == 0 and body, (node["name"], source, rc, body)
    # what each node's table holds for it
    rules = lab.run("rules", "node2", "--service", "ranged").stdout
    assert "ip saddr %s return" % LISTED in rules and "ip saddr 10.99.0.0/16 return" in rules, rules
    # nor is the ClusterIP, from a pod
    rc, body = curl(lab, "far", "http://%s/hostname" % svc(lab, "ranged")["spec"]["clusterIP"])
    assert rc == 0 and body.startswith("web-"), (rc, body)


def test_pods_reach_the_external_addresses_of_a_local_local_service_from_any_node(lab):
    lab.wait("lone ready", lambda: len(ready_endpoints(lab, "lone")) == 1, 60)
    ip = lb_ip(lab, "lone")
    # `far` is on node1, the only endpoint on node3: both policies are Local,
    # yet a pod's connection to an external address goes to every endpoint
    for front in (EXTERNAL_IP, ip):
        served(lab, "far", "http://%s/hostname" % front)
        assert curl(lab, "far", "http://%s/hostname" % front) == (0, "lone")
    # the ClusterIP from node1 stays subject to internalTrafficPolicy Local: not
    # served (dropped, 28; or 7 while the node has no route for the Service range)
    cip = svc(lab, "lone")["spec"]["clusterIP"]
    rc, body = curl(lab, "far", "http://%s/hostname" % cip)
    assert rc in (7, 28) and body == "", (rc, body)
    # and from the endpoint's own node it is served
    assert curl(lab, "near", "http://%s/hostname" % cip) == (0, "lone")
    # outside clients still follow externalTrafficPolicy Local (served on node3, their address kept)
    served(lab, "external", "http://%s/clientip" % ip, LISTED)
    assert curl(lab, "external", "http://%s/clientip" % ip, LISTED)[1].startswith(LISTED + ":")
