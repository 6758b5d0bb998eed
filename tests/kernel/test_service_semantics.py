"""Service, EndpointSlice and DNS semantics where podnet must answer as
Kubernetes does (issue 19), seen by clients in a 2-node lab:

- publishNotReadyAddresses: a pod that never becomes Ready is served through
  the ClusterIP of a Service with the flag (its endpoints are ready), and a
  Service without it refuses the connection;
- endpoint hostnames: `<hostname>.<svc>` exists only in the headless Service
  that the pod's subdomain names; any other one that selects the pod says
  NXDOMAIN;
- ClusterIPs from the node's own network namespace: a hostNetwork pod with
  dnsPolicy ClusterFirstWithHostNet asks the cluster DNS, and curl on a node
  reaches a ClusterIP (before: "Network is unreachable").
"""

import json
import os
import time

import pytest

from tests.kernel.test_lab import Lab, leftovers, ready

pytestmark = pytest.mark.kernel

CLUSTER_DNS = "10.96.0.10"


def netexec(name, node, labels):
    return """apiVersion: v1
kind: Pod
metadata: {name: %s, labels: %s}
spec:
  nodeName: %s
  containers:
  - {name: web, image: agnhost, args: [netexec, --http-port=8080], ports: [{containerPort: 8080}]}
""" % (name, labels, node)


MANIFEST = (
    netexec("web1", "node1", "{app: web}")
    + "---\n"
    + netexec("web2", "node2", "{app: web}")
    + """---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, labels: {app: db}}
spec:
  nodeName: node2
  hostname: db-0
  subdomain: db
  containers: [{name: db, image: agnhost, args: [pause]}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: db-mirror}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node1
  containers: [{name: c, image: agnhost, args: [pause]}]
---
apiVersion: v1
kind: Pod
metadata: {name: hostnet}
spec:
  nodeName: node1
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  containers: [{name: c, image: agnhost, args: [pause]}]
---
apiVersion: v1
kind: Pod
metadata: {name: hostnet-default}
spec:
  nodeName: node2
  hostNetwork: true
  containers: [{name: c, image: agnhost, args: [pause]}]
"""
)

