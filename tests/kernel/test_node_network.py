"""Lab nodes are hosts on a real network (issue 11), seen by clients in a
1-node lab:

- a node's default route goes through the external host (the lab's router
  and "internet"), which answers an address it has no route for at once
  (ICMP unreachable), so nothing waits for a timeout;
- a node, a hostNetwork pod and a Docker-mode container on the default
  bridge ask the lab's resolver (podnet's DNS on the external host), never
  this machine's: a name gets its answer, a made-up one NXDOMAIN, at once;
- a Service with no endpoints, and a port a ClusterIP does not serve, are
  refused ("Connection refused", curl's exit 7), from a pod, from the node,
  and (a NodePort) from the external host; never "Network is unreachable"
  or a timeout.

Each check looks at the error the client reports, not only an exit code.
"""

import json
import os

import pytest

from tests.kernel.test_lab import Lab, leftovers

pytestmark = pytest.mark.kernel

EXT_IP = "192.168.200.100"
NODE_IP = "192.168.200.11"

MANIFEST = """apiVersion: v1
kind: Pod
metadata: {name: web1, labels: {app: web}}
spec:
  nodeName: node1
  containers:
  - {name: web, image: agnhost, args: [netexec, --http-port=8080], ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  type: NodePort
  selector: {app: nobody}
  ports: [{port: 80, targetPort: 8080}]
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
  dnsPolicy: Default
  containers: [{name: c, image: agnhost, args: [pause]}]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("nn%d" % (os.getpid() % 100000), root)
    try:
        lab.run(
            "lab", "up", "--name", lab.name, "--nodes", "1", "-f", "-", "--timeout", "90", input=MANIFEST, timeout=150
        )
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def in_pod(lab, pod, *argv):
    return lab.run("exec", pod, "--", *argv, check=False, timeout=30)


def on_node(lab, *argv, where="node1"):
    return lab.run("lab", "exec", where, "--", *argv, check=False, timeout=30)


def curl(run, url, verbose=False):
    """-> (exit code, what curl said); verbose: with -v, whose error names
    the errno (curl's own line says only "Couldn't connect to server")."""
    res = run("curl", "-sS", *(["-v"] if verbose else []), "-m", "3", url)
    return res.returncode, (res.stdout + res.stderr).strip()


def refused(run, url):
    """-> (True, _) when connecting to url is refused at once (ECONNREFUSED)."""
    code, out = curl(run, url, verbose=True)
    return code == 7 and "Connection refused" in out, out[-400:]


def svc(lab, name):
    return json.loads(lab.run("get", "svc", name, "-o", "json").stdout)["spec"]


def dig_status(res):
    """dig's status line (NOERROR, NXDOMAIN, ...), or what it said instead
    (";; connection timed out; no servers could be reached")."""
    out = res.stdout + res.stderr
    return out.split("status: ", 1)[1].split(",", 1)[0] if "status: " in out else out.strip()


# ---- the node's route -----------------------------------------------------------


def test_a_node_routes_to_the_internet_through_the_external_host(lab):
    route = on_node(lab, "ip", "route", "get", "1.1.1.1")
    assert route.returncode == 0 and "via %s dev eth0" % EXT_IP in route.stdout, route.stdout + route.stderr
    assert "default via %s dev eth0" % EXT_IP in on_node(lab, "ip", "route").stdout
    # the router has no route there either: it says so at once (no timeout)
    for who, run in (("node", lambda *a: on_node(lab, *a)), ("pod", lambda *a: in_pod(lab, "client", *a))):
        code, out = curl(run, "http://1.1.1.1/", verbose=True)
        assert code == 7 and "Network is unreachable" in out, "%s -> 1.1.1.1: %s" % (who, out[-400:])


# ---- refused, never unreachable -------------------------------------------------


def test_a_service_without_endpoints_and_an_unknown_port_are_refused(lab):
    web, empty = svc(lab, "web"), svc(lab, "empty")
    pod = lambda *a: in_pod(lab, "client", *a)  # noqa: E731
    node = lambda *a: on_node(lab, *a)  # noqa: E731
    url = "http://%s/hostname" % web["clusterIP"]
    lab.wait("the proxy to serve web", lambda: curl(pod, url) == (0, "web1") and curl(node, url) == (0, "web1"))
    for who, run in (("pod", pod), ("node", node)):
        ok, out = refused(run, "http://%s/" % empty["clusterIP"])
        assert ok, "%s -> ClusterIP without endpoints: %s" % (who, out)
        ok, out = refused(run, "http://%s:81/" % web["clusterIP"])
        assert ok, "%s -> a port the ClusterIP does not serve: %s" % (who, out)
    node_port = empty["ports"][0]["nodePort"]
    ok, out = refused(lambda *a: on_node(lab, *a, where="external"), "http://%s:%d/" % (NODE_IP, node_port))
    assert ok, "external host -> NodePort without endpoints: %s" % out


# ---- the lab's resolver -----------------------------------------------------------


def test_a_node_asks_the_labs_resolver(lab):
    conf = on_node(lab, "cat", "/etc/resolv.conf").stdout
    assert "nameserver %s" % EXT_IP in conf.splitlines(), conf
    res = on_node(lab, "getent", "hosts", "example.com")
    assert res.returncode == 0 and res.stdout.split()[:1] == [EXT_IP], res
    res = on_node(lab, "dig", "+tries=1", "+time=2", "no-such-name.invalid")
    assert dig_status(res) == "NXDOMAIN", res.stdout + res.stderr


def test_a_host_network_pod_asks_the_labs_resolver(lab):
    conf = in_pod(lab, "hostnet", "cat", "/etc/resolv.conf").stdout
    assert "nameserver %s" % EXT_IP in conf.splitlines(), conf
    res = in_pod(lab, "hostnet", "getent", "hosts", "example.com")
    assert res.returncode == 0 and res.stdout.split()[:1] == [EXT_IP], res
    res = in_pod(lab, "hostnet", "dig", "+tries=1", "+time=2", "no-such-name.invalid")
    assert dig_status(res) == "NXDOMAIN", res.stdout + res.stderr


def test_a_docker_container_on_the_default_bridge_asks_the_labs_resolver(lab):
    res = lab.run("run", "--rm", "--node", "node1", "--", "cat", "/etc/resolv.conf", check=False, timeout=60)
    assert "nameserver %s" % EXT_IP in res.stdout.splitlines(), res.stdout + res.stderr
    res = lab.run(
        "run", "--rm", "--node", "node1", "--", "dig", "+tries=1", "+time=2", "no-such-name.invalid", check=False
    )
    assert dig_status(res) == "NXDOMAIN", res.stdout + res.stderr
    res = lab.run("run", "--rm", "--node", "node1", "--", "getent", "hosts", "example.com", check=False)
    assert res.returncode == 0 and res.stdout.split()[:1] == [EXT_IP], res.stdout + res.stderr
