"""A 2-node lab on the real kernel, driven through the `podnet` command as a
person would drive it."""

import ipaddress
import json
import os
import subprocess
import sys
import time

import pytest

from tests.helpers import wait_for

pytestmark = pytest.mark.kernel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "lab.yaml")


class Lab:
    def __init__(self, name, state_root):
        self.name = name
        self.env = dict(os.environ, PODNET_STATE_ROOT=state_root, PODNET_LAB=name)

    def run(self, *args, check=True, input=None, timeout=120):
        res = subprocess.run(
            [sys.executable, "-m", "podnet.cli.main", *args],
            capture_output=True,
            text=True,
            env=self.env,
            input=input,
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError("podnet %s -> %d\n%s%s" % (" ".join(args), res.returncode, res.stdout, res.stderr))
        return res

    def get(self, kind, *extra):
        return json.loads(self.run("get", kind, "-o", "json", *extra).stdout)["items"]

    def pod(self, name):
        return json.loads(self.run("get", "pod", name, "-o", "json").stdout)

    def wait(self, what, fn, timeout=30):
        return wait_for(what, fn, timeout, every=0.2)


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def leftovers(name, state_root):
    ns = [n for n in os.listdir("/run/netns") if n.startswith("pn-%s-" % name)] if os.path.isdir("/run/netns") else []
    return ns + ([state_root + "/" + name] if os.path.exists(os.path.join(state_root, name)) else [])


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("t%d" % (os.getpid() % 100000), root)
    try:
        lab.run("lab", "up", "--name", lab.name, "-f", EXAMPLE, "--timeout", "90", timeout=150)
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def test_nodes_and_pod_ips_come_from_their_node_podcidr(lab):
    nodes = {n["metadata"]["name"]: n for n in lab.get("nodes")}
    assert sorted(nodes) == ["node1", "node2"]
    cidrs = {name: ipaddress.ip_network(n["spec"]["podCIDR"]) for name, n in nodes.items()}
    assert cidrs["node1"] != cidrs["node2"] and all(
        c.subnet_of(ipaddress.ip_network("10.244.0.0/16")) for c in cidrs.values()
    )
    for n in nodes.values():
        assert any(a["type"] == "InternalIP" for a in n["status"]["addresses"])
    pods = lab.get("pods")
    assert len(pods) == 4 and all(ready(p) for p in pods)
    for p in pods:
        assert ipaddress.ip_address(p["status"]["podIP"]) in cidrs[p["spec"]["nodeName"]]
    table = lab.run("get", "pods", "-o", "wide").stdout.splitlines()
    assert table[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]


def test_a_pod_reaches_another_on_the_same_node_by_its_ip(lab):
    pods = lab.get("pods")
    client = next(p for p in pods if p["metadata"]["name"] == "client")
    web = next(
        p
        for p in pods
        if p["metadata"]["name"].startswith("web-") and p["spec"]["nodeName"] == client["spec"]["nodeName"]
    )
    code = (
        "import urllib.request as u; print(u.urlopen('http://%s:8080/clientip', timeout=3).read().decode())"
        % (web["status"]["podIP"])
    )
    out = lab.run("exec", "client", "--", "python3", "-c", code).stdout
    assert out.strip().startswith(client["status"]["podIP"] + ":")  # no NAT on the node
    assert lab.run("exec", "client", "--", "hostname").stdout.strip() == "client"


def test_exec_and_logs(lab):
    web = next(p for p in lab.get("pods") if p["metadata"]["name"].startswith("web-"))
    name = web["metadata"]["name"]
    assert web["status"]["podIP"] in lab.run("exec", name, "--", "ip", "-4", "addr", "show", "eth0").stdout
    lab.wait("a probe line in the log", lambda: "GET /healthz" in lab.run("logs", name).stdout)
    bad = lab.run("logs", "nosuchpod", check=False)
    assert bad.returncode == 1 and 'pods "nosuchpod" not found' in bad.stderr


def test_restart_policies_and_the_restart_count(lab):
    manifest = "\n---\n".join(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n  restartPolicy: %s\n  containers:\n"
        "  - {name: c, image: podnet.io/host, command: [sh, -c, '%s']}" % (name, policy, script)
        for name, policy, script in (
            ("crash-always", "Always", "exit 3"),
            ("crash-never", "Never", "exit 3"),
            ("done-onfailure", "OnFailure", "exit 0"),
            ("crash-onfailure", "OnFailure", "exit 4"),
        )
    )
    lab.run("apply", "-f", "-", input=manifest)
    try:

        def restarts(n):
            return sum(c["restartCount"] for c in lab.pod(n)["status"].get("containerStatuses", []))

        lab.wait("crash-always restarted twice", lambda: restarts("crash-always") >= 2)
        lab.wait("crash-onfailure restarted", lambda: restarts("crash-onfailure") >= 1)
        lab.wait("crash-never failed", lambda: lab.pod("crash-never")["status"].get("phase") == "Failed")
        lab.wait("done-onfailure completed", lambda: lab.pod("done-onfailure")["status"].get("phase") == "Succeeded")
        assert restarts("crash-never") == 0 and restarts("done-onfailure") == 0
        row = next(line for line in lab.run("get", "pods").stdout.splitlines() if line.startswith("crash-always"))
        assert int(row.split()[3]) >= 2  # the RESTARTS column counts it
    finally:
        lab.run("delete", "pod", "crash-always", "crash-never", "done-onfailure", "crash-onfailure", "--wait")


def test_a_failing_readiness_probe_keeps_the_pod_out_of_ready_endpoints(lab):
    lab.run(
        "apply",
        "-f",
        "-",
        input="""
apiVersion: v1
kind: Pod
metadata: {name: unready, labels: {app: web}}
spec:
  containers:
  - name: netexec
    image: registry.k8s.io/e2e-test-images/agnhost:2.45
    args: ["netexec", "--http-port=8080"]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {tcpSocket: {port: 9999}, periodSeconds: 1, failureThreshold: 1}
""",
    )
    try:
        ip = lab.wait("unready's IP", lambda: lab.pod("unready")["status"].get("podIP"))

        def slice_entry():
            for s in lab.get("endpointslices"):
                for e in s.get("endpoints") or []:
                    if ip in e["addresses"]:
                        return e

        entry = lab.wait("an EndpointSlice entry for unready", slice_entry)
        time.sleep(2)  # several probe periods: it must stay not ready
        assert not ready(lab.pod("unready"))
        assert slice_entry()["conditions"]["ready"] is False and entry["nodeName"]
        eps = lab.run("get", "endpoints", "web").stdout
        assert ip not in eps  # kubectl's endpoints view shows ready addresses only
        assert "0/1" in next(line for line in lab.run("get", "pods").stdout.splitlines() if line.startswith("unready"))
    finally:
        lab.run("delete", "pod", "unready", "--wait")


def test_deleting_a_deployment_pod_brings_a_new_one(lab):
    def webs():
        return [p for p in lab.get("pods") if p["metadata"]["name"].startswith("web-")]

    before = {p["metadata"]["name"] for p in webs()}
    victim = sorted(before)[0]
    assert 'pod "%s" deleted' % victim in lab.run("delete", "pod", victim).stdout
    lab.wait(
        "a replacement Ready pod",
        lambda: (
            lambda ps: len(ps) == 3 and all(ready(p) for p in ps) and victim not in {p["metadata"]["name"] for p in ps}
        )(webs()),
        40,
    )
    assert lab.get("deployments")[0]["status"]["readyReplicas"] == 3


def test_an_image_podnet_cannot_run_says_so_on_the_pod(lab):
    lab.run(
        "apply",
        "-f",
        "-",
        input="apiVersion: v1\nkind: Pod\nmetadata: {name: nginx}\nspec:\n"
        "  containers: [{name: nginx, image: nginx:1.27}]\n",
    )
    try:

        def waiting():
            st = lab.pod("nginx")["status"].get("containerStatuses") or []
            return st and st[0]["state"].get("waiting")

        # ErrImagePull shows for about a second, then ImagePullBackOff until
        # the next attempt (as kubelet does): a slow poll may see either
        w = lab.wait("the pod's error", waiting)
        assert w["reason"] in ("ErrImagePull", "ImagePullBackOff"), w
        if w["reason"] == "ErrImagePull":
            assert "not in the local image store" in w["message"], w
        else:
            assert w["message"] == 'Back-off pulling image "nginx:1.27"', w
        failed = lab.wait(
            "the pull's Failed event",
            lambda: [
                e for e in lab.get("events") if e["involvedObject"].get("name") == "nginx" and e["reason"] == "Failed"
            ],
        )
        assert "not in the local image store" in failed[0]["message"], failed
    finally:
        lab.run("delete", "pod", "nginx", "--wait")


def test_a_host_network_pod_shares_the_node_stack(lab):
    lab.run(
        "apply",
        "-f",
        "-",
        input="apiVersion: v1\nkind: Pod\nmetadata: {name: hostnet}\nspec:\n"
        "  hostNetwork: true\n  containers: [{name: c, command: [sleep, '600']}]\n",
    )
    try:
        pod = lab.wait("hostnet running", lambda: (lambda p: ready(p) and p)(lab.pod("hostnet")))
        node = next(n for n in lab.get("nodes") if n["metadata"]["name"] == pod["spec"]["nodeName"])
        node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        assert pod["status"]["podIP"] == node_ip
        assert "cni0" in lab.run("exec", "hostnet", "--", "ip", "-br", "link").stdout  # the node's links
    finally:
        lab.run("delete", "pod", "hostnet", "--wait")


def test_bad_manifests_and_commands_get_clear_errors_and_change_nothing(lab):
    before = lab.run("get", "all" if False else "pods", "-o", "name").stdout
    bad = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: fine}\nspec: {containers: [{name: c, command: [sleep, '1']}]}\n"
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: broken}\n"
        "spec:\n  selector: {matchLabels: {a: b}}\n"
        "  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers:\n      - name: c\n"
        "        command: [x]\n        ports: [{containerPort: 8080}, {containerPort: 70000}]\n"
    )
    res = lab.run("apply", "-f", "-", input=bad, check=False)
    assert res.returncode == 1
    assert "document 2 (Deployment/broken): spec.template.spec.containers[0].ports[1].containerPort" in res.stderr
    assert lab.run("get", "pods", "-o", "name").stdout == before  # not even the good first document
    for args, text in (
        (("get", "gizmos"), "unknown resource type"),
        (("exec", "nope", "--", "true"), "not found"),
        (("delete", "pod", "nope"), "not found"),
        (("get", "pods", "--lab", "nosuchlab"), "no lab named"),
        (("lab", "exec", "node9", "--", "true"), "no node 'node9'"),
    ):
        res = lab.run(*args, check=False)
        assert res.returncode != 0 and text in res.stderr, (args, res.stderr)


