"""Pods on different nodes talk without NAT: a 3-node lab per routing mode."""

import difflib
import itertools
import json
import os
import re
import subprocess
import sys
import time

import pytest

from tests.helpers import connect, nsenter, ping, server
from tests.kernel.test_lab import Lab, leftovers, ready

pytestmark = pytest.mark.kernel

PODS = "\n---\n".join(
    "apiVersion: v1\nkind: Pod\nmetadata: {name: p%d, labels: {app: mesh}}\nspec:\n  nodeName: node%d\n"
    "  containers:\n  - name: netexec\n    image: registry.k8s.io/e2e-test-images/agnhost:2.45\n"
    "    args: [netexec, --http-port=8080]\n    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n" % (i, i)
    for i in (1, 2, 3)
)
EXTERNAL = "192.168.200.100"

# Holds one TCP connection open and echoes a line each time stdin gives one.
HOLD = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
for line in sys.stdin:
    s.sendall(line.encode()); print(s.recv(100).decode().strip(), flush=True)
"""
ECHO = r"""
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(8); print("ready", flush=True)
def serve(c):
    while True:
        d = c.recv(100)
        if not d: return
        c.sendall(b"echo " + d)
while True:
    c, _ = srv.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@pytest.fixture(scope="module", params=["vxlan", "host-gw", "bgp"])
