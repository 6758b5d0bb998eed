"""Data plane: podnet's pod-to-pod paths vs the same paths built by hand.

Run as root:  .venv/bin/python bench/dataplane.py [--seconds 5] [--rounds 2] [--pings 100]
                  [--modes vxlan,host-gw,bgp] [--encryption] [--hand-masq] [--json FILE]

What it measures, in one run: iperf3 TCP throughput (`iperf3 -c DST -t
SECONDS -J`, the receiver's bits/s, against `iperf3 -s -1` started in the
server's namespace and stopped by PID) and ping RTT (median of --pings
per-packet times of `ping -c 10 -i 0.01` batches, the compared sides taking
turns batch by batch so that background noise hits both alike; -q is not
used because its summary has no median) for

  same node    podnet: two pods pinned to node1 (veth -> cni0 bridge -> veth,
               plus whatever podnet adds: nft tables, br_netfilter)
               vs a plain veth pair between two namespaces (the floor), and
               vs a hand-built bridge with two veths (podnet's topology, no rules)
  cross node   for each routing mode (`lab up --routing vxlan|host-gw|bgp`):
               a pod on node1 to a pod on node2, vs the same path by hand:
               vxlan    flannel style: per node `vx` (VNI 1, dstport 8472,
                        nolearning, MTU underlay-50, pods' MTU the same),
                        .0/32 on vx, and per remote node exactly
                        `ip route add <podCIDR> via <remote .0> dev vx onlink`,
                        `ip neigh add <remote .0> lladdr <VTEP MAC> dev vx nud permanent`,
                        `bridge fdb add <VTEP MAC> dev vx dst <remote node IP>`
               host-gw  `ip route add <remote podCIDR> via <remote node IP>`
               bgp      BGP only installs routes: the hand-built peer is host-gw
  encrypted    with --encryption (off by default: it doubles the labs and the
               run time), for each mode also `lab up --routing MODE
               --encryption wireguard`, a pod on node1 to a pod on node2, vs
               WireGuard built by hand with the same tools between two more
               hand-built nodes and a pod behind each: per node the interface
               pndp-wg (the kernel's `ip link add ... type wireguard` where
               the kernel has the module, else `wireguard-go -f pndp-wg`,
               which makes a TUN device), `wg set pndp-wg listen-port 51820
               private-key FILE peer <the other's key> endpoint <its IP>:51820
               allowed-ips <its podCIDR>`, <own podCIDR>.0/32 on it, MTU
               underlay-60 (IPv4 20 + UDP 8 + WireGuard 32; pods and cni0
               the same), and `ip route add <remote podCIDR> dev pndp-wg`.
               That is podnet's shape in every mode (WireGuard carries the pod
               packets itself: no VXLAN inside it), so one hand-built tunnel
               is the reference for all three. The same round also measures
               the mode without encryption (podnet's plain lab and the plain
               hand-built path, both up at the same time), so a second table
               gives the cost of encryption: with / without, for podnet and
               for the hand-built paths. Which WireGuard ran is printed: the
               hand-built one's, and podnet's from its Nodes' annotation
               podnet.io/wireguard-implementation; the bench also checks that
               podnet's route to the remote pod goes through podnet.wg.
               wireguard-go listens on /var/run/wireguard/NAME.sock, one
               directory for the whole machine, so each hand-built
               wireguard-go runs in a private mount namespace with a tmpfs on
               /run (nothing is created in the machine's /run), and every
               `wg` for it runs in that mount namespace (nsenter --mount=
               /proc/PID/ns/mnt); the process is stopped by its PID, and its
               TUN device goes with it.
The podnet side is real labs brought up by the CLI (`lab up --name dp<N><m>
--nodes 2 [--routing MODE] [--encryption wireguard] -f MANIFEST`,
PODNET_STATE_ROOT in a temp dir), one mode at a time (with --encryption the
mode's plain and encrypted labs are up together); iperf3 and ping run inside
the pods through `podnet exec`. Every podnet lab also holds
a NetworkPolicy (dp-isolated) that selects two other pods, dp-x on node1 and
dp-y on node2, never the measured ones: each node then has a podnet-policy
table with content, as in a cluster that uses policies; the bench waits until
each node's table isolates its own and none of the measured pods, and fails
the lab otherwise (--no-policy leaves them out). The
hand-built side lives in namespaces named pndp-<pid>-* (underlay
192.168.220.0/24, pod subnets 10.250.x.0/24, ip_forward only in them; the
WireGuard nodes are .21 and .22 with pods in 10.250.21/22.0/24); the root
namespace is never changed. Each hand-built path is measured while the
lab it is compared with is up, so both see the same background load, and the
order alternates per round (podnet first, then hand-built first, ...); the
figure is the median over --rounds.

Reading it: ratio = podnet / hand-built. Throughput: higher is better, the
target is >= 0.95. RTT: lower is better (a ratio above 1 is podnet's extra
latency). The client's MTU towards the server (its route's MTU where the
route has one, else eth0's) and TCP retransmits are printed too: an MTU
above the path's (vxlan: underlay - 50; WireGuard: underlay - 60) shows up as
retransmits or a stall. podnet's pods keep eth0 at the underlay's 1500 and
carry the tunnel's MTU on their default route only (so two pods on one node
talk at 1500); the hand-built cross-node pods have the tunnel's MTU on eth0,
as flannel gives them. podnet's nodes carry an nft masquerade rule, so conntrack sees every
packet; the hand-built nodes have no rules unless --hand-masq gives them the
same one, which separates conntrack's cost (flannel pays it too) from the
rest of podnet's path. On a shared 2-CPU machine (iperf3's client and server
compete with everything else, and with wireguard-go's two processes on the
encrypted paths) the figures are noisy: compare within one run, never across
runs. At the end every lab is taken down through the CLI (also on failure,
Ctrl-C, SIGTERM), every process this script started is stopped by PID, its
namespaces and temp dir are removed, and it checks that no pndp-/pn-<lab>-
namespace is left.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "pndp-%d-" % os.getpid()
MODES = ("vxlan", "host-gw", "bgp")
UNDERLAY_MTU = 1500
PING_BATCH = 10  # pings per turn when the sides' RTTs are measured taking turns
NODES = {1: "192.168.220.11", 2: "192.168.220.12"}  # hand-built node -> underlay IP; podCIDR 10.250.1<n>.0/24
WG_NODES = {1: "192.168.220.21", 2: "192.168.220.22"}  # hand-built WireGuard nodes; podCIDR 10.250.2<n>.0/24
WG_IF, WG_PORT, WG_OVERHEAD = "pndp-wg", 51820, 60
PODNET_WG_IF = "podnet.wg"

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels: {dp: %s}
spec:
  nodeName: %s
  containers:
  - name: main
    image: podnet.io/host
    command: ["sleep", "infinity"]
---
"""
MEASURED = (("dp-a", "node1"), ("dp-b", "node1"), ("dp-c", "node2"))
# one isolated pod per node and the NetworkPolicy that selects them (and only
# them): every node carries a podnet-policy table with content, as a cluster
# with policies does, while the measured pods stay unselected
ISOLATED = (("dp-x", "node1"), ("dp-y", "node2"))
POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: dp-isolated
spec:
  podSelector: {matchLabels: {dp: isolated}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{podSelector: {matchLabels: {dp: isolated}}}]
    ports: [{protocol: TCP, port: 5201}]
  egress:
  - to: [{podSelector: {matchLabels: {dp: isolated}}}]
