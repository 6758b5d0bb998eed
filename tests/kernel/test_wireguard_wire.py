"""Issue 16's capture acceptance: what the underlay sees of pod traffic in a
lab with `--encryption wireguard` (vxlan routing, 3 nodes; the pod matrix
across every mode is test_wireguard's).

tcpdump listens on br0 in the underlay namespace (pn-<lab>-u; the bridge is
promiscuous while tcpdump runs, so it sees every frame it forwards between
the nodes' ports, not only its own) and writes a pcap file, started and
stopped by its PID, while a pod on node1 exchanges random 32-byte tokens with
a pod on node2, over UDP and over TCP, one token each way. Then, from the raw
capture:

- no token appears in clear anywhere in the file's bytes;
- no IPv4 packet between two node addresses carries pod traffic unless it
  is UDP port 51820 (WireGuard): no tunnel (VXLAN on UDP 8472/4789, Geneve,
  IP-in-IP, GRE, ...) at all, in a vxlan lab too, and no other packet whose
  payload holds a pod's address (an inner header) or a token. Other traffic
  between nodes that carries no pod (BGP's TCP 179 in a bgp lab; a vxlan
  lab has none today) is allowed, and named in a failure's message;
- no packet on the underlay has a pod address as its outer source or
  destination (pod traffic routed in clear);
- the capture did record WireGuard data packets between node1 and node2 big
  enough to carry the payload, so the checks above cannot pass on an empty
  capture; and the receiver got every token (checked end to end by hash).

The same exchange between two pods on node1, in a capture of its own, never
reaches the underlay: no token, no packet with either pod's address, and no
packet between node addresses as big as the payload.

The plain lab (`plain`, the same lab without --encryption) is the negative
check: the same analysis must find the tokens in clear and VXLAN packets
carrying the pods, i.e. the encrypted case's assertions fail without
WireGuard, and the analysis is not blind.
"""

import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest

from tests.helpers import nsenter
from tests.kernel.test_lab import Lab, leftovers

pytestmark = pytest.mark.kernel

WG_PORT = 51820
VXLAN_PORTS = {4789, 8472}
TUNNEL_PORTS = VXLAN_PORTS | {6081}  # + Geneve
TUNNEL_PROTOS = {4: "IP-in-IP", 41: "IPv6-in-IP", 47: "GRE", 50: "ESP", 115: "L2TP"}
BGP_PORT = 179
SIZE = 1100  # payload bytes per message: bigger than any control packet, below every MTU

PODS = "\n---\n".join(
    "apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n  nodeName: %s\n"
    "  containers: [{name: c, image: agnhost, args: [pause]}]\n" % pn
    for pn in (("w1", "node1"), ("w2", "node2"), ("w3", "node1"))
)

# Receives one UDP datagram or one TCP stream (the client half-closes) and
# answers with its own token, padded, plus the sha256 of what it got; then
# waits for the next. argv: port, reply token.
RECEIVER = (
    r"""
import hashlib, socket, sys, threading
port, token = int(sys.argv[1]), sys.argv[2].encode()
def reply(data):
    return (token * 64)[:%d - 64] + hashlib.sha256(data).hexdigest().encode()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port)); t.listen(8)
def udp():
    while True:
        data, addr = u.recvfrom(65535)
        u.sendto(reply(data), addr)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, _ = t.accept()
    buf = b""
    while True:
        d = c.recv(65535)
        if not d: break
        buf += d
    c.sendall(reply(buf)); c.close()
"""
    % SIZE
)

# Sends its token (padded to SIZE) over UDP (retried: the first packet waits
# for the WireGuard handshake) and over TCP; prints each reply.
SENDER = (
    r"""
import socket, sys, time
proto, host, port, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
payload = (token * 64)[:%d]
deadline = time.time() + 20
while True:
    try:
        if proto == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
            s.sendto(payload, (host, port)); out = s.recvfrom(65535)[0]
        else:
            s = socket.create_connection((host, port), timeout=3); s.settimeout(5)
            s.sendall(payload); s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                d = s.recv(65535)
                if not d: break
                out += d
        sys.stdout.write(out.decode()); break
    except OSError as exc:
        if time.time() > deadline:
            sys.exit("%%s to %%s:%%d: %%s" %% (proto, host, port, exc))
        time.sleep(0.3)
"""
    % SIZE
)


def payload(token):
    return (token.encode() * 64)[:SIZE]


# ---- the capture ---------------------------------------------------------------