def lab(request, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("r%s%d" % (request.param[0], os.getpid() % 10000), root)
    lab.mode = request.param
    try:
        lab.run(
            "lab",
            "up",
            "--name",
            lab.name,
            "--nodes",
            "3",
            "--routing",
            request.param,
            "-f",
            "-",
            "--timeout",
            "90",
            input=PODS,
            timeout=150,
        )
        lab.doc = json.load(open(os.path.join(root, lab.name, "lab.json")))
        lab.ns = {n["name"]: n["netns"] for n in lab.doc["nodes"]}
        lab.ns["external"] = lab.doc["external"]["netns"]
        if request.param == "bgp":  # routes arrive through BIRD sessions: give them a moment
            lab.wait(
                "BGP routes on every node",
                lambda: all(
                    lab.run("lab", "exec", n, "--", "ip", "route").stdout.count("proto bird") == 2
                    for n in ("node1", "node2", "node3")
                ),
                30,
            )
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def pods(lab):
    return {p["metadata"]["name"]: p for p in lab.get("pods")}


def pod_ns(lab, pod):
    from podnet.agent.agent import pod_netns

    return pod_netns(lab.name, pod["metadata"]["uid"])


def test_nodes_show_their_routing_and_bgp_sessions(lab):
    rows = lab.run("get", "nodes", "-o", "wide").stdout.splitlines()
    assert rows[0].split()[-1] == "ROUTING"
    for row in rows[1:]:
        assert lab.mode in row
    if lab.mode == "bgp":
        # two node peers and the external host's router
        lab.wait(
            "every session Established in get nodes",
            lambda: all(
                row.count("=Established") == 3 and "external=Established" in row
                for row in lab.run("get", "nodes", "-o", "wide").stdout.splitlines()[1:]
            ),
            20,
        )


LB = """apiVersion: v1
kind: Service
metadata: {name: mesh-lb}
spec:
  type: LoadBalancer
  selector: {app: mesh}
  ports: [{port: 80, targetPort: 8080}]
"""


def test_loadbalancer_ip_reaches_the_pods_from_outside(lab):
    """vxlan/host-gw: one elected node answers ARP for the IP; bgp: every node
    advertises it to the external host's router, which installs it (ECMP)."""
    lab.run("apply", "-f", "-", input=LB)
    try:
        ing = lab.wait(
            "an ingress IP",
            lambda: (
                json.loads(lab.run("get", "svc", "mesh-lb", "-o", "json").stdout)
                .get("status", {})
                .get("loadBalancer", {})
                .get("ingress")
            ),
        )
        ip = ing[0]["ip"]
        names = {p["metadata"]["name"] for p in pods(lab).values()}
        url = "http://%s/hostname" % ip

        def twelve_answers():
            out = lab.run(
                "lab",
                "exec",
                "external",
                "--",
                "sh",
                "-c",
                "for i in $(seq 12); do curl -s -m 2 %s; echo; done" % url,
                check=False,
            ).stdout.split()
            # the first answers may come while the routes still converge
            # (bgp: the ECMP route is learned from one node, then all)
            return out if len(out) == 12 else None

        seen = lab.wait("12 of 12 answers from outside", twelve_answers, 30)
        assert len(seen) == 12 and set(seen) <= names
        if lab.mode == "bgp":

            def ecmp_block():
                # each node announces the IP once its own agent has seen the
                # Service; the external router merges the paths as they arrive
                routes = lab.run("lab", "exec", "external", "--", "ip", "route").stdout
                lines = routes.splitlines()
                i = next((k for k, x in enumerate(lines) if x.startswith(ip + " ")), None)
                if i is None:
                    return None
                block = [lines[i]] + list(itertools.takewhile(lambda x: x[:1].isspace(), lines[i + 1 :]))
                text = " ".join(block) + " "
                return block if all("via %s " % n["ip"] in text for n in lab.doc["nodes"]) else None

            # one ECMP route through every node (externalTrafficPolicy Cluster: all advertise)
            block = lab.wait("an ECMP route to %s through every node" % ip, ecmp_block, 30)
            assert "proto bird" in block[0], block
        else:
            routes = lab.run("lab", "exec", "external", "--", "ip", "route").stdout
            assert ip not in routes  # on-link: found by ARP, answered by the elected node
    finally:
        lab.run("delete", "svc", "mesh-lb")


def test_every_pod_reaches_every_pod_without_nat(lab):
    ps = pods(lab)
    assert all(ready(p) for p in ps.values())
    for a in ps.values():
        for b in ps.values():
            if a is b:
                continue
            assert ping(pod_ns(lab, a), b["status"]["podIP"]), (a["metadata"]["name"], b["metadata"]["name"])
            seen = lab.run(
                "exec",
                a["metadata"]["name"],
                "--",
                "curl",
                "-s",
                "-m",
                "3",
                "http://%s:8080/clientip" % b["status"]["podIP"],
            ).stdout
            assert seen.startswith(a["status"]["podIP"] + ":"), (a["metadata"]["name"], b["metadata"]["name"], seen)


def test_nodes_and_pods_reach_each_other_and_the_outside_sees_the_node(lab):
    ps = pods(lab)
    nodes = {n["name"]: n["ip"] for n in lab.doc["nodes"]}
    for node in nodes:
        for p in ps.values():
            assert ping(lab.ns[node], p["status"]["podIP"]), (node, p["metadata"]["name"])
    for p in ps.values():
        for node, ip in nodes.items():
            assert ping(pod_ns(lab, p), ip), (p["metadata"]["name"], node)
    with server(lab.ns["external"], port=9000):
        for p in ps.values():
            assert connect(pod_ns(lab, p), EXTERNAL, 9000) == nodes[p["spec"]["nodeName"]]


def test_mtu_is_right_end_to_end(lab):
    ps = pods(lab)
    # eth0 at the underlay's 1500 in every mode; vxlan's 50 bytes go on the
    # pods' default route only, set for pods automatically
    assert "mtu 1500" in lab.run("exec", "p1", "--", "ip", "link", "show", "eth0").stdout
    default = lab.run("exec", "p1", "--", "ip", "route", "show", "default").stdout
    assert ("mtu 1450" in default) == (lab.mode == "vxlan"), default
    assert ping(pod_ns(lab, ps["p1"]), ps["p3"]["status"]["podIP"], size=1400)
    # DF: full size on the pod's own subnet (its node's bridge), the path's
    # size across nodes
    far = 1450 if lab.mode == "vxlan" else 1500
    for dst, mtu in ((default.split()[2], 1500), (ps["p3"]["status"]["podIP"], far)):
        df = nsenter(pod_ns(lab, ps["p1"])) + ["ping", "-c1", "-W2", "-M", "do", "-s"]
        assert subprocess.run(df + [str(mtu - 28), dst], capture_output=True).returncode == 0, dst
        res = subprocess.run(df + [str(mtu - 27), dst], capture_output=True, text=True)
        assert res.returncode != 0 and "mtu=%d" % mtu in res.stdout + res.stderr, (dst, res)
    # a bulk transfer: 20 MB from p1 to p3 across nodes
    code = (
        "import socket,sys; s=socket.create_connection((sys.argv[1],7000),timeout=10); "
        "s.sendall(b'x'*20000000); s.shutdown(1); print(s.recv(100).decode())"
    )
    sink = (
        "import socket; srv=socket.socket(); srv.bind(('0.0.0.0',7000)); srv.listen(1); print('ready',flush=True); "
        "c,_=srv.accept(); n=0\nwhile True:\n d=c.recv(1<<16)\n if not d: break\n n+=len(d)\nc.sendall(str(n).encode())"
    )
    proc = subprocess.Popen(
        nsenter(pod_ns(lab, ps["p3"])) + [sys.executable, "-c", sink], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        out = subprocess.run(
            nsenter(pod_ns(lab, ps["p1"])) + [sys.executable, "-c", code, ps["p3"]["status"]["podIP"]],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout.strip() == "20000000", out.stderr
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def kernel_state(lab, node):
    cmds = (
        ["ip", "route"],
        ["ip", "neigh", "show", "nud", "permanent"],
        ["bridge", "fdb", "show", "dev", "podnet.1"],
        ["nft", "list", "ruleset"],
        ["ip", "-br", "link"],
    )
    out = [lab.run("lab", "exec", node, "--", *c, check=False).stdout for c in cmds]
    # nft lists tables in creation order, and a full sync replaces a table (the
    # proxy's at start): compare the tables, not their order
    # nor their chains and sets: a partial sync appends a new Service's chains,
    # a full sync lists them sorted
    out[3] = sorted(_blocks_sorted(t) for t in re.split(r"(?m)^(?=table )", out[3]))
    return out


def _blocks_sorted(table):
    """A table's listing with its blocks (chains, sets, maps: separated by a
    blank line) in sorted order."""
    lines = table.rstrip("\n").split("\n")
    if len(lines) < 3:
        return table
    head, body, tail = lines[0], "\n".join(lines[1:-1]), lines[-1]
    return "\n".join([head] + sorted(body.split("\n\n")) + [tail]) + "\n"


def test_restarting_an_agent_keeps_connections_and_changes_nothing(lab):
    ps = pods(lab)
    srv = subprocess.Popen(
        nsenter(pod_ns(lab, ps["p2"])) + [sys.executable, "-c", ECHO, "7100"], stdout=subprocess.PIPE, text=True
    )
    cli = None
    try:
        assert srv.stdout.readline().strip() == "ready"
        cli = subprocess.Popen(
            nsenter(pod_ns(lab, ps["p1"])) + [sys.executable, "-c", HOLD, ps["p2"]["status"]["podIP"], "7100"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        cli.stdin.write("one\n")
        cli.stdin.flush()
        assert cli.stdout.readline().strip() == "echo one"
        # the lab's addons (the ingress controller's pod, whose Service node2
        # programs once it is Ready) settle first: "before" is a settled state
        lab.wait("every pod of the lab Ready", lambda: all(ready(p) for p in lab.get("pods", "-A")), 90)

        seen = [kernel_state(lab, "node2")]

        def settled():
            seen.append(kernel_state(lab, "node2"))
            return seen[-1] == seen[-2]

        lab.wait("node2's kernel state settled", settled, 30)
        before = seen[-1]
        procs = json.load(open(os.path.join(lab.env["PODNET_STATE_ROOT"], lab.name, "procs.json")))
        os.kill(procs["agent-node2"]["pid"], 9)
        time.sleep(1)
        lab.run("lab", "up", "--name", lab.name)  # restarts the dead agent
        time.sleep(3)  # a few reconcile passes
        after = kernel_state(lab, "node2")
        assert after == before, "".join(
            difflib.unified_diff("".join(before[3]).splitlines(True), "".join(after[3]).splitlines(True))
        ) or [a for a, b in zip(after, before, strict=True) if a != b]
        cli.stdin.write("two\n")
        cli.stdin.flush()
        assert cli.stdout.readline().strip() == "echo two"  # the same connection
        assert pods(lab)["p2"]["status"]["containerStatuses"][0]["restartCount"] == 0
    finally:
        for p in (cli, srv):
            if p:
                p.kill()
                p.wait()


def test_a_route_deleted_by_hand_comes_back(lab):
    # vxlan/host-gw: the agent's resync; bgp: BIRD's kernel scan re-installs it
    cidr = next(n["spec"]["podCIDR"] for n in lab.get("nodes") if n["metadata"]["name"] == "node2")
    # the delete succeeds (check=True); no look right after it: in bgp mode
    # BIRD may put the route back before a second `ip route` runs
    lab.run("lab", "exec", "node1", "--", "ip", "route", "del", cidr)
    lab.wait("the route back", lambda: cidr in lab.run("lab", "exec", "node1", "--", "ip", "route").stdout, 15)


def test_adding_and_removing_a_node_updates_the_others(lab):
    lab.run("lab", "add-node", timeout=120)
    node4 = lab.wait(
        "node4 with a podCIDR",
        lambda: next(
            (n for n in lab.get("nodes") if n["metadata"]["name"] == "node4" and n["spec"].get("podCIDR")), None
        ),
    )
    cidr = node4["spec"]["podCIDR"]
    lab.wait("node1 routes to node4", lambda: cidr in lab.run("lab", "exec", "node1", "--", "ip", "route").stdout, 20)
    lab.run("lab", "remove-node", "node4")
    lab.wait("node4's routes gone", lambda: cidr not in lab.run("lab", "exec", "node1", "--", "ip", "route").stdout, 30)
    if lab.mode == "vxlan":
        fdb = lab.run("lab", "exec", "node1", "--", "bridge", "fdb", "show", "dev", "podnet.1").stdout
        assert "192.168.200.14" not in fdb
        assert cidr.split("/")[0] not in lab.run("lab", "exec", "node1", "--", "ip", "neigh").stdout
