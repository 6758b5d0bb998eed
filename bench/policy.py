"""NetworkPolicy: how long a node's sync takes, and what the rules cost a new connection.

Run as root:  .venv/bin/python bench/policy.py [--connects 500] [--rounds 12] [--changes 6]
                                              [--changes-only] [--no-api] [--json FILE]

sync      a synthetic cluster of 100 pods (10 namespaces x 10 pods, all on the
          measured node: the worst case, every pod gets chains) and N = 100
          and 1,000 policies (podSelector on an app label, peers by
          podSelector / namespaceSelector / ipBlock with except, numeric ports,
          ranges and named ports, a third with egress rules). Timed per N,
          median of 3 runs: plan (pure), render (the nft script), apply
          (`nft -f` of the whole table in a scratch namespace), and the
          stateless listing the reconciler's drift check reads. A pass with
          nothing changed costs plan + render (the script is compared, not
          applied).
change    at 1,000 policies, one policy change (a port of one policy) and one
          pod label change (a pod's app label, which moves it between the
          policies that select it and the peers that name it), timed from the
          informer callback delivering the object to `nft` returning, median
          of --changes rounds: the per-change reconciler's partial sync (new)
          and the full sync every event cost before (plan + render + `nft -f`
          of the whole table, applied in a second namespace: old), side by
          side. After each change the two tables must be equal (chains rule
          by rule, set and map elements). Then the same two changes written
          through a real API server (its own, sqlite store, in a temporary
          directory; --no-api skips it), the reconciler's loop running on
          informers as in the agent: from the PUT until `nft` returned.
          Target: new < 50 ms.
latency   TCP connection setup (connect() until established, then close)
          between two pods on one hand-built node (bridge, veths; bridged
          traffic reaches the forward hook through br_netfilter) with: no
          table, the table with 0 policies, and the table with the 1,000
          policies, where the client and the server are both isolated and are
          selected by the most policies any pod has, and the policy that
          allows them is tried last. --connects per block, blocks alternate
          over --rounds (many short blocks, so a burst of load on a shared
          machine hits every configuration alike); figure = median of the
          per-connection times. Target:
          1,000 policies / 0 policies <= 1.1. Before measuring, a deny policy
          is applied once and a connection must fail: the path really goes
          through the table.

Everything lives in namespaces pnpb-<pid>-*, removed at the end (also on
failure); the server is stopped by its PID; the root namespace is not touched.
On a shared machine the figures are noisy: compare within one run.
"""

import argparse
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from policy_change import bench_api, bench_change  # noqa: E402  (beside this script)

from podnet.kernel import libnft, nft  # noqa: E402
from podnet.kernel.netns import Netns  # noqa: E402
from podnet.policy import nftscript  # noqa: E402
from podnet.policy.planner import plan  # noqa: E402

PREFIX = "pnpb-%d-" % os.getpid()
NODE = "bench-node"
SERVER, CLIENT = "ns3/pod-07", "ns5/pod-02"  # two of the 100 pods
PORT = 8080


def pod_ip(i):
    return "10.244.0.%d" % (10 + i)


def cluster():
    pods = []
    for n in range(10):
        for j in range(10):
            i = n * 10 + j
            pods.append(
                {
                    "kind": "Pod",
                    "metadata": {
                        "namespace": "ns%d" % n,
                        "name": "pod-%02d" % j,
                        "labels": {"app": "app%d" % j, "pod": "pod-%02d" % j},
                    },
                    "spec": {
                        "nodeName": NODE,
                        "containers": [
                            {
                                "name": "c",
                                "image": "bench",  # the API server wants one (bench_api)
                                "ports": [
                                    {"name": "http", "containerPort": PORT},
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                ],
                            }
                        ],
                    },
                    "status": {"podIP": pod_ip(i), "phase": "Running"},
                }
            )
    namespaces = [
        {"kind": "Namespace", "metadata": {"name": "ns%d" % n, "labels": {"tier": "t%d" % (n % 3)}}} for n in range(10)
    ]
    return pods, namespaces