def test_the_lab_state_is_root_only(lab):
    """The store, the CA key, the tokens and the kubeconfigs carry every
    secret of the lab: nobody but root reads them."""
    root = lab.env["PODNET_STATE_ROOT"]
    sdir = os.path.join(root, lab.name)
    assert os.stat(sdir).st_mode & 0o777 == 0o700
    for rel in ("pki", "kubeconfigs"):
        assert os.stat(os.path.join(sdir, rel)).st_mode & 0o777 == 0o700, rel
    for rel in (
        "pki/ca.key",
        "pki/tokens.yaml",
        "pki/apiserver.key",
        "kubeconfig",
        "store.db",
        "kubeconfigs/controllers.kubeconfig",
    ):
        assert os.stat(os.path.join(sdir, rel)).st_mode & 0o077 == 0, rel


def test_an_etcd_backed_lab_runs_pods_and_leaves_nothing(tmp_path):
    lab = Lab("e%d" % (os.getpid() % 100000), str(tmp_path))
    try:
        lab.run(
            "lab",
            "up",
            "--name",
            lab.name,
            "--nodes",
            "1",
            "--store",
            "etcd",
            "-f",
            EXAMPLE,
            "--timeout",
            "90",
            timeout=150,
        )
        procs = json.load(open(os.path.join(str(tmp_path), lab.name, "procs.json")))
        assert "etcd" in procs
        doc = json.load(open(os.path.join(str(tmp_path), lab.name, "lab.json")))
        assert doc["store"].startswith("etcd://127.0.0.1:")
        pods = lab.wait("the example's pods Ready", lambda: [p for p in lab.get("pods") if ready(p)], 60)
        assert len(pods) == 4
        res = lab.run("lab", "up", "--name", lab.name, "--store", "sqlite", check=False)
        assert res.returncode != 0 and "keeps its state in etcd" in res.stderr
    finally:
        lab.run("lab", "down", "--name", lab.name)
    assert leftovers(lab.name, str(tmp_path)) == []
    assert (
        not os.path.exists("/proc/%d" % procs["etcd"]["pid"])
        or open("/proc/%d/stat" % procs["etcd"]["pid"]).read().split()[2] == "Z"
    )


def test_lab_down_removes_everything_even_after_a_crash(tmp_path):
    lab = Lab("d%d" % (os.getpid() % 100000), str(tmp_path))
    try:
        lab.run("lab", "up", "--name", lab.name, "--nodes", "1", "-f", EXAMPLE, "--timeout", "90", timeout=150)
        assert len(lab.get("pods")) == 4
        lab.run("lab", "up", "--name", lab.name, "-f", EXAMPLE)  # idempotent: nothing new
        assert len(lab.get("pods")) == 4
        procs = json.load(open(os.path.join(str(tmp_path), lab.name, "procs.json")))
        os.kill(procs["agent-node1"]["pid"], 9)  # a crashed agent leaves its pods running
        assert lab.run("lab", "status", check=False).returncode == 1
    finally:
        lab.run("lab", "down", "--name", lab.name)
    assert leftovers(lab.name, str(tmp_path)) == []
    for p in procs.values():
        assert not os.path.exists("/proc/%d" % p["pid"]) or open("/proc/%d/stat" % p["pid"]).read().split()[2] == "Z"
