"""The fault catalogue: each test breaks one thing in a real lab, asks
`podnet doctor` and `podnet trace` (both -o json), and puts it back.

A 3-node vxlan lab for most faults and a 2-node bgp lab for the BIRD one.
Every test undoes its fault in `finally` and then waits until the whole-lab
doctor is clean again, so a fault never leaks into the next test (and a
false finding on a healthy lab fails the test that follows it).

Doctor assertions come first in each test: `findings[0]` is the root cause's
check and names the object. Then trace: verdict and culprit, as the JSON
contract in issue 13 puts them.
"""

import json
import os
import subprocess

import pytest

from tests.helpers import nsenter, wait_for
from tests.kernel.test_lab import Lab, leftovers

pytestmark = pytest.mark.kernel

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")
NETEXEC = (
    "apiVersion: v1\nkind: Pod\nmetadata: {name: p%d, labels: {app: mesh}}\nspec:\n  nodeName: node%d\n"
    "  containers:\n  - name: netexec\n    image: registry.k8s.io/e2e-test-images/agnhost:2.45\n"
    "    args: [netexec, --http-port=8080, --udp-port=8081]\n"
    "    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n"
)
# examples/lab.yaml's Service web, with a UDP port too (the conntrack fault)
WEB_UDP = """apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: udp, port: 81, targetPort: udp, protocol: UDP}
"""


def _workload(nodes):
    with open(os.path.join(EXAMPLE, "lab.yaml")) as f:
        base = f.read()
    return "\n---\n".join([base, WEB_UDP] + [NETEXEC % (i, i) for i in range(1, nodes + 1)])


def _up(request, tmp_path_factory, name, nodes, mode):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab(name, root)
    lab.root = root
    try:
        lab.run(
            "lab", "up", "--name", name, "--nodes", str(nodes), "--routing", mode, "-f", "-", "--timeout", "90",
            input=_workload(nodes), timeout=150,
        )  # fmt: skip
        lab.doc = json.load(open(os.path.join(root, name, "lab.json")))
        lab.ns = {n["name"]: n["netns"] for n in lab.doc["nodes"]}
        healthy(lab, 60)
        yield lab
    finally:
        lab.run("lab", "down", "--name", name, check=False)
        assert leftovers(name, root) == []


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory):
    yield from _up(request, tmp_path_factory, "dbv%d" % (os.getpid() % 10000), 3, "vxlan")


@pytest.fixture(scope="module")
def bgplab(request, tmp_path_factory):
    yield from _up(request, tmp_path_factory, "dbb%d" % (os.getpid() % 10000), 2, "bgp")


# ---- helpers ---------------------------------------------------------------------------


def doctor(lab, *args):
    res = lab.run("doctor", *args, "-o", "json", check=False)
    assert res.returncode in (0, 1), "podnet doctor %s -> %d\n%s%s" % (args, res.returncode, res.stdout, res.stderr)
    try:
        out = json.loads(res.stdout)
    except ValueError:
        raise AssertionError("podnet doctor %s: not JSON\n%s%s" % (args, res.stdout, res.stderr)) from None
    assert res.returncode == (1 if any(f["severity"] == "error" for f in out["findings"]) else 0)
    return out


def trace(lab, *args):
    res = lab.run("trace", *args, "-o", "json", check=False)
    assert res.returncode in (0, 1), "podnet trace %s -> %d\n%s%s" % (args, res.returncode, res.stdout, res.stderr)
    try:
        return json.loads(res.stdout)
    except ValueError:
        raise AssertionError("podnet trace %s: not JSON\n%s%s" % (args, res.stdout, res.stderr)) from None


def healthy(lab, timeout=60):
    """Wait until the whole-lab doctor finds nothing (the previous fault is gone)."""
    last = {}

    def clean():
        last["d"] = doctor(lab)
        return last["d"]["findings"] == []

    try:
        wait_for("a clean doctor", clean, timeout, every=0.5)
    except AssertionError:
        raise AssertionError("lab not healthy: %s" % json.dumps(last.get("d", {}).get("findings"), indent=1)) from None


def pods(lab):
    return {p["metadata"]["name"]: p for p in lab.get("pods")}


