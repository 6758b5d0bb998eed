"""`podnet trace` on a real 3-node lab per routing mode: one probe, the hops
in order with the kernel objects each mode uses (VXLAN outer addresses and
VNI, the host-gw next hop, the BIRD route), the endpoint the Service DNAT
chose, and nothing left behind (trace tables, monitor processes)."""

import json
import os
import socket
import subprocess

import pytest

from podnet.kernel.netns import Netns, entered, pids_in
from tests.helpers import nsenter
from tests.kernel.test_lab import Lab, leftovers

pytestmark = pytest.mark.kernel

IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.45"
WORKLOAD = "\n---\n".join(
    [
        "apiVersion: v1\nkind: Pod\nmetadata: {name: %s, labels: {app: %s}}\nspec:\n  nodeName: %s\n"
        "  containers:\n  - name: c\n    image: %s\n    args: [netexec, --http-port=8080, --udp-port=8081]\n"
        "    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n" % (name, app, node, IMAGE)
        # node2 has no pod: its agent, not the CNI plugin's first ADD, turns
        # forwarding on, so NodePort traffic through it still reaches srv1/srv3
        for name, app, node in (
            ("client", "client", "node1"),
            ("srv1", "web", "node1"),
            ("srv3", "web", "node3"),
        )
    ]
    + [
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n"
        "  ports: [{port: 80, targetPort: 8080}]\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web-np}\nspec:\n  type: NodePort\n  selector: {app: web}\n"
        "  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web-lb}\nspec:\n  type: LoadBalancer\n"
        "  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: nobody}\nspec:\n  selector: {app: nobody}\n"
        "  ports: [{port: 80, targetPort: 8080}]\n",
    ]
)
NODE_IP = {"node1": "192.168.200.11", "node2": "192.168.200.12", "node3": "192.168.200.13"}