class Capture:
    """tcpdump -w on br0 of the underlay namespace, stopped by its PID."""

    def __init__(self, underlay_ns, path):
        self.path = path
        self.proc = subprocess.Popen(
            # --immediate-mode: without it libpcap hands packets over a ring
            # block at a time (1 s timeout), and a SIGTERM loses the block in
            # progress: a short capture came out empty. -U writes each packet
            # to the file at once; -Z root: Debian's tcpdump would otherwise
            # drop to user tcpdump before opening the file
            nsenter(underlay_ns) + ["tcpdump", "-i", "br0", "-n", "-U", "--immediate-mode", "-Z", "root", "-w", path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stderr.readline()  # "listening on br0, link-type EN10MB ..." once it captures
        if "listening on" not in line:
            self.stop()
            raise AssertionError("tcpdump in %s did not start: %s" % (underlay_ns, line))

    def stop(self):
        if self.proc.poll() is None:
            time.sleep(0.5)  # the last replies' frames
            self.proc.send_signal(signal.SIGTERM)  # our own child, by PID; it flushes and exits
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stderr.close()
        with open(self.path, "rb") as f:
            return f.read()


def frames(pcap):
    """Ethernet frames of a classic pcap file (micro- or nanosecond, either byte order)."""
    magic = pcap[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise AssertionError("not a pcap file (magic %r)" % magic)
    linktype = struct.unpack(end + "I", pcap[20:24])[0]
    assert linktype == 1, "link type %d, expected Ethernet" % linktype
    off = 24
    while off + 16 <= len(pcap):
        incl = struct.unpack(end + "I", pcap[off + 8 : off + 12])[0]
        yield pcap[off + 16 : off + 16 + incl]
        off += 16 + incl


def ipv4(frame):
    """-> (src, dst, proto, sport, dport, ip packet length, l4 payload) or None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    proto = ip[9]
    src, dst = ipaddress.ip_address(ip[12:16]), ipaddress.ip_address(ip[16:20])
    l4 = ip[ihl:total]
    sport = dport = None
    data = l4
    if proto == 17 and len(l4) >= 8:
        sport, dport = struct.unpack("!HH", l4[:4])
        data = l4[8:]
    elif proto == 6 and len(l4) >= 20:
        sport, dport = struct.unpack("!HH", l4[:4])
        data = l4[(l4[12] >> 4) * 4 :]
    return src, dst, proto, sport, dport, total, data


def summary(got):
    return (
        "%d frames; tokens in clear %s; vxlan %s; pods between nodes %s; other between nodes %s; "
        "WireGuard %s; pod addresses %s"
        % (
            got["frames"],
            got["clear"],
            got["vxlan"][:5],
            got["pods_between_nodes"][:5],
            got["other_between_nodes"][:5],
            got["wireguard"][:5],
            got["pod_addresses"][:5],
        )
    )


def analyse(pcap, node_ips, pod_nets, pod_ips, tokens):
    """What the underlay carried, as the acceptance reads it."""
    nodes = {ipaddress.ip_address(i) for i in node_ips}
    nets = [ipaddress.ip_network(n) for n in pod_nets]
    carried = [ipaddress.ip_address(i).packed for i in pod_ips] + [t.encode() for t in tokens]
    out = {
        "clear": [t for t in tokens if t.encode() in pcap],
        "wireguard": [],  # (src, dst, ip length) of UDP 51820 between nodes
        "pods_between_nodes": [],  # not WireGuard, carrying pods: a tunnel, a pod address or a token inside
        "other_between_nodes": [],  # not WireGuard, carrying no pod (for the messages)
        "vxlan": [],
        "pod_addresses": [],
        "frames": 0,
    }
    for frame in frames(pcap):
        out["frames"] += 1
        p = ipv4(frame)
        if p is None:
            continue
        src, dst, proto, sport, dport, total, data = p
        what = "%s -> %s proto %d %s->%s len %d" % (src, dst, proto, sport, dport, total)
        if any(a in n for n in nets for a in (src, dst)):
            out["pod_addresses"].append(what)
        if proto == 17 and VXLAN_PORTS & {sport, dport}:
            packet = ipv4(data[8:])  # the VXLAN header, then the inner Ethernet frame
            out["vxlan"].append(what + (" inner %s -> %s" % packet[:2] if packet else ""))
        if src in nodes and dst in nodes:
            if proto == 17 and WG_PORT in (sport, dport):
                out["wireguard"].append((str(src), str(dst), total))
            elif proto in TUNNEL_PROTOS or (proto == 17 and TUNNEL_PORTS & {sport, dport}):
                out["pods_between_nodes"].append("%s (%s)" % (what, TUNNEL_PROTOS.get(proto, "UDP tunnel")))
            elif any(b in data for b in carried):
                out["pods_between_nodes"].append(what + " (a pod address or a token inside)")
            else:
                out["other_between_nodes"].append(what)
    return out


# ---- the lab ---------------------------------------------------------------------


@pytest.fixture(scope="module", params=["wireguard", "plain"])
def lab(request, tmp_path_factory):
    if not shutil.which("tcpdump"):
        pytest.skip("tcpdump is not installed")
    root = str(tmp_path_factory.mktemp("labs"))
    lab = Lab("wc%s%d" % (request.param[0], os.getpid() % 10000), root)
    lab.encrypted = request.param == "wireguard"
    argv = ["lab", "up", "--name", lab.name, "--nodes", "3", "--routing", "vxlan"]
    if lab.encrypted:
        argv += ["--encryption", "wireguard"]
    try:
        lab.run(*argv, "-f", "-", "--timeout", "90", input=PODS, timeout=180)
        doc = json.load(open(os.path.join(root, lab.name, "lab.json")))
        lab.underlay = doc["underlay"]["netns"]
        lab.node_ips = {n["name"]: n["ip"] for n in doc["nodes"]}
        lab.pod_nets = [
            c for n in lab.get("nodes") for c in (n["spec"].get("podCIDRs") or [n["spec"].get("podCIDR")]) if c
        ]
        assert len(lab.pod_nets) >= 3, lab.pod_nets
        from podnet.agent.agent import pod_netns

        lab.pods = {
            p["metadata"]["name"]: (pod_netns(lab.name, p["metadata"]["uid"]), p["status"]["podIP"])
            for p in lab.get("pods")
        }
        lab.tmp = str(tmp_path_factory.mktemp("capture"))
        yield lab
    finally:
        lab.run("lab", "down", "--name", lab.name, check=False, timeout=180)
        assert leftovers(lab.name, root) == []


def exchange(lab, src, dst, tag):
    """Tokens both ways between pods src and dst over UDP and TCP, under a
    capture of the underlay -> (raw pcap, the tokens)."""
    src_ns, _ = lab.pods[src]
    dst_ns, dst_ip = lab.pods[dst]
    back = secrets.token_hex(16)  # the receiver's answer: 32 random bytes, hex
    port = 9000 + secrets.randbelow(1000)
    recv = subprocess.Popen(
        nsenter(dst_ns) + [sys.executable, "-c", RECEIVER, str(port), back],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cap = None
    tokens = [back]
    try:
        assert recv.stdout.readline().strip() == "ready", "receiver in %s: %s" % (dst, recv.stderr.read())
        cap = Capture(lab.underlay, os.path.join(lab.tmp, "%s.pcap" % tag))
        for proto in ("udp", "tcp"):
            token = secrets.token_hex(16)
            tokens.append(token)
            res = subprocess.run(
                nsenter(src_ns) + [sys.executable, "-c", SENDER, proto, dst_ip, str(port), token],
                capture_output=True,
                text=True,
                timeout=40,
            )
            assert res.returncode == 0, "%s %s -> %s: %s" % (proto, src, dst, res.stderr)
            # the receiver's token came back, and it got exactly what was sent
            assert res.stdout.startswith(back[:32]), res.stdout[:80]
            assert res.stdout.endswith(hashlib.sha256(payload(token)).hexdigest()), res.stdout[-80:]
    finally:
        pcap = cap.stop() if cap else b""
        recv.kill()  # our own child, by PID
        recv.wait(5)
        recv.stdout.close()
        recv.stderr.close()
    return pcap, tokens


def test_pod_traffic_between_nodes_is_only_wireguard_on_the_underlay(lab):
    pcap, tokens = exchange(lab, "w1", "w2", "cross")
    got = analyse(pcap, lab.node_ips.values(), lab.pod_nets, [ip for _, ip in lab.pods.values()], tokens)
    n1, n2 = lab.node_ips["node1"], lab.node_ips["node2"]
    if not lab.encrypted:
        # the negative check: without WireGuard the same analysis sees it all
        assert sorted(got["clear"]) == sorted(tokens), summary(got)
        assert any("inner %s" % lab.pods["w1"][1] in v for v in got["vxlan"]), got["vxlan"][:5]
        assert got["pods_between_nodes"], summary(got)
        assert got["wireguard"] == []
        return
    assert got["clear"] == [], "payload in clear on the underlay: %s" % got["clear"]
    assert got["vxlan"] == [], "VXLAN on the underlay: %s" % got["vxlan"][:10]
    assert got["pods_between_nodes"] == [], "pod traffic between nodes outside WireGuard: %s" % summary(got)
    assert got["pod_addresses"] == [], "pod addresses on the underlay: %s" % got["pod_addresses"][:10]
    # not vacuous: WireGuard data packets big enough for the payload went both ways
    big = {(s, d) for s, d, total in got["wireguard"] if total > SIZE}
    assert {(n1, n2), (n2, n1)} <= big, "WireGuard packets recorded (of %d frames): %s" % (
        got["frames"],
        got["wireguard"][:10],
    )


def test_pod_traffic_within_a_node_never_reaches_the_underlay(lab):
    pcap, tokens = exchange(lab, "w1", "w3", "local")
    got = analyse(pcap, lab.node_ips.values(), lab.pod_nets, [ip for _, ip in lab.pods.values()], tokens)
    assert got["clear"] == [], "a same-node payload on the underlay: %s" % got["clear"]
    assert got["pod_addresses"] == [], got["pod_addresses"][:10]
    assert got["vxlan"] == [], got["vxlan"][:10]
    # encrypted, it would be a WireGuard packet at least as big as the payload
    assert [w for w in got["wireguard"] if w[2] > SIZE] == [], got["wireguard"][:10]