def pod_ns(lab, name):
    from podnet.agent.agent import pod_netns

    return pod_netns(lab.name, pods(lab)[name]["metadata"]["uid"])


def node_of_ip(lab, ip):
    for p in lab.get("pods", "-A"):
        if p.get("status", {}).get("podIP") == ip:
            return p["spec"]["nodeName"]
    return None


def in_node(lab, node, *cmd):
    return lab.run("lab", "exec", node, "--", *cmd)


def nft_has(lab, word, present=True, table=("inet", "podnet-policy")):
    """Some node's table mentions `word` (none does, present=False): a policy's
    rules live on the nodes of the pods it selects."""

    def ok():
        texts = [in_node(lab, n, "nft", "list", "table", *table).stdout for n in lab.ns]
        return any(word in t for t in texts) == present

    wait_for("%s %s in %s" % (word, "present" if present else "gone", table), ok, 30, every=0.3)


def agent_stopped(lab, node):
    """Stop `node`'s agent by its recorded PID (it would repair the fault)."""
    procs = json.load(open(os.path.join(lab.root, lab.name, "procs.json")))
    pid = procs["agent-" + node]["pid"]
    os.killpg(pid, 15)
    wait_for("agent of %s gone" % node, lambda: not os.path.exists("/proc/%d" % pid) or _zombie(pid), 10)


def _zombie(pid):
    try:
        return open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def restart_agents(lab):
    lab.run("lab", "up", "--name", lab.name, "--timeout", "60", timeout=90)


def assert_first(d, check, *words):
    assert d["findings"], "doctor found nothing (wanted %s)" % check
    first = d["findings"][0]
    assert first["check"] == check, json.dumps(d["findings"], indent=1)
    for w in words:
        assert w in first["summary"], (w, first)
    return first


def assert_culprit(t, verdict, kind, **want):
    assert t["verdict"] == verdict, json.dumps(t, indent=1)
    assert t["culprit"] is not None and t["culprit"]["kind"] == kind, json.dumps(t, indent=1)
    for k, v in want.items():
        assert t["culprit"][k] == v, (k, v, t["culprit"])


# ---- healthy ---------------------------------------------------------------------------


def test_a_healthy_lab_has_no_finding(lab):
    assert doctor(lab)["findings"] == []
    assert doctor(lab, "client", "--to", "svc/web")["findings"] == []
    d = doctor(lab, "svc/web")
    assert d["findings"] == [] and d["target"] == "svc default/web"
    assert set(d["checked"]) >= {"pod-status", "service-selector", "endpoints", "target-port", "node-routes"}


def test_unknown_names_exit_2(lab):
    for args in (("nope",), ("svc/nope",), ("node/node9",), ("client", "--to", "svc/nope")):
        res = lab.run("doctor", *args, check=False)
        assert res.returncode == 2 and "not found" in res.stderr, (args, res.stderr)
    assert "pod default/nope not found" in lab.run("doctor", "nope", check=False).stderr


# ---- the faults (vxlan lab) -------------------------------------------------------------------


def test_1_service_selector_near_miss(lab):
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: wbe}\nspec:\n  selector: {app: wbe}\n  ports: [{port: 80}]\n"
    try:
        lab.run("apply", "-f", "-", input=svc)
        first = assert_first(doctor(lab, "svc/wbe"), "service-selector", "default/wbe", "app=web")
        assert first["severity"] == "error"
        assert_culprit(trace(lab, "client", "svc/wbe"), "rejected", "service", object="default/wbe")
    finally:
        lab.run("delete", "service", "wbe", check=False)
        healthy(lab)


def test_2_target_port_nothing_listens(lab):
    svc = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: webx}\nspec:\n  selector: {app: web}\n"
        "  ports: [{port: 80, targetPort: 9999}]\n"
    )
    try:
        lab.run("apply", "-f", "-", input=svc)
        wait_for("webx endpoints", lambda: lab.get("endpointslices", "-l", "kubernetes.io/service-name=webx"), 20)
        assert_first(doctor(lab, "svc/webx"), "target-port", "default/webx", ":9999")
        t = trace(lab, "client", "svc/webx")
        assert_culprit(t, "refused", "listen")
        assert t["culprit"]["object"].endswith(":9999") and t["culprit"]["object"] == t["endpoint"]
    finally:
        lab.run("delete", "service", "webx", check=False)
        healthy(lab)


