"""Services: sync cost and connection setup latency at 100 to 10,000 Services.

Run as root:  .venv/bin/python bench/proxy.py [--sizes 100,1000,10000] [--conns 2000] [--json FILE]

What it measures, in one run, in throwaway namespaces pnbp-<pid>-{node,srv,peer}:

  full sync     Services of 2 endpoints each (+ their EndpointSlices) ->
                Planner.replan_all -> render.full -> `nft -f`:
                planner and nft apply timed apart
  one change    one Service's EndpointSlice changes (an endpoint replaced):
                Planner.update (only that Service is planned again) ->
                render.diff -> one nf_tables netlink batch (nftnl.apply, as
                the agent's partial sync); the median of 5. Each is undone
                (back to two endpoints) by `nft -f` of the difference, the
                old way, timed as "old: nft -f". After every change the
                Service's chains are read back (rules and endpoints), and
                after the last the whole table is compared, chain by chain
                and rule by rule, with a full render of the same plan; the
                peer's changed rule is read back too
  floor         the kernel's own cost of any such change: one rule in a
                chain nothing reaches, as a netlink batch (the kernel
                validates the whole table again whenever a change holds a
                jump, goto or nat: from each base chain, through the maps)
  the peer      kube-proxy's iptables-mode shape built by hand as nft rules:
                one linear `ip daddr X tcp dport P dnat to ...` rule per
                Service in one chain, which is what the verdict map replaces.
                Its full load, and its one change with the changed Service in
                the MIDDLE of the rule list and at the END, two ways: `replace
                rule ... handle H` (the least a linear list needs; the kernel
                finds the handle by walking the chain) and a rewrite of the
                whole chain (flush + every rule, what kube-proxy's
                iptables-restore does with KUBE-SERVICES on every sync). The
                5 changes alternate peer and podnet (peer middle, peer end,
                podnet, ...); medians.
  latency       TCP connection setup (connect() until SYN-ACK, via the
                ClusterIP, DNAT in nat-output to a server in the srv
                namespace) with 10 and with 10,000 Services in the table, to
                the Service in the middle of the list and to the last one,
                the median of --conns connects each, for podnet and for the
                peer in alternating rounds (peer, podnet, peer, podnet, ...:
                only one side's table is loaded at a time, so each connect
                crosses one side's rules); each figure is the median of
                --rounds rounds.

  --lab         (default on; --no-lab skips it) change to rules in a real
                lab (`lab up --nodes 2`, PODNET_STATE_ROOT in a temp dir):
                the time from the user's command to the moment node1's
                table shows it, polled every 10 ms with `nft list table`:
                a pod deleted (its IP leaves the table: the agent marks it
                terminating, the EndpointSlice follows, the proxy syncs),
                a scale-up (from the new pod's Ready condition in the store
                to its IP in the table), and a readiness change (the pod's
                readiness file removed -> its IP leaves the table; includes
                the 1 s probe period, failureThreshold 1).

Targets (issue 5): one change at 10,000 under 50 ms (kube-proxy's partial
sync: 141 ms), full sync at 10,000 under 3 s, latency ratio 10,000/10 at
most 1.1. kube-proxy itself does not run here (no API server): the peer is
its rule shape, and its own figures are quoted from upstream (REFERENCE.md). The figures are noisy on a shared
2-CPU machine: compare within one run. Everything is removed at the end,
also on failure or Ctrl-C; the root namespace is never changed.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from podnet.kernel import netns, nftnl  # noqa: E402
from podnet.proxy import render  # noqa: E402
from podnet.proxy.planner import Planner  # noqa: E402

PREFIX = "pnbp-%d-" % os.getpid()
SRV_IPS = ("10.244.1.2", "10.244.1.3")

SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(4096); print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
"""

CLIENT = r"""
import socket, sys, time, statistics
ip, n = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(n):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    t = time.perf_counter(); s.connect((ip, 80)); times.append(time.perf_counter() - t); s.close()
print(statistics.median(times) * 1e6)
"""