def policies(count):
    out = []
    for i in range(count):
        n, app = i % 10, (i // 10) % 10
        peers = [
            {"podSelector": {"matchLabels": {"app": "app%d" % ((app + 1) % 10)}}},
            {
                "namespaceSelector": {"matchLabels": {"tier": "t%d" % (i % 3)}},
                "podSelector": {
                    "matchExpressions": [
                        {"key": "app", "operator": "In", "values": ["app%d" % (i % 10), "app%d" % ((i + 3) % 10)]}
                    ]
                },
            },
            {"ipBlock": {"cidr": "172.16.%d.0/24" % (i % 250), "except": ["172.16.%d.128/25" % (i % 250)]}},
        ]
        spec = {
            "podSelector": {"matchLabels": {"app": "app%d" % app}},
            "ingress": [
                {
                    "from": peers,
                    "ports": [{"port": 80}, {"port": 9000, "endPort": 9100}, {"port": "dns", "protocol": "UDP"}],
                }
            ],
        }
        if i % 3 == 0:
            spec["egress"] = [
                {"to": peers[:1], "ports": [{"port": 443}]},
                {"ports": [{"port": "dns", "protocol": "UDP"}]},
            ]
            spec["policyTypes"] = ["Ingress", "Egress"]
        out.append(
            {"kind": "NetworkPolicy", "metadata": {"namespace": "ns%d" % n, "name": "np-%04d" % i}, "spec": spec}
        )
    return out


def allow_pair():
    """The policies that let CLIENT reach SERVER: named to sort last in their pods' chains."""
    sns, sname = SERVER.split("/")
    cns, cname = CLIENT.split("/")
    return [
        {
            "kind": "NetworkPolicy",
            "metadata": {"namespace": sns, "name": "zz-allow-in"},
            "spec": {
                "podSelector": {"matchLabels": {"pod": sname}},
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cns}},
                                "podSelector": {"matchLabels": {"pod": cname}},
                            }
                        ],
                        "ports": [{"port": PORT}],
                    }
                ],
            },
        },
        {
            "kind": "NetworkPolicy",
            "metadata": {"namespace": cns, "name": "zz-allow-out"},
            "spec": {
                "podSelector": {"matchLabels": {"pod": cname}},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"port": PORT}]}],
            },
        },
    ]


def sh(argv, ns=None, check=True, **kw):
    cmd = (["nsenter", "--net=/run/netns/" + ns, "--"] if ns else []) + argv
    return subprocess.run(cmd, capture_output=True, text=True, check=check, **kw)


# ---- sync -------------------------------------------------------------------------


def bench_sync(ns, counts, rounds):
    pods, namespaces = cluster()
    out = {}
    for count in counts:
        pols = policies(count)
        t = {"plan": [], "render": [], "apply": [], "list": []}
        for _ in range(rounds):
            t0 = time.perf_counter()
            p = plan(pols, pods, namespaces, NODE, ["192.168.200.11", "10.244.0.1"])
            t1 = time.perf_counter()
            script = nftscript.render(p)
            t2 = time.perf_counter()
            nft.apply(script, ns=ns, what="bench")
            t3 = time.perf_counter()
            sh(["nft", "-s", "list", "table", "inet", nftscript.TABLE], ns=os.path.basename(ns.path))
            t4 = time.perf_counter()
            for k, v in (("plan", t1 - t0), ("render", t2 - t1), ("apply", t3 - t2), ("list", t4 - t3)):
                t[k].append(v * 1000)
        med = {k: statistics.median(v) for k, v in t.items()}
        out[count] = dict(
            med,
            chains=len(p.chains),
            rules=sum(len(c.rules) for c in p.chains.values()),
            script_kb=len(script) / 1024,
            full_ms=med["plan"] + med["render"] + med["apply"],
        )
        print(
            "sync %5d policies: plan %6.1f ms  render %5.1f ms  nft -f %6.1f ms  (full sync %6.1f ms; "
            "unchanged pass %6.1f ms)  listing %6.1f ms;  %d chains, %d rules, script %.0f KiB"
            % (
                count,
                med["plan"],
                med["render"],
                med["apply"],
                out[count]["full_ms"],
                med["plan"] + med["render"],
                med["list"],
                out[count]["chains"],
                out[count]["rules"],
                out[count]["script_kb"],
            ),
            flush=True,
        )
    return out