---
"""


def manifest(policy):
    pods = [(n, "measured", node) for n, node in MEASURED]
    if policy:
        pods += [(n, "isolated", node) for n, node in ISOLATED]
    return "".join(POD % p for p in pods) + (POLICY if policy else "")


class BenchError(Exception):
    pass


def run(argv, check=True, timeout=120, input=None):
    res = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        **({"input": input} if input is not None else {"stdin": subprocess.DEVNULL}),
    )
    if check and res.returncode != 0:
        raise BenchError("%s: rc %d: %s" % (" ".join(argv), res.returncode, (res.stderr or res.stdout).strip()[-600:]))
    return res


def all_netns():
    return [line.split()[0] for line in run(["ip", "netns", "list"]).stdout.splitlines() if line.strip()]


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix=PREFIX)
        # every child inherits it: `lab up`, `get`, and the `exec` that runs iperf3 and ping
        os.environ["PODNET_STATE_ROOT"] = os.path.join(self.tmp, "labs")
        os.environ.pop("PODNET_LAB", None)
        self.labs = []  # every lab we asked for (checked in cleanup)
        self.live = []  # labs not yet taken down
        self.ns = []  # every hand-built namespace (deleted in cleanup)
        self.procs = []  # every Popen we started (stopped by PID / process group)
        self.rows = []  # result rows for the table
        self.enc_rows = []  # with / without encryption (--encryption)
        self.notes = []
        self.wg_impl = None  # which WireGuard the hand-built tunnel runs

    # ---- podnet through its CLI ---------------------------------------------------

    def cli(self, *args, **kw):
        return run([sys.executable, "-m", "podnet.cli.main", *args], **kw)

    def routing_supported(self):
        return "--routing" in self.cli("lab", "up", "--help").stdout

    def encryption_supported(self):
        return "--encryption" in self.cli("lab", "up", "--help").stdout

    def lab_up(self, tag, routing, encryption=False):
        lab = "dp%d%s" % (os.getpid() % 10000, tag)
        if any(n.startswith("pn-%s-" % lab) for n in all_netns()):
            raise BenchError("namespaces pn-%s-* exist already: not ours, not touching them" % lab)
        self.labs.append(lab)  # before `up`: a half-made lab is still taken down
        self.live.append(lab)
        path = os.path.join(self.tmp, "pods.yaml")
        with open(path, "w") as f:
            f.write(manifest(not self.args.no_policy))
        argv = ["lab", "up", "--name", lab, "--nodes", "2", "-f", path, "--timeout", "120"]
        if routing:
            argv += ["--routing", routing]
        if encryption:
            argv += ["--encryption", "wireguard"]
        t0 = time.monotonic()
        self.cli(*argv, timeout=180)
        say(
            "lab %s up (%s%s) in %.1f s"
            % (lab, routing or "default routing", ", wireguard" if encryption else "", time.monotonic() - t0)
        )
        pods = {
            p["metadata"]["name"]: p
            for p in json.loads(self.cli("get", "pods", "--lab", lab, "-o", "json").stdout)["items"]
        }
        ips = {n: pods[n]["status"]["podIP"] for n, _ in MEASURED}
        if not self.args.no_policy:
            self.policy_present(lab, {n: (node, pods[n]["status"]["podIP"]) for n, node in ISOLATED}, ips)
        return lab, ips

    def policy_present(self, lab, isolated, measured):
        """Wait until every node's `inet podnet-policy` table isolates its own
        dp-x/dp-y (the map ingress-pods sends the pod's address to its chain)
        and none of the measured pods; BenchError when it does not within 30 s:
        a figure without the policy table would not be the one asked for."""
        deadline = time.monotonic() + 30
        for pod, (node, ip) in sorted(isolated.items()):
            ns = "pn-%s-%s" % (lab, node)
            while True:
                res = run(
                    self.inside(ns) + ["nft", "list", "map", "inet", "podnet-policy", "ingress-pods"], check=False
                )
                text = res.stdout
                if ip + " : goto" in text:
                    break
                if time.monotonic() > deadline:
                    raise BenchError("%s: %s is not isolated in inet podnet-policy: %s" % (ns, pod, text or res.stderr))
                time.sleep(0.5)
            wrong = [n for n, m_ip in measured.items() if m_ip + " :" in text]
            if wrong:
                raise BenchError("%s: the policy isolates measured pods %s" % (ns, ", ".join(wrong)))
        self.notes.append(
            "lab %s: NetworkPolicy dp-isolated selects %s; each node's inet podnet-policy table isolates its own"
            % (lab, ", ".join("%s (%s, %s)" % (p, n, ip) for p, (n, ip) in sorted(isolated.items())))
        )

    def podnet_wireguard(self, lab, dst):
        """None when the lab's route to dst goes through podnet.wg, else why
        not; and a note saying which WireGuard its nodes run."""
        nodes = json.loads(self.cli("get", "nodes", "--lab", lab, "-o", "json").stdout)["items"]
        impl = ", ".join(
            "%s=%s"
            % (
                n["metadata"]["name"],
                (n["metadata"].get("annotations") or {}).get("podnet.io/wireguard-implementation", "?"),
            )
            for n in nodes
        )
        got = json.loads(run(["ip", "-n", "pn-%s-node1" % lab, "-j", "route", "get", dst]).stdout)
        dev = got[0].get("dev") if got else None
        self.notes.append("podnet's WireGuard in lab %s: %s; node1's route to %s: dev %s" % (lab, impl, dst, dev))
        return None if dev == PODNET_WG_IF else "node1 routes %s via dev %s, not %s" % (dst, dev, PODNET_WG_IF)

    def lab_down(self, lab):
        try:
            rc = self.cli("lab", "down", "--name", lab, check=False, timeout=120).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        self.live.remove(lab)
        left = [n for n in all_netns() if n.startswith("pn-%s-" % lab)]
        if rc != 0 or left:
            self.notes.append("lab %s down: rc %s; namespaces left: %s" % (lab, rc, ", ".join(left) or "none"))
        return not left

    def pod(self, lab, name):
        return [sys.executable, "-m", "podnet.cli.main", "exec", "--lab", lab, name, "--"]

    # ---- hand-built namespaces ------------------------------------------------------

    def netns(self, label):
        name = PREFIX + label
        self.ns.append(name)
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    @staticmethod
    def inside(ns):
        return ["nsenter", "--net=/run/netns/" + ns, "--"]

    def veth(self, ns_a, if_a, ns_b, if_b, mtu=None):
        run(["ip", "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b])
        for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
            run(["ip", "-n", ns, "link", "set", ifname] + (["mtu", str(mtu)] if mtu else []) + ["up"])

    def masq(self, node_ns):
        """--hand-masq: the node masquerade rule podnet installs (it makes conntrack see every packet)."""
        if self.args.hand_masq:
            run(
                self.inside(node_ns)
                + [
                    "nft",
                    "add table inet pndp; add chain inet pndp post { type nat hook "
                    "postrouting priority srcnat; policy accept; }; add rule inet pndp post "
                    "ip saddr 10.250.0.0/16 ip daddr != 10.250.0.0/16 masquerade",
                ]
            )

    def pod_ns(self, label, node_ns, bridge, ip, gw):
        """A hand-built pod: eth0 in its own netns, the host end on `bridge`."""
        ns = self.netns(label)
        self.veth(node_ns, "v" + label, ns, "eth0")
        run(["ip", "-n", node_ns, "link", "set", "v" + label, "master", bridge])
        run(["ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0"])
        run(["ip", "-n", ns, "route", "add", "default", "via", gw])
        return ns

    def bridge_node(self, tag, subnet):
        """A hand-built node namespace with cni0 on 10.250.<subnet>.1/24 and
        two pods (.2 and .3) on it; -> (node ns, pod a ns, pod b ns)."""
        node = self.netns(tag + "n")
        net = "10.250.%d." % subnet
        run(["ip", "-n", node, "link", "add", "cni0", "type", "bridge"])
        run(["ip", "-n", node, "addr", "add", net + "1/24", "dev", "cni0"])
        run(["ip", "-n", node, "link", "set", "cni0", "up"])
        self.masq(node)
        a = self.pod_ns(tag + "a", node, "cni0", net + "2", net + "1")
        b = self.pod_ns(tag + "b", node, "cni0", net + "3", net + "1")
        return node, a, b

    def build(self):
        # same node: a plain veth pair, and a bridge in a node namespace
        a, b = self.netns("va"), self.netns("vb")
        self.veth(a, "eth0", b, "eth0")
        run(["ip", "-n", a, "addr", "add", "10.250.0.1/24", "dev", "eth0"])
        run(["ip", "-n", b, "addr", "add", "10.250.0.2/24", "dev", "eth0"])
        sn, s1, s2 = self.bridge_node("s", 1)
        # cross node: underlay bridge, two nodes with cni0, one pod each
        self.u = u = self.netns("u")
        run(["ip", "-n", u, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", u, "link", "set", "br0", "up"])
        self.node, self.cpod = {}, {}
        for i, ip in NODES.items():
            n = self.netns("n%d" % i)
            self.node[i] = n
            self.veth(u, "p%d" % i, n, "eth0", UNDERLAY_MTU)
            run(["ip", "-n", u, "link", "set", "p%d" % i, "master", "br0"])
            run(["ip", "-n", n, "addr", "add", ip + "/24", "dev", "eth0"])
            run(["ip", "-n", n, "link", "add", "cni0", "type", "bridge"])
            run(["ip", "-n", n, "addr", "add", "10.250.1%d.1/24" % i, "dev", "cni0"])
            run(["ip", "-n", n, "link", "set", "cni0", "up"])
            run(self.inside(n) + ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            self.masq(n)
            self.cpod[i] = self.pod_ns("c%d" % i, n, "cni0", "10.250.1%d.2" % i, "10.250.1%d.1" % i)
        self.same = {"veth": (a, b, "10.250.0.2"), "bridge": (s1, s2, "10.250.1.3")}

    # ---- hand-built WireGuard ----------------------------------------------------------

    def wg_link(self, n):
        """Make interface pndp-wg in node namespace n -> the argv prefix under
        which `wg` reaches it: the kernel's (wg over netlink in n), else
        wireguard-go's in a private mount namespace (its UAPI socket there)."""
        if run(["ip", "-n", n, "link", "add", WG_IF, "type", "wireguard"], check=False).returncode == 0:
            self.wg_impl = "kernel module"
            return self.inside(n)
        version = run(["wireguard-go", "--version"], check=False).stdout.split("\n")[0].strip()
        self.wg_impl = version or "wireguard-go"
        log = open(os.path.join(self.tmp, "wireguard-go-%s.log" % n[len(PREFIX) :]), "w+")
        # a tmpfs on /run in a mount namespace of its own: /var/run/wireguard
        # (/var/run -> /run) is then this process's alone, and goes with it
        bind = 'mount -t tmpfs pndp-wg /run || exit 126; exec wireguard-go -f "$0"'
        proc = subprocess.Popen(
            self.inside(n) + ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", bind, WG_IF],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        # nsenter, unshare and sh exec one another: proc.pid is wireguard-go's
        prefix = ["nsenter", "--mount=/proc/%d/ns/mnt" % proc.pid, "--"]
        deadline = time.monotonic() + 15
        while run(prefix + ["wg", "show", WG_IF], check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise BenchError("wireguard-go %s in %s: no UAPI socket: %s" % (WG_IF, n, log.read().strip()[-400:]))
            time.sleep(0.1)
        log.close()
        return prefix

    def build_wg(self):
        """Two more nodes on the underlay and a pod behind each, joined by WireGuard."""
        mtu = UNDERLAY_MTU - WG_OVERHEAD
        self.wnode, self.wpod, wg, keys = {}, {}, {}, {}
        for i, ip in WG_NODES.items():
            n = self.netns("w%d" % i)
            self.veth(self.u, "q%d" % i, n, "eth0", UNDERLAY_MTU)
            run(["ip", "-n", self.u, "link", "set", "q%d" % i, "master", "br0"])
            run(["ip", "-n", n, "addr", "add", ip + "/24", "dev", "eth0"])
            run(["ip", "-n", n, "link", "add", "cni0", "type", "bridge"])
            run(["ip", "-n", n, "addr", "add", "10.250.2%d.1/24" % i, "dev", "cni0"])
            run(["ip", "-n", n, "link", "set", "cni0", "up"])
            run(self.inside(n) + ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            self.masq(n)
            pod = self.pod_ns("d%d" % i, n, "cni0", "10.250.2%d.2" % i, "10.250.2%d.1" % i)
            for ns, ifname in ((pod, "eth0"), (n, "vd%d" % i), (n, "cni0")):
                run(["ip", "-n", ns, "link", "set", ifname, "mtu", str(mtu)])
            self.wnode[i], self.wpod[i] = n, pod
            wg[i] = self.wg_link(n)
            key = run(["wg", "genkey"]).stdout.strip()
            path = os.path.join(self.tmp, "wg%d.key" % i)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                f.write(key + "\n")
            keys[i] = (path, run(["wg", "pubkey"], input=key + "\n").stdout.strip())
        for i, n in self.wnode.items():
            o = 3 - i
            run(
                wg[i]
                + ["wg", "set", WG_IF, "listen-port", str(WG_PORT), "private-key", keys[i][0]]
                + ["peer", keys[o][1], "endpoint", "%s:%d" % (WG_NODES[o], WG_PORT)]
                + ["allowed-ips", "10.250.2%d.0/24" % o]
            )
            run(["ip", "-n", n, "addr", "add", "10.250.2%d.0/32" % i, "dev", WG_IF])
            run(["ip", "-n", n, "link", "set", WG_IF, "mtu", str(mtu), "up"])
            run(["ip", "-n", n, "route", "add", "10.250.2%d.0/24" % o, "dev", WG_IF])
        say("hand-built WireGuard between %s and %s: %s" % (WG_NODES[1], WG_NODES[2], self.wg_impl))

    def hand_mode(self, mode):
        """Program the cross-node path: 'host-gw' (also bgp's peer) or 'vxlan'."""
        mtu = UNDERLAY_MTU - 50 if mode == "vxlan" else UNDERLAY_MTU
        for i in NODES:
            n, other = self.node[i], 3 - i
            run(["ip", "-n", n, "route", "del", "10.250.1%d.0/24" % other], check=False)
            run(["ip", "-n", n, "link", "del", "vx"], check=False)
            for ns, ifname in ((self.cpod[i], "eth0"), (n, "vc%d" % i), (n, "cni0")):
                run(["ip", "-n", ns, "link", "set", ifname, "mtu", str(mtu)])
            if mode == "vxlan":
                run(
                    [
                        "ip",
                        "-n",
                        n,
                        "link",
                        "add",
                        "vx",
                        "type",
                        "vxlan",
                        "id",
                        "1",
                        "dstport",
                        "8472",
                        "local",
                        NODES[i],
                        "dev",
                        "eth0",
                        "nolearning",
                    ]
                )
                run(["ip", "-n", n, "link", "set", "vx", "mtu", str(mtu), "up"])
                run(["ip", "-n", n, "addr", "add", "10.250.1%d.0/32" % i, "dev", "vx"])
        for i in NODES:
            n, o = self.node[i], 3 - i
            cidr, gw = "10.250.1%d.0/24" % o, "10.250.1%d.0" % o
            if mode == "vxlan":
                mac = json.loads(run(["ip", "-n", self.node[o], "-j", "link", "show", "vx"]).stdout)[0]["address"]
                run(["ip", "-n", n, "route", "add", cidr, "via", gw, "dev", "vx", "onlink"])
                run(["ip", "-n", n, "neigh", "add", gw, "lladdr", mac, "dev", "vx", "nud", "permanent"])
                run(["bridge", "-n", n, "fdb", "add", mac, "dev", "vx", "dst", NODES[o]])
            else:
                run(["ip", "-n", n, "route", "add", cidr, "via", NODES[o]])

    # ---- measuring --------------------------------------------------------------------

    def stop(self, proc, grace=3.0):
        """Stop a process we started, with its process group (its own session)."""
        if proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc in self.procs:
            self.procs.remove(proc)

    def reachable(self, prefix, dst, timeout=30):
        """None when dst answers a ping (retried: BGP routes take a moment), else why not."""
        deadline = time.monotonic() + timeout
        while True:
            res = run(prefix + ["ping", "-c", "1", "-W", "1", dst], check=False)
            if res.returncode == 0:
                run(prefix + ["ping", "-c", "3", "-i", "0.01", dst], check=False)  # warm caches
                return None
            if time.monotonic() > deadline:
                return " ".join((res.stdout + res.stderr).split())[-200:]
            time.sleep(0.5)

    def iperf(self, srv, cli, dst):
        log = open(os.path.join(self.tmp, "iperf-server.log"), "w+")
        server = subprocess.Popen(
            srv + ["iperf3", "-s", "-1"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(server)
        try:
            deadline = time.monotonic() + 20
            while True:  # the server needs a moment (podnet exec starts an interpreter first)
                res = run(
                    cli + ["iperf3", "-c", dst, "-t", str(self.args.seconds), "-J"],
                    check=False,
                    timeout=self.args.seconds + 60,
                )
                try:
                    doc = json.loads(res.stdout)
                except ValueError:
                    doc = {"error": (res.stderr or res.stdout).strip()[-300:]}
                err = doc.get("error")
                if not err:
                    try:
                        server.wait(5)  # -1: it exits after one test
                    except subprocess.TimeoutExpired:
                        pass
                    return {
                        "gbps": doc["end"]["sum_received"]["bits_per_second"] / 1e9,
                        "retransmits": doc["end"]["sum_sent"].get("retransmits"),
                    }
                if "refused" not in err or time.monotonic() > deadline or server.poll() is not None:
                    log.seek(0)
                    raise BenchError("iperf3 to %s: %s (server: %s)" % (dst, err, log.read().strip()[-300:]))
                time.sleep(0.3)
        finally:
            self.stop(server)
            log.close()

    def ping(self, prefix, dst, count):
        """-> the per-packet times (ms) of `ping -c count -i 0.01`."""
        res = run(prefix + ["ping", "-c", str(count), "-i", "0.01", dst], check=False, timeout=120)
        times = [float(t) for t in re.findall(r"time=([\d.]+) ms", res.stdout)]
        if not times:
            raise BenchError("ping %s: no replies: %s" % (dst, (res.stdout + res.stderr).strip()[-300:]))
        return times

    def pings(self, live, r):
        """RTT of every live side in round r: batches of PING_BATCH pings,
        the sides taking turns batch by batch (the order flipping each
        batch), so a few seconds of background noise hit all sides alike
        rather than one; -> {name: median ms}."""
        times = {name: [] for name in live}
        order = list(live)
        for b in range((self.args.pings + PING_BATCH - 1) // PING_BATCH):
            count = min(PING_BATCH, self.args.pings - b * PING_BATCH)
            for name in order if (b + r) % 2 == 0 else reversed(order):
                _srv, cli, dst = live[name]
                times[name] += self.ping(cli, dst, count)
        return {name: statistics.median(t) for name, t in times.items()}

    def mtu(self, prefix, dst):
        """The client's MTU towards dst: its route's (`ip route get` shows a
        route MTU as `cache mtu N`), else eth0's."""
        m = re.search(r" mtu (\d+)", run(prefix + ["ip", "-o", "route", "get", dst], check=False).stdout)
        m = m or re.search(r" mtu (\d+) ", run(prefix + ["ip", "-o", "link", "show", "eth0"], check=False).stdout)
        return int(m.group(1)) if m else None

    def measure(self, sides):
        """sides: {name: (server prefix, client prefix, dst) or None} ->
        ({name: figures or None}, {name: [errors]}). Every side is measured
        in every round, in the order given on odd rounds and reversed on even
        ones (ABBA), so all see the same background load."""
        res = {name: None for name in sides}
        errors = {name: [] for name in sides}
        live = {}
        for name, side in sides.items():
            if not side:
                continue
            _srv, cli, dst = side
            why = self.reachable(cli, dst)
            if why is not None:
                errors[name].append("%s not reachable after 30 s: %s" % (dst, why))
            else:
                live[name] = side
                res[name] = {"mtu": self.mtu(cli, dst), "rounds": []}
        for r in range(self.args.rounds):
            got = {}
            for name in list(live) if r % 2 == 0 else list(reversed(live)):
                srv, cli, dst = live[name]
                try:
                    got[name] = self.iperf(srv, cli, dst)
                except BenchError as exc:
                    errors[name].append("round %d: %s" % (r + 1, exc))
            try:
                rtt = self.pings({name: live[name] for name in got}, r)
            except BenchError as exc:
                for name in got:
                    errors[name].append("round %d: %s" % (r + 1, exc))
                continue
            for name, figures in got.items():
                res[name]["rounds"].append(dict(figures, ms=rtt[name]))
        for name in live:
            rr = res[name]["rounds"]
            if rr:
                res[name].update(
                    {k: statistics.median(x[k] for x in rr) for k in ("gbps", "ms")},
                    retransmits=sum(x["retransmits"] or 0 for x in rr),
                )
        say(
            "; ".join(
                "%s %.2f Gbit/s %.3f ms" % (name, res[name]["gbps"], res[name]["ms"])
                for name in live
                if res[name].get("gbps") is not None
            )
            or "no figures"
        )
        return res, errors

    def add_row(self, label, res, errors, podnet, hand):
        """A row of the main table: side `podnet` vs side `hand` of one measure()."""
        self.rows.append(
            {
                "path": label,
                "podnet": res[podnet],
                "hand": res[hand],
                "errors": ["%s: %s" % (side, e) for side in (podnet, hand) for e in errors[side]],
            }
        )

    def compare(self, label, podnet, hand):
        """podnet and hand are (server prefix, client prefix, dst) or None; ABBA over rounds."""
        say("%s:" % label)
        res, errors = self.measure({"podnet": podnet, "hand": hand})
        self.add_row(label, res, errors, "podnet", "hand")

    def compare_encrypted(self, mode, plain_lab, plain_ips, wg_lab, wg_ips):
        """Cross node in `mode` with and without WireGuard, podnet and by hand, in the same rounds."""
        h = self.inside
        sides = {
            "podnet": (self.pod(plain_lab, "dp-c"), self.pod(plain_lab, "dp-a"), plain_ips["dp-c"])
            if plain_lab
            else None,
            "hand": (h(self.cpod[2]), h(self.cpod[1]), "10.250.12.2"),
            "podnet+wg": (self.pod(wg_lab, "dp-c"), self.pod(wg_lab, "dp-a"), wg_ips["dp-c"]) if wg_lab else None,
            "hand+wg": (h(self.wpod[2]), h(self.wpod[1]), "10.250.22.2"),
        }
        say("cross node %s, with and without WireGuard:" % mode)
        res, errors = self.measure(sides)
        if wg_lab:
            why = self.podnet_wireguard(wg_lab, wg_ips["dp-c"])
            if why:
                errors["podnet+wg"].append(why)
        self.add_row(
            "cross node %s%s" % (mode, " (hand: plain routes)" if mode == "bgp" else ""), res, errors, "podnet", "hand"
        )
        self.add_row("cross node %s + wireguard (hand: wg + routes)" % mode, res, errors, "podnet+wg", "hand+wg")
        for who, with_, without in (("podnet", "podnet+wg", "podnet"), ("hand-built", "hand+wg", "hand")):
            self.enc_rows.append(
                {
                    "path": "%s %s%s" % (mode, who, " (plain routes)" if who == "hand-built" and mode == "bgp" else ""),
                    "with": res[with_],
                    "without": res[without],
                }
            )

    # ---- the run ---------------------------------------------------------------------------

    def main(self):
        self.build()
        h = self.inside
        if self.routing_supported():
            plan = [(m[0], m, m) for m in self.args.modes]
        else:
            self.notes.append("`lab up --routing` is not available yet: cross-node rows are hand-built only")
            plan = [("s", None, None)] + [(None, None, m) for m in self.args.modes]
        enc = self.args.encryption
        if enc:
            self.build_wg()
            if not self.encryption_supported():
                self.notes.append("`lab up --encryption` is not available yet: the wireguard rows are hand-built only")
                enc = "hand"
        same_done = False
        for tag, routing, mode in plan:
            lab = ips = wg_lab = wg_ips = None
            if tag:
                try:
                    lab, ips = self.lab_up(tag, routing)
                except (BenchError, subprocess.TimeoutExpired, KeyError, ValueError) as exc:
                    self.notes.append("lab up (%s) failed: %s" % (routing or "default routing", exc))
            if tag and mode and enc is True:
                try:
                    wg_lab, wg_ips = self.lab_up(tag + "w", routing, encryption=True)
                except (BenchError, subprocess.TimeoutExpired, KeyError, ValueError) as exc:
                    self.notes.append("lab up (%s, wireguard) failed: %s" % (routing or "default routing", exc))
            try:
                if lab and not same_done:
                    same_done = True
                    pa, pb = self.pod(lab, "dp-a"), self.pod(lab, "dp-b")
                    titles = {"veth": "veth pair", "bridge": "bridge"}
                    for what in ("veth", "bridge"):
                        s1, s2, dst = self.same[what]
                        self.compare(
                            "same node vs hand-built %s" % titles[what],
                            (pb, pa, ips["dp-b"]),
                            (h(s2), h(s1), dst),
                        )
                if mode and enc:
                    self.hand_mode("vxlan" if mode == "vxlan" else "host-gw")
                    self.compare_encrypted(mode, lab, ips, wg_lab, wg_ips)
                elif mode:
                    self.hand_mode("vxlan" if mode == "vxlan" else "host-gw")
                    self.compare(
                        "cross node %s%s" % (mode, " (hand: plain routes)" if mode == "bgp" else ""),
                        (self.pod(lab, "dp-c"), self.pod(lab, "dp-a"), ips["dp-c"]) if lab else None,
                        (h(self.cpod[2]), h(self.cpod[1]), "10.250.12.2"),
                    )
            finally:
                for up in (lab, wg_lab):
                    if up:
                        self.lab_down(up)

    def cleanup(self):
        for proc in list(self.procs):
            self.stop(proc)
        for lab in list(self.live):
            self.lab_down(lab)
        for name in reversed(self.ns):
            run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)
        left = [
            n for n in all_netns() if n.startswith(PREFIX) or any(n.startswith("pn-%s-" % lab) for lab in self.labs)
        ]
        return left


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def _f(v, fmt):
    return fmt % v if v is not None else "-"


def ratio(a, b, key):
    return a[key] / b[key] if a and b and a.get(key) and b.get(key) else None


def table(rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))
            ).rstrip()
        )


def report(b, data):
    rows = [
        (
            "path",
            "podnet Gbit/s",
            "hand Gbit/s",
            "ratio",
            "",
            "podnet RTT ms",
            "hand RTT ms",
            "ratio",
            "MTU p/h",
            "retr p/h",
        )
    ]
    for r in b.rows:
        p, h = r["podnet"] or {}, r["hand"] or {}
        tp = p.get("gbps") / h["gbps"] if p.get("gbps") and h.get("gbps") else None
        rt = p.get("ms") / h["ms"] if p.get("ms") and h.get("ms") else None
        r["ratio_gbps"], r["ratio_rtt"] = tp, rt
        rows.append(
            (
                r["path"],
                _f(p.get("gbps"), "%.2f"),
                _f(h.get("gbps"), "%.2f"),
                _f(tp, "%.2f"),
                "" if tp is None else ("ok" if tp >= 0.95 else "LOW"),
                _f(p.get("ms"), "%.3f"),
                _f(h.get("ms"), "%.3f"),
                _f(rt, "%.2f"),
                "%s/%s" % (p.get("mtu", "-"), h.get("mtu", "-")),
                "%s/%s" % (p.get("retransmits", "-"), h.get("retransmits", "-")),
            )
        )
    table(rows)
    print(
        "\nratio = podnet / hand-built. Throughput: higher is better, target >= 0.95 (ok/LOW). "
        "RTT (median of %d pings at 0.01 s, in turns of %d): lower is better." % (b.args.pings, PING_BATCH)
    )
    if b.args.hand_masq:
        print("hand-built nodes carry the same nft masquerade rule as podnet's nodes (--hand-masq).")
    print(
        "iperf3 -t %d per figure, median over %d round(s) alternating which side goes first; "
        "retr = TCP retransmits summed over the rounds." % (b.args.seconds, b.args.rounds)
    )
    if b.enc_rows:
        print()
        table(
            [
                (
                    "path",
                    "with wg Gbit/s",
                    "without Gbit/s",
                    "ratio",
                    "with wg RTT ms",
                    "without RTT ms",
                    "ratio",
                    "MTU w/o",
                )
            ]
            + [
                (
                    r["path"],
                    _f((r["with"] or {}).get("gbps"), "%.2f"),
                    _f((r["without"] or {}).get("gbps"), "%.2f"),
                    _f(ratio(r["with"], r["without"], "gbps"), "%.2f"),
                    _f((r["with"] or {}).get("ms"), "%.3f"),
                    _f((r["without"] or {}).get("ms"), "%.3f"),
                    _f(ratio(r["with"], r["without"], "ms"), "%.2f"),
                    "%s/%s" % ((r["with"] or {}).get("mtu", "-"), (r["without"] or {}).get("mtu", "-")),
                )
                for r in b.enc_rows
            ]
        )
        print(
            "\nThe cost of encryption: ratio = with WireGuard / without, the same mode and side, the same rounds "
            "(no target). Hand-built WireGuard: %s." % (b.wg_impl or "-")
        )
    for r in b.rows:
        for e in r["errors"]:
            print("error: %s: %s" % (r["path"], e))
    for n in b.notes:
        print("note: %s" % n)
    print(
        "load average: %.2f at start, %.2f at end (%d CPUs); run took %.0f s. Figures on a shared 2-CPU machine "
        "are noisy: compare within one run, not across runs."
        % (data["loadavg_start"], data["loadavg_end"], os.cpu_count(), data["seconds"])
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=5, help="iperf3 -t (default 5)")
    ap.add_argument("--rounds", type=int, default=2, help="measurements per side and path (default 2)")
    ap.add_argument("--pings", type=int, default=100, help="pings per RTT figure and round (default 100)")
    ap.add_argument("--modes", default=",".join(MODES), help="routing modes (default vxlan,host-gw,bgp)")
    ap.add_argument(
        "--hand-masq",
        action="store_true",
        help="give the hand-built nodes podnet's masquerade rule too (nft nat: conntrack on every packet)",
    )
    ap.add_argument(
        "--encryption",
        action="store_true",
        help="also each mode with `lab up --encryption wireguard` vs WireGuard built by hand, "
        "and with vs without encryption",
    )
    ap.add_argument(
        "--no-policy",
        action="store_true",
        help="no NetworkPolicy in podnet's labs (by default one selects two other pods, dp-x and dp-y, "
        "so every node has a policy table)",
    )
    ap.add_argument("--json", metavar="FILE", help="also write the raw numbers here")
    args = ap.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    if any(m not in MODES for m in args.modes) or args.seconds < 1 or args.rounds < 1 or args.pings < 1:
        ap.error("--modes from %s; --seconds, --rounds, --pings >= 1" % ",".join(MODES))
    if os.geteuid() != 0:
        ap.error("needs root (creates network namespaces)")
    for tool in ("iperf3", "ping", "nsenter", "ip", "bridge") + (
        ("wg", "wireguard-go", "unshare") if args.encryption else ()
    ):
        if not shutil.which(tool):
            ap.error("%s is not installed" % tool)

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    os.chdir(ROOT)  # `python -m podnet.cli.main` finds the package here
    data = {"loadavg_start": os.getloadavg()[0], "cpus": os.cpu_count(), "args": vars(args)}
    start = time.monotonic()
    b = Bench(args)
    rc = 0
    try:
        b.main()
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
        rc = 130
    except (BenchError, subprocess.TimeoutExpired) as exc:
        say("bench failed: %s" % exc)
        rc = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # cleanup runs to the end
        left = b.cleanup()
    data.update(
        loadavg_end=os.getloadavg()[0],
        seconds=time.monotonic() - start,
        rows=b.rows,
        encryption_rows=b.enc_rows,
        hand_wireguard=b.wg_impl,
        notes=b.notes,
        labs=b.labs,
        netns_left=left,
    )
    if b.rows:
        print()
        report(b, data)
    print(
        "cleanup: %s"
        % (
            "WARNING: left behind: " + ", ".join(left)
            if left
            else "no %s* or pn-<lab>- namespace left (labs: %s)" % (PREFIX, ", ".join(b.labs) or "none")
        )
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    return rc or (1 if left else 0)


if __name__ == "__main__":
    sys.exit(main())