DENY_WEB = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-web}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
"""
DENY_CLIENT = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-client-egress}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
"""


def test_3_policy_denies_ingress_to_web(lab):
    try:
        lab.run("apply", "-f", "-", input=DENY_WEB)
        nft_has(lab, "deny-web")
        assert_first(doctor(lab, "client", "--to", "svc/web"), "network-policy", "default/deny-web")
        t = trace(lab, "client", "svc/web")
        assert t["endpoint"], t
        where = node_of_ip(lab, t["endpoint"].split(":")[0])
        assert_culprit(t, "dropped", "policy", object="default/deny-web", where=where)
    finally:
        lab.run("delete", "networkpolicy", "deny-web", check=False)
        nft_has(lab, "deny-web", present=False)
        healthy(lab)


def test_4_policy_denies_egress_of_client(lab):
    try:
        lab.run("apply", "-f", "-", input=DENY_CLIENT)
        nft_has(lab, "deny-client-egress")
        assert_first(doctor(lab, "client", "--to", "svc/web"), "network-policy", "default/deny-client-egress")
        t = trace(lab, "client", "svc/web")
        where = pods(lab)["client"]["spec"]["nodeName"]
        assert_culprit(t, "dropped", "policy", object="default/deny-client-egress", where=where)
    finally:
        lab.run("delete", "networkpolicy", "deny-client-egress", check=False)
        nft_has(lab, "deny-client-egress", present=False)
        healthy(lab)


def _scale_coredns(lab, replicas):
    dep = json.loads(lab.run("get", "deployment", "coredns", "-n", "kube-system", "-o", "json").stdout)
    dep["spec"]["replicas"] = replicas
    for k in ("resourceVersion", "managedFields", "uid", "creationTimestamp", "generation"):
        dep["metadata"].pop(k, None)
    dep.pop("status", None)
    lab.run("apply", "-f", "-", input=json.dumps(dep))


def _dns_ready(lab):
    return [
        e
        for s in lab.get("endpointslices", "-n", "kube-system", "-l", "kubernetes.io/service-name=kube-dns")
        for e in s.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready")
    ]


def test_5_kube_dns_scaled_to_zero(lab):
    try:
        _scale_coredns(lab, 0)
        wait_for("no kube-dns endpoints", lambda: not _dns_ready(lab), 30)
        assert_first(doctor(lab, "client"), "dns", "kube-system/kube-dns", "default/client")
        t = trace(lab, "client", "svc/kube-system/kube-dns:53", "--udp")
        assert_culprit(t, "rejected", "service", object="kube-system/kube-dns")
    finally:
        _scale_coredns(lab, 1)
        wait_for("kube-dns ready again", lambda: _dns_ready(lab), 60)
        healthy(lab)


def test_6_route_to_a_podcidr_missing(lab):
    try:
        agent_stopped(lab, "node1")
        in_node(lab, "node1", "ip", "route", "del", "10.244.2.0/24")
        d = doctor(lab)
        assert_first(d, "node-routes", "node1", "10.244.2.0/24")
        assert d["findings"][0]["where"] == "node1"
        t = trace(lab, "p1", "p3")
        assert_culprit(t, "no-route", "route", object="10.244.2.0/24", where="node1")
    finally:
        restart_agents(lab)
        healthy(lab)


def test_7_pod_mtu_above_the_vxlan_path(lab):
    """podnet gives pods eth0 at 1500 and the tunnel's 1450 on their default
    route; the fault: the route loses its MTU, so eth0's 1500 applies."""
    ns = pod_ns(lab, "p1")
    default = subprocess.run(nsenter(ns) + ["ip", "route", "show", "default"], capture_output=True, text=True).stdout
    assert "mtu 1450" in default, default
    gw = default.split()[2]
    try:
        subprocess.run(nsenter(ns) + ["ip", "route", "replace", "default", "via", gw, "dev", "eth0"], check=True)
        first = assert_first(doctor(lab, "p1"), "mtu", "default/p1", "1450")
        assert first["where"] == "node1" and "sends up to 1500" in first["summary"]
        t = trace(lab, "p1", "p3", "--icmp", "--size", "1500")
        assert_culprit(t, "dropped", "mtu", where="node1")
    finally:
        subprocess.run(
            nsenter(ns)
            + ["ip", "route", "replace", "default", "via", gw, "dev", "eth0", "proto", "static", "mtu", "1450"],
            check=False,
        )
        healthy(lab)