# Applied after `lab up`, which waits for every pod to be Ready: this one never is.
NOT_READY = """apiVersion: v1
kind: Pod
metadata: {name: unready, labels: {app: unready}}
spec:
  nodeName: node2
  containers:
  - name: web
    image: agnhost
    args: [netexec, --http-port=8080]
    ports: [{containerPort: 8080}]
    readinessProbe:
      exec: {command: [test, -f, /tmp/podnet-never-ready-%s]}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: unready-published}
spec:
  publishNotReadyAddresses: true
  selector: {app: unready}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: unready}
spec:
  selector: {app: unready}
  ports: [{port: 80, targetPort: 8080}]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("sq%d" % (os.getpid() % 100000), root)
    try:
        lab.run(
            "lab", "up", "--name", lab.name, "--nodes", "2", "-f", "-", "--timeout", "90", input=MANIFEST, timeout=150
        )
        lab.run("apply", "-f", "-", input=NOT_READY % lab.name)
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def cluster_ip(lab, name):
    ip: str = json.loads(lab.run("get", "svc", name, "-o", "json").stdout)["spec"]["clusterIP"]
    return ip


def curl(lab, where, url, node=False, verbose=False):
    """-> (curl's exit code, its output and error) from a pod or a node;
    verbose: with curl's -v, whose error names the errno (Connection refused)."""
    argv = ("lab", "exec", where) if node else ("exec", where)
    res = lab.run(*argv, "--", "curl", "-sS", *(["-v"] if verbose else []), "-m", "3", url, check=False, timeout=30)
    return res.returncode, (res.stdout + res.stderr).strip()


def answers(lab, where, url, want, timeout=30):
    """Poll until curl from `where` gets `want`; fail with what it got last
    (the proxy may not have the endpoint yet)."""
    deadline = time.time() + timeout
    while True:
        if curl(lab, where, url) == (0, want):
            return
        if time.time() > deadline:
            got = curl(lab, where, url, verbose=True)  # -v: the error with its errno
            raise AssertionError("curl %s from %s: wanted %r, got exit %d: %s" % (url, where, want, *got))
        time.sleep(0.5)


def dig(lab, pod, *args):
    res = lab.run("exec", pod, "--", "dig", "+time=2", "+tries=2", *args, check=False, timeout=30)
    return res.stdout + res.stderr


def status(answer):
    return answer.split("status: ", 1)[1].split(",", 1)[0] if "status: " in answer else answer


# ---- publishNotReadyAddresses ------------------------------------------------------


def test_a_not_ready_pod_answers_through_a_service_that_publishes_not_ready_addresses(lab):
    pod = lab.wait("the unready pod running", lambda: (lambda p: p["status"].get("podIP") and p)(lab.pod("unready")))
    assert not ready(pod)
    url = "http://%s/hostname" % cluster_ip(lab, "unready-published")
    # as Kubernetes: ready = publishNotReadyAddresses || (serving && !terminating)
    answers(lab, "client", url, "unready")
    (sl,) = lab.get("endpointslices", "-l", "kubernetes.io/service-name=unready-published")
    assert [e["conditions"] for e in sl["endpoints"]] == [{"ready": True, "serving": False, "terminating": False}]
    # the same pod behind a Service without the flag gets no traffic: refused
    code, out = curl(lab, "client", "http://%s/hostname" % cluster_ip(lab, "unready"), verbose=True)
    assert code == 7 and "Connection refused" in out, out
    (sl,) = lab.get("endpointslices", "-l", "kubernetes.io/service-name=unready")
    assert [e["conditions"]["ready"] for e in sl["endpoints"]] == [False]
    assert not ready(lab.pod("unready"))  # still not Ready: the probe never passes


# ---- endpoint hostnames --------------------------------------------------------------


def test_a_hostname_is_a_dns_name_only_in_the_headless_service_its_subdomain_names(lab):
    ip = lab.pod("db-0")["status"]["podIP"]
    lab.wait(
        "db-0 in both headless Services",
        lambda: all(
            dig(lab, "client", "+short", "%s.default.svc.cluster.local" % s).split() == [ip]
            for s in ("db", "db-mirror")
        ),
    )
    assert dig(lab, "client", "+short", "db-0.db.default.svc.cluster.local").split() == [ip]
    # db-mirror selects db-0 too, but the pod's subdomain is db: the name does not exist
    answer = dig(lab, "client", "db-0.db-mirror.default.svc.cluster.local")
    assert status(answer) == "NXDOMAIN", answer
    # there the endpoint has its dashed address as its name, as CoreDNS gives it
    dashed = "%s.db-mirror.default.svc.cluster.local" % ip.replace(".", "-")
    assert dig(lab, "client", "+short", dashed).split() == [ip]
    eps = {
        svc: [e for s in lab.get("endpointslices", "-l", "kubernetes.io/service-name=" + svc) for e in s["endpoints"]]
        for svc in ("db", "db-mirror")
    }
    assert [e.get("hostname") for e in eps["db"]] == ["db-0"]
    assert [e.get("hostname") for e in eps["db-mirror"]] == [None]


# ---- ClusterIPs from the node's own network namespace ---------------------------------


def test_a_host_network_pod_with_cluster_first_with_host_net_asks_the_cluster_dns(lab):
    conf = lab.run("exec", "hostnet", "--", "cat", "/etc/resolv.conf").stdout
    assert "nameserver %s" % CLUSTER_DNS in conf.splitlines()
    web = cluster_ip(lab, "web")
    answer = dig(lab, "hostnet", "@" + CLUSTER_DNS, "+short", "web.default.svc.cluster.local")
    assert answer.split() == [web], answer  # before: "network unreachable"
    assert dig(lab, "hostnet", "+search", "+short", "web").split() == [web]  # through resolv.conf's search list
    # ClusterFirst on a hostNetwork pod falls back to Default (the node's resolver), as in Kubernetes
    plain = lab.run("exec", "hostnet-default", "--", "cat", "/etc/resolv.conf").stdout
    assert "nameserver %s" % CLUSTER_DNS not in plain.splitlines(), plain


def test_a_node_reaches_cluster_ips_and_the_route_is_repaired(lab):
    url = "http://%s/hostname" % cluster_ip(lab, "web")
    for node in ("node1", "node2"):
        seen = set()
        deadline = time.time() + 30
        while seen != {"web1", "web2"} and time.time() < deadline:  # the local and the remote endpoint
            code, out = curl(lab, node, url, node=True)
            if code:  # again with -v: the errno
                out = curl(lab, node, url, node=True, verbose=True)[1]
            assert code == 0, "%s: curl %s -> %d %s" % (node, url, code, out)  # before: Network is unreachable
            seen.add(out)
        assert seen == {"web1", "web2"}, (node, seen)
    # an endpoint outside the cluster: the Service kubernetes leads to the API server
    res = lab.run("lab", "exec", "node2", "--", "curl", "-sk", "-m", "3", "https://10.96.0.1/version")
    assert json.loads(res.stdout)["major"] == "1"
    route = "10.96.0.0/12 dev eth0 proto 44 scope link"
    assert route in lab.run("lab", "exec", "node1", "--", "ip", "route").stdout
    lab.run("lab", "exec", "node1", "--", "ip", "route", "del", "10.96.0.0/12")  # drift by hand
    lab.wait(
        "the routing reconciler to put the route back",
        lambda: route in lab.run("lab", "exec", "node1", "--", "ip", "route").stdout,
        timeout=20,
    )
    assert curl(lab, "node1", url, node=True)[0] == 0