@pytest.fixture(scope="module", params=["vxlan", "host-gw", "bgp"])
def lab(request, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("ta%s%d" % (request.param[0], os.getpid() % 1000), root)
    lab.mode = request.param
    try:
        lab.run("lab", "up", "--name", lab.name, "--nodes", "3", "--routing", request.param, "-f", "-",
                "--timeout", "90", input=WORKLOAD, timeout=150)  # fmt: skip
        lab.doc = json.load(open(os.path.join(root, lab.name, "lab.json")))
        lab.pods = {p["metadata"]["name"]: p for p in lab.get("pods")}
        lab.ip = {name: p["status"]["podIP"] for name, p in lab.pods.items()}
        lab.lb = lab.wait("a LoadBalancer IP", lambda: _lb_ip(lab), 30)
        ext = lab.doc["external"]["netns"]
        # routes (BIRD in bgp mode) and the external router's route to the LB IP take a moment
        lab.wait("srv3 from client", lambda: _connects(_pod_ns(lab, "client"), lab.ip["srv3"], 8080), 30)
        lab.wait("the LB IP from outside", lambda: _connects(ext, lab.lb, 80), 30)
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def _connects(ns, host, port):
    """A TCP handshake from inside ns (the socket is made there) succeeds."""
    with Netns(ns) as h, entered(h):
        s = socket.socket()
    try:
        s.settimeout(1)
        s.connect((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _lb_ip(lab):
    svc = json.loads(lab.run("get", "svc", "web-lb", "-o", "json").stdout)
    ing = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    return ing[0]["ip"] if ing else None


def _pod_ns(lab, name):
    from podnet.agent.agent import pod_netns

    return pod_netns(lab.name, lab.pods[name]["metadata"]["uid"])


def trace(lab, *args, rc=0):
    res = lab.run("trace", *args, "-o", "json", check=False)
    assert res.returncode == rc, "trace %s -> %d\n%s%s" % (" ".join(args), res.returncode, res.stdout, res.stderr)
    doc = json.loads(res.stdout)
    assert set(doc) == {"from", "to", "protocol", "verdict", "reason", "culprit", "endpoint", "hops", "elapsed"}
    for h in doc["hops"]:
        assert set(h) == {"where", "netns", "step", "what", "object", "verdict"}
    return doc


def steps(doc):
    return [(h["where"], h["step"]) for h in doc["hops"]]


def crossing(lab, doc, src_node, dst_node, dst_ip):
    """The hop that carries the packet from src_node to dst_node, as the mode does it."""
    hop = [h for h in doc["hops"] if h["where"] == "node " + src_node and h["step"] in ("vxlan", "route", "bgp")][-1]
    if lab.mode == "vxlan":
        assert hop["step"] == "vxlan"
        assert "VNI 1" in hop["what"] and "to %s" % dst_node in hop["what"]
        assert "(outer %s -> %s)" % (NODE_IP[src_node], NODE_IP[dst_node]) in hop["what"]
        assert "dev podnet.1" in hop["object"] and "dst %s" % NODE_IP[dst_node] in hop["object"]
    elif lab.mode == "host-gw":
        assert hop["step"] == "route"
        assert "next hop %s (%s)" % (dst_node, NODE_IP[dst_node]) in hop["what"]
        assert "via %s dev eth0" % NODE_IP[dst_node] in hop["object"]
    else:
        assert hop["step"] == "bgp"
        assert "proto bird" in hop["object"] and "via %s" % NODE_IP[dst_node] in hop["object"]
        assert "next hop %s" % dst_node in hop["what"]
    return hop


def test_pod_to_pod_on_the_same_node(lab):
    doc = trace(lab, "client", "srv1:8080")
    assert doc["verdict"] == "delivered" and doc["culprit"] is None and doc["endpoint"] is None
    assert doc["from"] == {"kind": "pod", "name": "default/client", "ip": lab.ip["client"], "node": "node1"}
    assert doc["to"] == {"kind": "pod", "name": "default/srv1", "ip": lab.ip["srv1"], "port": 8080, "node": "node1"}
    assert steps(doc) == [
        ("pod default/client", "route"),
        ("node node1", "bridge"),
        ("node node1", "bridge"),
        ("pod default/srv1", "deliver"),
        ("pod default/srv1", "deliver"),
    ]
    assert "SYN-ACK" in doc["reason"] and doc["hops"][-1]["verdict"] == "accept"


def test_pod_to_pod_across_nodes(lab):
    doc = trace(lab, "client", "srv3:8080")
    assert doc["verdict"] == "delivered"
    assert steps(doc)[:2] == [("pod default/client", "route"), ("node node1", "bridge")]
    assert steps(doc)[-3:] == [
        ("node node3", "bridge"),
        ("pod default/srv3", "deliver"),
        ("pod default/srv3", "deliver"),
    ]
    crossing(lab, doc, "node1", "node3", lab.ip["srv3"])
    order = [h["where"] for h in doc["hops"]]
    assert order.index("node node1") < order.index("node node3")


def test_pod_to_cluster_ip(lab):
    doc = trace(lab, "client", "svc/web")
    assert doc["verdict"] == "delivered"
    assert doc["to"]["kind"] == "service" and doc["to"]["name"] == "default/web" and doc["to"]["port"] == 80
    assert doc["endpoint"] in ("%s:8080" % lab.ip["srv1"], "%s:8080" % lab.ip["srv3"])
    chosen = "srv1" if doc["endpoint"].startswith(lab.ip["srv1"] + ":") else "srv3"
    dnat = [h for h in doc["hops"] if h["verdict"] == "dnat"]
    assert len(dnat) == 1 and dnat[0]["where"] == "node node1"
    assert "dnat to %s" % doc["endpoint"] in dnat[0]["object"] and "default/web" in dnat[0]["object"]
    assert any("Service default/web matched" in h["what"] for h in doc["hops"])
    assert doc["hops"][-1]["where"] == "pod default/" + chosen
    if chosen == "srv3":
        crossing(lab, doc, "node1", "node3", lab.ip["srv3"])


def _from_outside(lab, doc, via):
    assert doc["from"]["kind"] == "external" and doc["verdict"] == "delivered"
    assert doc["to"]["kind"] == "service"
    assert doc["hops"][0]["where"] == "external"
    dnat = [h for h in doc["hops"] if h["verdict"] == "dnat"]
    assert len(dnat) == 1 and dnat[0]["where"] == "node " + via
    snat = [h for h in doc["hops"] if h["verdict"] == "snat"]
    assert [h["where"] for h in snat] == ["node " + via]  # masqueraded where it came in
    chosen = "srv1" if doc["endpoint"].startswith(lab.ip["srv1"] + ":") else "srv3"
    assert doc["hops"][-1]["where"] == "pod default/" + chosen
    target = lab.pods[chosen]["spec"]["nodeName"]
    if target != via:
        crossing(lab, doc, via, target, lab.ip[chosen])


def test_external_to_node_port(lab):
    doc = trace(lab, "external", "%s:30080" % NODE_IP["node2"])
    assert doc["to"]["name"] == "default/web-np" and doc["to"]["node"] == "node2"
    _from_outside(lab, doc, "node2")


def test_external_to_load_balancer_ip(lab):
    doc = trace(lab, "external", "%s:80" % lab.lb)
    assert doc["to"]["name"] == "default/web-lb" and doc["to"]["ip"] == lab.lb
    via = [h for h in doc["hops"] if h["verdict"] == "dnat"][0]["where"].split()[-1]
    assert via in NODE_IP  # the external router's ECMP route picked one node
    _from_outside(lab, doc, via)


def test_dns_name_resolved_as_the_pod_resolves_it(lab):
    cluster_ip = json.loads(lab.run("get", "svc", "web", "-o", "json").stdout)["spec"]["clusterIP"]
    for name in ("web.default.svc.cluster.local", "web.default", "web"):  # the last two through its search list
        doc = trace(lab, "client", name + ":80")
        assert doc["to"]["kind"] == "service" and doc["to"]["name"] == "default/web"
        assert doc["to"]["ip"] == cluster_ip and doc["verdict"] == "delivered"


def test_unknown_names_are_refused_with_exit_2(lab):
    for args, word in (
        (("nosuch", "srv1"), "default/nosuch"),
        (("client", "nosuch"), "default/nosuch"),
        (("client", "svc/nosuch"), "service default/nosuch"),
        (("client", "no.such.name"), "no.such.name"),
    ):
        res = lab.run("trace", *args, check=False)
        assert res.returncode == 2 and res.stdout == ""
        assert res.stderr.startswith("error: ") and word in res.stderr and "not" in res.stderr


def test_nothing_listening_is_refused_by_the_pod(lab):
    doc = trace(lab, "client", "srv3:9999", rc=1)
    assert doc["verdict"] == "refused"
    assert doc["culprit"] == {"where": "pod default/srv3", "kind": "listen", "object": "%s:9999" % lab.ip["srv3"]}
    assert doc["hops"][-1]["where"] == "pod default/srv3" and "RST" in doc["hops"][-1]["object"]


def test_a_service_without_endpoints_is_rejected_on_the_client_node(lab):
    doc = trace(lab, "client", "svc/nobody", rc=1)
    assert doc["verdict"] == "rejected" and doc["endpoint"] is None
    assert doc["culprit"] == {"where": "node1", "kind": "service", "object": "default/nobody"}
    assert doc["hops"][-1]["where"] == "node node1" and "reject" in doc["hops"][-1]["object"]


def _lab_netns(lab):
    return (
        [n["netns"] for n in lab.doc["nodes"]]
        + [lab.doc["external"]["netns"]]
        + [_pod_ns(lab, name) for name in lab.pods]
    )


def test_nothing_left_behind_also_after_a_timeout(lab):
    spare = lab.ip["srv3"].rsplit(".", 1)[0] + ".250"  # in node3's podCIDR, nobody has it
    doc = trace(lab, "client", spare + ":8080", "--timeout", "1", rc=1)
    assert doc["verdict"] != "delivered"
    trace(lab, "client", "srv3:8080")
    for ns in _lab_netns(lab):
        assert "podnet-trace" not in _tables(ns), "%s still has the trace table" % ns
    monitors = [p for p in pids_in(_lab_netns(lab)) if _cmdline(p)[:2] == ["nft", "monitor"]]
    assert monitors == []


def _tables(ns):
    return subprocess.run(nsenter(ns) + ["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [w.decode() for w in f.read().split(b"\0") if w]
    except OSError:
        return []


def doctor(lab, *args):
    res = lab.run("doctor", *args, "-o", "json", check=False)
    assert res.returncode in (0, 1), (args, res.stdout, res.stderr)
    return json.loads(res.stdout)


def test_doctor_finds_only_the_real_problem_in_every_mode(lab):
    """The same healthy paths as the traces above give no finding in any
    routing mode; the one Service that selects nobody is the whole lab's only
    finding (no false one beside it)."""
    for args in (("client", "--to", "svc/web"), ("svc/web",), ("svc/web-np",), ("node/node2",), ("srv3",)):
        d = doctor(lab, *args)
        assert d["findings"] == [], (args, d["findings"])
    whole = doctor(lab)["findings"]
    assert [(f["check"], "default/nobody" in f["summary"]) for f in whole] == [("service-selector", True)], whole


def test_a_cluster_ip_is_not_pingable_and_the_external_host_is(lab):
    """kube-proxy's semantics: a ClusterIP answers only its Service's ports,
    so an echo request is rejected on the client's node; the external host
    answers its own echo, and the last hop says it is the host's address."""
    doc = trace(lab, "client", "svc/web", "--icmp", rc=1)
    assert doc["verdict"] == "rejected" and "not ping" in doc["reason"], doc["reason"]
    assert doc["culprit"] == {"where": "node1", "kind": "service", "object": "default/web"}
    doc = trace(lab, "client", "external", "--icmp")
    assert doc["verdict"] == "delivered"
    assert [h["where"] for h in doc["hops"][-2:]] == ["external", "external"], doc["hops"]
    assert "table local" in doc["hops"][-2]["object"] and "echo-reply" in doc["hops"][-1]["object"]