SICK = """apiVersion: apps/v1
kind: Deployment
metadata: {name: sick}
spec:
  replicas: 1
  selector: {matchLabels: {app: sick}}
  template:
    metadata: {labels: {app: sick}}
    spec:
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.45
        args: [netexec, --http-port=8080]
        readinessProbe: {httpGet: {path: /nothere, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: sick}
spec:
  selector: {app: sick}
  ports: [{port: 80, targetPort: 8080}]
"""


def test_8_failing_readiness_probe(lab):
    try:
        lab.run("apply", "-f", "-", input=SICK)
        wait_for(
            "the sick pod running",
            lambda: (
                [p for n, p in pods(lab).items() if n.startswith("sick-") and p["status"].get("phase") == "Running"]
                and doctor(lab, "svc/sick")["findings"]
            ),
            30,
        )
        d = doctor(lab, "svc/sick")
        first = assert_first(d, "pod-status", "default/sick-", "/nothere")
        assert first["severity"] == "error"
        checks = [f["check"] for f in d["findings"]]
        assert "endpoints" in checks and checks.index("pod-status") < checks.index("endpoints")
        assert_culprit(trace(lab, "client", "svc/sick"), "rejected", "service", object="default/sick")
    finally:
        lab.run("delete", "deployment", "sick", check=False)
        lab.run("delete", "service", "sick", check=False)
        wait_for("sick pods gone", lambda: not [n for n in pods(lab) if n.startswith("sick-")], 60)
        healthy(lab)