def sh(ns, *argv, input=None):
    res = subprocess.run(["ip", "netns", "exec", ns, *argv], input=input, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), res.stderr.strip()))
    return res.stdout


def world(n):
    services, slices = [], []
    for i in range(n):
        name = "svc%05d" % i
        services.append(
            {
                "metadata": {"namespace": "bench", "name": name, "resourceVersion": "1"},
                "spec": {
                    "clusterIP": "10.96.%d.%d" % (i // 250, i % 250 + 2),
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                },
            }
        )
        slices.append(slice_for(name, SRV_IPS, "1"))
    return services, slices


def slice_for(name, ips, rv):
    return {
        "metadata": {
            "namespace": "bench",
            "name": name + "-abc",
            "resourceVersion": rv,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "n1"} for ip in ips],
    }


def nft_apply(node, script):
    t = time.perf_counter()
    sh(node, "nft", "-f", "-", input=script)
    return time.perf_counter() - t


def measure_size(node, peer_ns, n):
    services, slices = world(n)
    p = Planner("n1")
    t = time.perf_counter()
    p.replan_all(services, slices)
    plan = p.plan(["192.168.200.11"])
    script = render.full(plan)
    t_plan = time.perf_counter() - t
    t_apply = nft_apply(node, script)
    # the peer's syncs in a namespace of its own: an nft run may read the
    # whole ruleset, and neither side should pay for the other's rules
    t_peer_full = nft_apply(peer_ns, iptables_style(n))
    handles = peer_handles(peer_ns)
    peer = {"replace_middle": [], "replace_end": [], "rewrite_middle": [], "rewrite_end": []}
    changes, via_nft = [], []
    with netns.Netns(node) as handle:
        for k in range(5):
            for how in ("replace", "rewrite"):
                for where, j in (("middle", n // 2), ("end", n - 1)):
                    endpoint = SRV_IPS[(j + 1 + k) % 2]
                    peer[how + "_" + where].append(peer_change(peer_ns, n, j, handles, how, endpoint))
                    handles = peer_handles(peer_ns, check=(j, endpoint))  # (outside the timing)
            i = (k * 7919) % n
            key = "bench/" + services[i]["metadata"]["name"]
            slices[i] = slice_for(services[i]["metadata"]["name"], (SRV_IPS[k % 2],), str(k + 2))
            t = time.perf_counter()
            p.update(key, services[i], [slices[i]])  # what the agent does for one changed Service
            new = p.plan(["192.168.200.11"])
            d = render.diff(plan, new, keys={key, ""})  # the agent knows which Services changed
            tp = time.perf_counter() - t
            ta = fast_apply(handle, d)  # the agent's partial sync: one netlink batch
            changes.append((tp + ta, tp, ta))
            check_service(node, new[key], (SRV_IPS[k % 2],))
            # and back to two endpoints the old way (`nft -f` of the difference), for comparison
            slices[i] = slice_for(services[i]["metadata"]["name"], SRV_IPS, str(k + 100))
            t = time.perf_counter()
            p.update(key, services[i], [slices[i]])
            plan = p.plan(["192.168.200.11"])
            d = render.diff(new, plan)
            tp = time.perf_counter() - t
            ta = nft_apply(node, d)
            via_nft.append((tp + ta, tp, ta))
            check_service(node, plan[key], SRV_IPS)
    same_as_full(node, plan)
    floor = kernel_floor(node)
    drop_table(peer_ns, PEER)
    changes.sort()
    via_nft.sort()
    total, tp, ta = changes[len(changes) // 2]
    rules, chains, elements, _ = render.counts(plan)
    return {
        "peer_full_apply_ms": t_peer_full * 1e3,
        **{"peer_%s_ms" % k: statistics.median(v) * 1e3 for k, v in peer.items()},
        "services": n,
        "rules": rules,
        "chains": chains,
        "full_plan_ms": t_plan * 1e3,
        "full_apply_ms": t_apply * 1e3,
        "change_ms": total * 1e3,
        "change_plan_ms": tp * 1e3,
        "change_apply_ms": ta * 1e3,
        "change_nft_ms": via_nft[len(via_nft) // 2][0] * 1e3,
        "kernel_floor_ms": floor * 1e3,
        "change_nft_apply_ms": via_nft[len(via_nft) // 2][2] * 1e3,
    }


TRANSPORT = nftnl.NetlinkTransport()  # kept open, as the agent's


def fast_apply(handle, script):
    """The agent's partial sync (nftnl.apply, the thread in the node's
    namespace) -> seconds; the bench fails if it fell back to `nft`."""
    t = time.perf_counter()
    with netns.entered(handle):
        path = nftnl.apply(
            script, "bench: one Service change", TRANSPORT, on_refused=lambda exc: print(exc, file=sys.stderr)
        )
    elapsed = time.perf_counter() - t
    if path != nftnl.FAST:
        raise RuntimeError("the change went through %s, not netlink:\n%s" % (path, script))
    return elapsed


def kernel_floor(node):
    """The kernel's own cost of any change that holds a jump, goto or nat
    (every Service change does): it validates the whole table again, from
    each base chain through the verdict maps to every chain they reach.
    Measured as one `drop` rule written into a chain nothing reaches, as a
    netlink batch; the median of 5 -> seconds."""
    chain = "ip podnet-proxy pnbp-floor"
    nft_apply(node, "add chain %s\n" % chain)
    times = []
    with netns.Netns(node) as handle:
        for _ in range(5):
            times.append(fast_apply(handle, "flush chain %s\nadd rule %s drop\n" % (chain, chain)))
    nft_apply(node, "flush chain %s\ndelete chain %s\n" % (chain, chain))
    return statistics.median(times)


def check_service(node, frag, endpoints):
    """The kernel's chains of the changed Service hold the planned rules, in
    order, and send to exactly `endpoints`."""
    for name, rules in frag.chains.items():
        listing = sh(node, "nft", "list", "chain", "ip", "podnet-proxy", name)
        got = [line.strip() for line in listing.splitlines()[2:-2]]
        dnat = sorted(r.rsplit("dnat to ", 1)[1].split(":")[0] for r in got if "dnat to" in r)
        if len(got) != len(rules) or dnat != sorted(endpoints):
            raise RuntimeError("chain %s after the change: %s, planned %s" % (name, got, rules))


def listing(ns):
    """The table as nft reads it back: chains with their rules in order,
    sets and maps with their elements (unordered)."""
    doc = json.loads(sh(ns, "nft", "-j", "list", "table", "ip", "podnet-proxy"))["nftables"]
    chains, sets = {}, {}
    for item in doc:
        if "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            chains.setdefault(item["rule"]["chain"], []).append(json.dumps(item["rule"]["expr"], sort_keys=True))
        elif "set" in item or "map" in item:
            kind = "set" if "set" in item else "map"
            sets[item[kind]["name"]] = sorted(json.dumps(e, sort_keys=True) for e in item[kind].get("elem", []))
    return chains, sets


def same_as_full(node, plan):
    """After the changes (netlink and nft): the node's table equals a full
    render of the same plan loaded in a namespace of its own."""
    scratch = PREFIX + "full"
    netns.create(scratch)
    try:
        nft_apply(scratch, render.full(plan))
        if listing(node) != listing(scratch):
            raise RuntimeError("the table after the changes differs from a full render of the same plan")
    finally:
        netns.delete(scratch)


def latency(node, conns, target_ip):
    return float(sh(node, sys.executable, "-c", CLIENT, target_ip, str(conns)).strip())


PEER = "ip pnbp-linear"


def peer_ip(i):
    return "10.97.%d.%d" % (i // 250, i % 250 + 2)


def peer_rule(i, endpoint=None):
    return "ip daddr %s tcp dport 80 dnat to %s:8080" % (peer_ip(i), endpoint or SRV_IPS[i % 2])


def iptables_style(n):
    """The peer: one linear chain, a rule per Service i (10.97.x.y, in order)."""
    out = [
        "add table %s" % PEER,
        "delete table %s" % PEER,
        "add table %s" % PEER,
        "add chain %s out { type nat hook output priority -100; policy accept; }" % PEER,
    ]
    out += ["add rule %s out %s" % (PEER, peer_rule(i)) for i in range(n)]
    return "\n".join(out) + "\n"


def drop_table(node, table):
    nft_apply(node, "add table %s\ndelete table %s\n" % (table, table))


def peer_handles(node, check=None):
    """Rule handles of the peer's chain, in rule order; with check=(i,
    endpoint): Service i's rule must send to endpoint."""
    text = sh(node, "nft", "-a", "list", "chain", PEER.split()[0], PEER.split()[1], "out")
    lines = [line for line in text.splitlines() if "dnat to" in line]
    if check is not None and "dnat to %s:8080" % check[1] not in lines[check[0]]:
        raise RuntimeError("peer rule %d after the change: %s" % (check[0], lines[check[0]].strip()))
    return [int(line.rsplit("# handle ", 1)[1]) for line in lines]


def peer_change(node, n, i, handles, how, endpoint):
    """Service i's rule gets `endpoint`: one rule replaced in place, or the
    whole chain rewritten as iptables-restore does -> seconds."""
    if how == "replace":
        script = "replace rule %s out handle %d %s\n" % (PEER, handles[i], peer_rule(i, endpoint))
    else:
        rules = ["add rule %s out %s" % (PEER, peer_rule(j, endpoint if j == i else None)) for j in range(n)]
        script = "flush chain %s out\n" % PEER + "\n".join(rules) + "\n"
    return nft_apply(node, script)


LAB_MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.45
        args: [netexec, --http-port=8080]
        readinessProbe: {exec: {command: [sh, -c, "test ! -e /tmp/pnbp-notready-$HOSTNAME"]}, periodSeconds: 1,
                         failureThreshold: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""


def lab_latency():
    import tempfile

    root = tempfile.mkdtemp(prefix="pnbp-lab-")
    name = "bp%d" % (os.getpid() % 10000)
    env = dict(os.environ, PODNET_STATE_ROOT=root, PODNET_LAB=name)
    cli = [sys.executable, "-m", "podnet.cli.main"]

    def run(*args, input=None):
        res = subprocess.run(cli + list(args), env=env, input=input, capture_output=True, text=True, timeout=180)
        if res.returncode != 0:
            raise RuntimeError("podnet %s: %s" % (" ".join(args), res.stderr.strip()))
        return res.stdout

    def pods():
        return json.loads(run("get", "pods", "-l", "app=web", "-o", "json"))["items"]

    def table():
        return subprocess.run(
            ["ip", "netns", "exec", "pn-%s-node1" % name, "nft", "list", "table", "ip", "podnet-proxy"],
            capture_output=True,
            text=True,
        ).stdout

    def until(pred, timeout=30):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if pred():
                return time.monotonic()
            time.sleep(0.01)
        raise RuntimeError("timed out")

    out = {}
    try:
        run("lab", "up", "--name", name, "--nodes", "2", "-f", "-", input=LAB_MANIFEST)

        def web_in_table(n):
            live = [x["status"].get("podIP") for x in pods() if not x["metadata"].get("deletionTimestamp")]
            t = table()
            return sum(1 for ip in live if ip and "dnat to %s:8080" % ip in t) == n

        until(lambda: web_in_table(2), 60)
        # a pod deleted
        victim = pods()[0]
        ip = victim["status"]["podIP"]
        t0 = time.monotonic()
        subprocess.Popen(
            cli + ["delete", "pod", victim["metadata"]["name"]],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ).wait()
        out["pod deleted -> gone from the rules"] = until(lambda: "dnat to %s:" % ip not in table()) - t0
        until(lambda: web_in_table(2), 60)
        # readiness lost
        p = [x for x in pods() if not x["metadata"].get("deletionTimestamp")][0]
        ip = p["status"]["podIP"]
        t0 = time.monotonic()
        open("/tmp/pnbp-notready-" + p["metadata"]["name"], "w").close()
        try:
            out["readiness lost (1 s probe) -> gone"] = until(lambda: "dnat to %s:" % ip not in table()) - t0
        finally:
            os.unlink("/tmp/pnbp-notready-" + p["metadata"]["name"])
        until(lambda: web_in_table(2), 60)
        # scale up: from Ready in the store to the table
        from podnet.client import connect

        objects = connect(os.path.join(root, name, "kubeconfig")).client
        seen = {x["status"].get("podIP") for x in pods()}
        subprocess.Popen(
            cli + ["apply", "-f", "-"], env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        ).communicate(LAB_MANIFEST.replace("replicas: 2", "replicas: 3"))

        def new_ready():
            for x in objects.list("Pod", "default"):
                ip = (x.get("status") or {}).get("podIP")
                if (
                    ip
                    and ip not in seen
                    and any(c["type"] == "Ready" and c["status"] == "True" for c in x["status"].get("conditions", []))
                ):
                    return ip

        t_ready = until(lambda: new_ready() is not None, 60)
        ip = new_ready()
        out["new pod Ready -> in the rules"] = until(lambda: "dnat to %s:" % ip in table()) - t_ready
    finally:
        subprocess.run(cli + ["lab", "down", "--name", name], env=env, capture_output=True)
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3, help="latency rounds, alternating 10 and 10,000 Services")
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-lab", dest="lab", action="store_false", help="skip the lab latency part")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    node, srv, peer_ns = PREFIX + "node", PREFIX + "srv", PREFIX + "peer"
    server = None
    results = {"sizes": [], "latency_us": {}}
    try:
        for ns in (node, srv, peer_ns):
            netns.create(ns)
        subprocess.run(
            ["ip", "link", "add", "pnbp0", "netns", node, "type", "veth", "peer", "name", "eth0", "netns", srv],
            check=True,
        )
        sh(node, "ip", "addr", "add", "10.244.1.1/24", "dev", "pnbp0")
        # a node has a default route; without one a connect to a ClusterIP fails before nat-output
        sh(node, "ip", "link", "set", "pnbp0", "up")
        sh(node, "ip", "route", "add", "default", "via", SRV_IPS[0])
        for ns, dev in ((node, "pnbp0"), (srv, "eth0")):
            sh(ns, "ip", "link", "set", dev, "up")
            sh(ns, "ip", "link", "set", "lo", "up")
        for ip in SRV_IPS:
            sh(srv, "ip", "addr", "add", ip + "/24", "dev", "eth0")
        sh(srv, "ip", "route", "add", "default", "via", "10.244.1.1")
        server = subprocess.Popen(
            ["ip", "netns", "exec", srv, sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True
        )
        server.stdout.readline()

        print(
            "%8s %8s %8s | %10s %10s | %10s %10s %10s | %12s %10s"
            % (
                "services",
                "chains",
                "rules",
                "full plan",
                "full nft",
                "1 change",
                "plan",
                "netlink",
                "old: nft -f",
                "nft",
            )
        )
        for n in sizes:
            r = measure_size(node, peer_ns, n)
            results["sizes"].append(r)
            print(
                "%8d %8d %8d | %8.0f ms %8.0f ms | %8.1f ms %8.1f ms %8.1f ms | %9.1f ms %7.1f ms"
                % (
                    n,
                    r["chains"],
                    r["rules"],
                    r["full_plan_ms"],
                    r["full_apply_ms"],
                    r["change_ms"],
                    r["change_plan_ms"],
                    r["change_apply_ms"],
                    r["change_nft_ms"],
                    r["change_nft_apply_ms"],
                )
            )

        print()
        print("the kernel's floor for one change (the table validated again; see kernel_floor):")
        for r in results["sizes"]:
            print("%8d  %8.1f ms" % (r["services"], r["kernel_floor_ms"]))
        print()
        print(
            "%8s | %10s | %12s %12s | %12s %12s | %s"
            % ("services", "peer full", "replace mid", "replace end", "rewrite mid", "rewrite end", "podnet 1 change /")
        )
        for r in results["sizes"]:
            print(
                "%8d | %7.0f ms | %9.1f ms %9.1f ms | %9.1f ms %9.1f ms | replace mid %.2f, end %.2f, rewrite %.2f"
                % (
                    r["services"],
                    r["peer_full_apply_ms"],
                    r["peer_replace_middle_ms"],
                    r["peer_replace_end_ms"],
                    r["peer_rewrite_middle_ms"],
                    r["peer_rewrite_end_ms"],
                    r["change_ms"] / r["peer_replace_middle_ms"],
                    r["change_ms"] / r["peer_replace_end_ms"],
                    r["change_ms"] / r["peer_rewrite_end_ms"],
                )
            )

        lat = results["latency_us"]
        # rounds alternate the sides (peer, podnet, peer, podnet, ...) at 10
        # and 10,000 Services, one side's table loaded at a time: the
        # machine's drift over a run hits both alike; each figure is the
        # median of its rounds
        rounds = {}
        drop_table(node, "ip podnet-proxy")
        for _ in range(args.rounds):
            for n in (10, 10000):
                for side in ("peer", "podnet"):
                    if side == "peer":
                        drop_table(node, "ip podnet-proxy")
                        nft_apply(node, iptables_style(n))
                        targets = {"middle": peer_ip(n // 2), "end": peer_ip(n - 1)}
                    else:
                        drop_table(node, PEER)
                        services, slices = world(n)
                        p = Planner("n1")
                        p.replan_all(services, slices)
                        nft_apply(node, render.full(p.plan([])))
                        targets = {w: services[i]["spec"]["clusterIP"] for w, i in (("middle", n // 2), ("end", n - 1))}
                    latency(node, 200, targets["end"])  # warm up (ARP, caches)
                    for where, ip in targets.items():
                        rounds.setdefault("%s_%d_%s" % (side, n, where), []).append(latency(node, args.conns, ip))
        drop_table(node, PEER)
        for k, xs in rounds.items():
            lat[k] = statistics.median(xs)
            lat[k + "_rounds"] = xs
        print()
        print(
            "connection setup (median of %d connects; each figure the median of %d rounds alternating peer, podnet):"
            % (args.conns, args.rounds)
        )
        for side, label in (("podnet", "podnet (verdict map)"), ("peer", "peer (linear rules)")):
            for where in ("middle", "end"):
                a, b = lat["%s_10_%s" % (side, where)], lat["%s_10000_%s" % (side, where)]
                print(
                    "  %-21s %-6s  10: %7.1f us   10,000: %7.1f us   ratio %.2f   rounds %s"
                    % (
                        label,
                        where,
                        a,
                        b,
                        b / a,
                        " ".join("%.0f" % x for x in lat["%s_10000_%s_rounds" % (side, where)]),
                    )
                )
        for where in ("middle", "end"):
            print(
                "  podnet / peer, the Service at the %-6s of the list:  10: %.2f   10,000: %.2f"
                % (
                    where,
                    lat["podnet_10_%s" % where] / lat["peer_10_%s" % where],
                    lat["podnet_10000_%s" % where] / lat["peer_10000_%s" % where],
                )
            )
        if args.lab:
            print()
            print("change -> rules in a 2-node lab (polled every 10 ms on node1):")
            results["lab_s"] = lab_latency()
            for k, v in results["lab_s"].items():
                print("  %-40s %6.0f ms" % (k, v * 1e3))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        for ns in (node, srv, peer_ns):
            netns.delete(ns)
        left = [x for x in netns.list_names() if x.startswith(PREFIX)]
        if left:
            print("left behind: %s" % left, file=sys.stderr)


if __name__ == "__main__":
    main()