# ---- latency ------------------------------------------------------------------------

SERVER_CODE = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1024)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
"""

CLIENT_CODE = r"""
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = []
for _ in range(n):
    s = socket.socket(); s.settimeout(2)
    t = time.perf_counter_ns()
    try:
        s.connect((host, port))
    except OSError:
        print(json.dumps({"error": "connect failed"})); sys.exit(1)
    out.append(time.perf_counter_ns() - t)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST: no TIME_WAIT pile-up
    s.close()
print(json.dumps(out))
"""


class Topology:
    """node (bridge br0, 10.244.0.1/24) + two pods with veths on it."""

    def __init__(self):
        self.names = []

    def netns(self, label):
        name = PREFIX + label
        sh(["ip", "netns", "add", name])
        self.names.append(name)
        return name

    def build(self):
        self.node = self.netns("node")
        self.handle = Netns(self.node)  # for podnet.kernel.nft (a handle, not a name)
        sh(["ip", "link", "add", "br0", "type", "bridge"], ns=self.node)
        sh(["ip", "addr", "add", "10.244.0.1/24", "dev", "br0"], ns=self.node)
        sh(["ip", "link", "set", "br0", "up"], ns=self.node)
        sh(["ip", "link", "set", "lo", "up"], ns=self.node)
        bnf = sh(["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"], ns=self.node, check=False).stdout.strip()
        if bnf != "1":
            raise SystemExit(
                "br_netfilter is not active in a new namespace (bridge-nf-call-iptables=%r): "
                "bridged pod traffic would bypass the table" % bnf
            )
        self.ips = {}
        for key, label in ((SERVER, "srv"), (CLIENT, "cli")):
            ns = self.netns(label)
            ns_name, pod = key.split("/")
            ip = pod_ip(int(ns_name[2:]) * 10 + int(pod[4:]))
            sh(["ip", "link", "add", "h-" + label, "type", "veth", "peer", "name", "eth0", "netns", ns], ns=self.node)
            sh(["ip", "link", "set", "h-" + label, "master", "br0", "up"], ns=self.node)
            sh(["ip", "addr", "add", ip + "/24", "dev", "eth0"], ns=ns)
            sh(["ip", "link", "set", "eth0", "up"], ns=ns)
            sh(["ip", "link", "set", "lo", "up"], ns=ns)
            self.ips[key] = (ns, ip)

    def cleanup(self):
        if getattr(self, "handle", None):
            libnft.forget(self.handle)  # the partial syncs' kept socket holds the namespace
            self.handle.close()
        for name in reversed(self.names):
            sh(["ip", "netns", "del", name], check=False)
        self.names.clear()


def connects(topo, n):
    cns, _ = topo.ips[CLIENT]
    _, sip = topo.ips[SERVER]
    res = sh([sys.executable, "-c", CLIENT_CODE, sip, str(PORT), str(n)], ns=cns, check=False, timeout=600)
    doc = json.loads(res.stdout.strip() or '{"error": "%s"}' % res.stderr.strip().replace('"', "'"))
    if isinstance(doc, dict):
        return None
    return doc


def bench_latency(topo, n, rounds):
    pods, namespaces = cluster()
    many = policies(1000) + allow_pair()
    configs = {
        "no table": None,
        "0 policies": nftscript.render(plan([], pods, namespaces, NODE, ["10.244.0.1"])),
        "1000 policies": nftscript.render(plan(many, pods, namespaces, NODE, ["10.244.0.1"])),
    }
    p = plan(many, pods, namespaces, NODE, ["10.244.0.1"])
    sel_in = len(p.chains[p.ingress_pods[ipaddress.ip_address(topo.ips[SERVER][1])]].rules) - 1
    sel_out = len(p.chains[p.egress_pods[ipaddress.ip_address(topo.ips[CLIENT][1])]].rules) - 1
    chains = {SERVER: sel_in, CLIENT: sel_out}
    print(
        "latency: server %s is selected by %d ingress policies, client %s by %d egress policies"
        % (SERVER, chains[SERVER], CLIENT, chains[CLIENT]),
        flush=True,
    )
    # the path must go through the table: a deny-all makes the connection fail
    deny = nftscript.render(
        plan(
            [
                {
                    "kind": "NetworkPolicy",
                    "metadata": {"namespace": SERVER.split("/")[0], "name": "deny"},
                    "spec": {"podSelector": {}},
                }
            ],
            pods,
            namespaces,
            NODE,
            ["10.244.0.1"],
        )
    )
    nft.apply(deny, ns=topo.handle, what="bench deny")
    if connects(topo, 1) is not None:
        raise SystemExit("a deny-all policy did not stop the connection: the bench path bypasses the table")
    samples = {k: [] for k in configs}
    for r in range(rounds):
        order = list(configs) if r % 2 == 0 else list(reversed(list(configs)))
        for name in order:
            if configs[name] is None:
                nft.delete_table("inet", nftscript.TABLE, ns=topo.handle)
            else:
                nft.apply(configs[name], ns=topo.handle, what="bench " + name)
            got = connects(topo, n)
            if got is None:
                raise SystemExit("connections failed with %s" % name)
            samples[name] += got
    out = {}
    for name, v in samples.items():
        v = sorted(v)
        out[name] = {"median_us": statistics.median(v) / 1000, "p90_us": v[int(len(v) * 0.9)] / 1000, "n": len(v)}
        print(
            "latency %-14s connect median %7.1f us   p90 %7.1f us   (%d connections)"
            % (name, out[name]["median_us"], out[name]["p90_us"], len(v)),
            flush=True,
        )
    ratio = out["1000 policies"]["median_us"] / out["0 policies"]["median_us"]
    print("latency ratio 1000 / 0 policies: %.3f (target <= 1.1)" % ratio, flush=True)
    out["ratio"] = ratio
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connects", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--changes", type=int, default=6, help="rounds of the one-change figures")
    ap.add_argument("--changes-only", action="store_true", help="sync and one-change figures, no latency")
    ap.add_argument("--no-api", action="store_true", help="no one-change figures through a real API server")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    topo = Topology()
    server = None
    try:
        topo.build()
        sync = bench_sync(topo.handle, (100, 1000), min(args.rounds, 3))
        ref = topo.netns("ref")
        with Netns(ref) as ref_ns:
            pods, namespaces = cluster()
            world = (pods, namespaces, policies(1000), NODE)
            change = bench_change(topo.handle, ref_ns, world, args.changes)
            if not args.no_api:
                change["api"] = bench_api(topo.handle, ref_ns, world, args.changes, PREFIX)
        if args.changes_only:
            return
        sns, _ = topo.ips[SERVER]
        server = subprocess.Popen(
            ["nsenter", "--net=/run/netns/" + sns, "--", sys.executable, "-c", SERVER_CODE, str(PORT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the bench server did not start")
        latency = bench_latency(topo, args.connects, args.rounds)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"sync": sync, "change": change, "latency": latency}, f, indent=1)
    finally:
        if server is not None:
            server.terminate()  # by the PID we started
            try:
                server.wait(5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)
            server.stdout.close()
        topo.cleanup()
        left = [n for n in os.listdir("/run/netns") if n.startswith(PREFIX)] if os.path.isdir("/run/netns") else []
        if left:
            print("LEFT BEHIND: %s" % left)


if __name__ == "__main__":
    main()
