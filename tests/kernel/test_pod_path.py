"""What the packets of a plain pod-to-pod connection cross on the nodes
(issue 17), traced with nftables (`meta nftrace set 1`, podnet.kernel.nfttrace)
on a real 2-node VXLAN lab that has Services and a NetworkPolicy selecting
another pod: the connection's first packet goes through podnet-proxy's nat
chains (the Service dispatch and kube-proxy's checks), every later packet
crosses no chain of `ip podnet-proxy` at all, and in `inet podnet-policy`
only the first rule of each base chain (established, accept)."""

import os
import re
import socket
import struct
import subprocess

import pytest

from podnet.agent.agent import pod_netns
from podnet.kernel import nfttrace
from podnet.kernel.netns import Netns, entered
from tests.helpers import nsenter
from tests.kernel.test_lab import Lab, leftovers

pytestmark = pytest.mark.kernel

IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.45"
POD = (
    "apiVersion: v1\nkind: Pod\nmetadata: {name: %s, labels: {app: %s}}\nspec:\n  nodeName: %s\n"
    "  containers:\n  - name: c\n    image: %s\n    args: [netexec, --http-port=8080]\n"
    "    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n"
)
WORKLOAD = "\n---\n".join(
    [
        POD % (name, app, node, IMAGE)
        for name, app, node in (
            ("client", "client", "node1"),
            ("srv1", "web", "node1"),
            ("srv2", "web", "node2"),
            ("iso", "iso", "node2"),
        )
    ]  # fmt: skip
    + [
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n"
        "  ports: [{port: 80, targetPort: 8080}]\n",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: iso}\nspec:\n"
        "  podSelector: {matchLabels: {app: iso}}\n  policyTypes: [Ingress, Egress]\n",
    ]
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("pp%d" % (os.getpid() % 1000), root)
    try:
        lab.run("lab", "up", "--name", lab.name, "--nodes", "2", "--routing", "vxlan", "-f", "-",
                "--timeout", "90", input=WORKLOAD, timeout=150)  # fmt: skip
        lab.pods = {p["metadata"]["name"]: p for p in lab.get("pods")}
        lab.ip = {name: p["status"]["podIP"] for name, p in lab.pods.items()}
        lab.ns = {name: pod_netns(lab.name, p["metadata"]["uid"]) for name, p in lab.pods.items()}
        for srv in ("srv1", "srv2"):
            lab.wait("%s from client" % srv, lambda srv=srv: _connects(lab.ns["client"], lab.ip[srv]), 30)
        lab.wait("iso isolated on node2", lambda: lab.ip["iso"] + " : goto" in _ingress_map(lab, "node2"), 30)
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False)
        assert leftovers(lab.name, root) == []


def _node_ns(lab, node):
    return "pn-%s-%s" % (lab.name, node)


def _ingress_map(lab, node):
    res = subprocess.run(
        nsenter(_node_ns(lab, node)) + ["nft", "list", "map", "inet", "podnet-policy", "ingress-pods"],
        capture_output=True,
        text=True,
    )
    return res.stdout


def _connects(ns, host, port=8080):
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


def _checksum(data):
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _echo(ident, seq):
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"podnet" * 8
    return head[:2] + struct.pack("!H", _checksum(head)) + head[4:]


def _traced_pings(lab, dst, ident, count=4):
    """`count` echo requests with ICMP id `ident` from client to dst, one
    after the other's reply, traced in the client, both nodes and dst ->
    {netns: trace lines} (the trace table marks every packet of that id)."""
    places = [lab.ns["client"], _node_ns(lab, "node1"), _node_ns(lab, "node2"), lab.ns[dst]]
    monitors = nfttrace.start_monitors(places, ident)
    try:
        for ns in places:
            nfttrace.install(ns, ident, "icmp")
        nfttrace.wait_ready(monitors, lambda ns: nfttrace.install(ns, ident, "icmp"))
        with Netns(lab.ns["client"]) as h, entered(h):
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        try:
            s.settimeout(5)
            for seq in range(1, count + 1):
                s.sendto(_echo(ident, seq), (lab.ip[dst], 0))
                while True:  # a raw socket sees every ICMP packet: wait for our reply
                    pkt, addr = s.recvfrom(2048)
                    icmp = pkt[(pkt[0] & 0x0F) * 4 :]
                    if addr[0] == lab.ip[dst] and icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (ident, seq):
                        break
        finally:
            s.close()
        return nfttrace.collect(monitors, settle=0.5)
    finally:
        for m in monitors:
            m.stop()
        for ns in places:
            nfttrace.remove(ns, ident)


def _packets(lines):
    """{trace id: (what, [lines])} of one namespace's trace; what is
    "first" for the connection's first packet (the echo request of sequence
    1), else "later"."""
    out: dict[str, tuple[str, list[str]]] = {}
    for line in lines:
        m = re.match(r"trace id (\S+) ", line)
        if not m:
            continue
        what, got = out.get(m.group(1), ("later", []))
        if re.search(r"icmp type echo-request .*icmp sequence 1 ", line):
            what = "first"
        out[m.group(1)] = (what, got + [line])
    return out


@pytest.mark.parametrize("dst,ident", [("srv1", 41311), ("srv2", 41312)])
def test_after_the_first_packet_no_proxy_chain_and_one_policy_rule(lab, dst, ident):
    by_ns = _traced_pings(lab, dst, ident)
    nodes = [_node_ns(lab, "node1")] + ([_node_ns(lab, "node2")] if dst == "srv2" else [])
    for ns in nodes:
        packets = _packets(by_ns[ns])
        first = [lines for what, lines in packets.values() if what == "first"]
        assert first, "%s: the first echo request was not traced:\n%s" % (ns, "\n".join(by_ns[ns]))
        # the first packet does go through the table: the Service dispatch and checks run for it
        assert any(" ip podnet-proxy nat-prerouting rule jump services " in ln for ln in first[0]), "\n".join(first[0])
        later = [lines for what, lines in packets.values() if what == "later"]
        # the kernel may give one packet a new trace id on its way (a VXLAN
        # node: bridged in, then routed), so a packet's forward-hook events
        # can be a group of their own; counted over all: the 3 later requests
        # and the 4 replies, each through egress and ingress at its first rule
        established = 0
        for lines in later:
            text = "\n".join(lines)
            assert " ip podnet-proxy " not in text, "%s: a later packet crossed the proxy's chains:\n%s" % (ns, text)
            rules = [ln for ln in lines if " inet podnet-policy " in ln and " rule " in ln]
            assert all("ct state established,related accept" in ln for ln in rules), "%s:\n%s" % (ns, text)
            assert len(rules) in (0, 2), "%s:\n%s" % (ns, text)
            established += len(rules)
        assert established == 2 * 7, "%s:\n%s" % (ns, "\n".join(by_ns[ns]))