def test_9_ip_forward_off_on_node2(lab):
    """node2's agent turns forwarding back on within a routing pass, so it is
    stopped while the fault stands (as a dead agent would leave it)."""
    try:
        agent_stopped(lab, "node2")
        in_node(lab, "node2", "sysctl", "-qw", "net.ipv4.ip_forward=0")
        first = assert_first(doctor(lab), "sysctls", "net.ipv4.ip_forward", "node2")
        assert first["where"] == "node2"
        t = trace(lab, "p1", "p2")
        assert_culprit(t, "dropped", "sysctl", object="net.ipv4.ip_forward", where="node2")
    finally:
        in_node(lab, "node2", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        restart_agents(lab)
        healthy(lab)


def test_a_running_agent_turns_forwarding_back_on(lab):
    """Forwarding is the agent's to keep (level-triggered), on nodes with pods
    or without: `sysctl -w net.ipv4.ip_forward=0` lasts one routing pass."""
    for node in lab.ns:
        assert in_node(lab, node, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1", node
    try:
        in_node(lab, "node3", "sysctl", "-qw", "net.ipv4.ip_forward=0")
        wait_for(
            "node3 forwarding again",
            lambda: in_node(lab, "node3", "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1",
            30,
            every=0.3,
        )
    finally:
        in_node(lab, "node3", "sysctl", "-qw", "net.ipv4.ip_forward=1")
    healthy(lab)


FOREIGN = """table inet foreign {
    chain block {
        type filter hook forward priority 0; policy accept;
        tcp dport 8080 drop
    }
}
"""


def test_10_foreign_table_drops_8080(lab):
    try:
        lab.run("lab", "exec", "node3", "--", "nft", "-f", "-", input=FOREIGN)
        first = assert_first(doctor(lab), "foreign-rules", "inet foreign", "node3")
        assert first["where"] == "node3"
        t = trace(lab, "p1", "p3:8080")
        assert_culprit(t, "dropped", "foreign-rule", where="node3")
        assert "inet foreign" in t["culprit"]["object"]
    finally:
        lab.run("lab", "exec", "node3", "--", "nft", "delete", "table", "inet", "foreign", check=False)
        healthy(lab)


def test_11_stale_udp_conntrack_entry(lab):
    client = pods(lab)["client"]
    node, cip = client["spec"]["nodeName"], client["status"]["podIP"]
    svc_ip = json.loads(lab.run("get", "service", "web", "-o", "json").stdout)["spec"]["clusterIP"]
    gone = "10.244.%d.250" % (int(node[-1]) % 3)  # an address no pod has (the lab's pods are at .2-.9)
    entry = ["-p", "udp", "-s", cip, "-d", svc_ip, "--sport", "40001", "--dport", "81"]
    try:
        # podnet's proxy deletes such entries when an endpoint goes away, so the
        # stale entry is made by hand: the client's flow, DNAT'd to a gone pod
        in_node(lab, node, "conntrack", "-I", *entry, "-r", gone, "-q", cip, "--reply-port-src", "8081",
                "--reply-port-dst", "40001", "-t", "300", "-u", "SEEN_REPLY")  # fmt: skip
        first = assert_first(doctor(lab, "client", "--to", "svc/web"), "conntrack", gone, "default/web")
        assert first["where"] == node
        t = trace(lab, "client", "svc/web:81", "--udp", "--sport", "40001")
        assert t["culprit"] is not None and t["culprit"]["kind"] == "conntrack", json.dumps(t, indent=1)
        assert t["verdict"] != "delivered"
    finally:
        in_node(lab, node, "conntrack", "-D", *entry)
        healthy(lab)


def test_12_vxlan_fdb_points_at_the_wrong_node(lab):
    nodes = {n["metadata"]["name"]: n for n in lab.get("nodes")}
    mac2 = nodes["node2"]["metadata"]["annotations"]["podnet.io/vtep-mac"]
    fdb = ["bridge", "fdb", "replace", mac2, "dev", "podnet.1", "self", "permanent", "dst"]
    try:
        agent_stopped(lab, "node1")
        in_node(lab, "node1", *fdb, "192.168.200.13")
        d = doctor(lab)
        first = assert_first(d, "vxlan-fdb", "node1", mac2, "192.168.200.13")
        assert first["where"] == "node1"
        t = trace(lab, "p1", "p2")
        assert t["verdict"] != "delivered" and t["culprit"] and t["culprit"]["kind"] == "fdb", json.dumps(t, indent=1)
    finally:
        in_node(lab, "node1", *fdb, "192.168.200.12")
        restart_agents(lab)
        healthy(lab)


# ---- bgp ---------------------------------------------------------------------------------------


def test_a_healthy_bgp_lab_has_no_finding(bgplab):
    assert doctor(bgplab)["findings"] == []
    assert doctor(bgplab, "client", "--to", "svc/web")["findings"] == []
    assert doctor(bgplab, "svc/web")["findings"] == []


def test_13_bird_stopped_on_node2(bgplab):
    """The agent restarts BIRD, so it goes first (a warning: nothing repairs
    node2 now); BIRD's death is the error ranked first (check "bgp"): the
    routes missing on node1 and the broken sessions follow from it."""
    pidfile = os.path.join(bgplab.root, bgplab.name, "nodes", "node2", "bird", "bird.pid")
    try:
        agent_stopped(bgplab, "node2")
        pid = int(open(pidfile).read().strip())
        os.kill(pid, 15)
        wait_for("bird of node2 gone", lambda: not os.path.exists("/proc/%d" % pid) or _zombie(pid), 10)
        wait_for(
            "node1 without node2's route",
            lambda: "10.244.1.0/24" not in in_node(bgplab, "node1", "ip", "route").stdout,
            30,
        )
        d = doctor(bgplab)
        first = assert_first(d, "bgp", "node2")
        assert first["where"] == "node2"
        assert "node-routes" in [f["check"] for f in d["findings"]]
        t = trace(bgplab, "p1", "p2")
        assert t["verdict"] == "no-route" and t["culprit"] and t["culprit"]["kind"] in ("bgp", "route"), t
    finally:
        restart_agents(bgplab)
        wait_for(
            "node1 with node2's route again",
            lambda: "10.244.1.0/24" in in_node(bgplab, "node1", "ip", "route").stdout,
            60,
        )
        healthy(bgplab)
