"""Node checks: processes, node-routes, vxlan-fdb, bgp, mtu, sysctls.

Each reads the kernel facts of the node namespaces (podnet.kernel.inspect)
against what the API says the nodes are (podCIDR, InternalIP, VTEP MAC).
"""

from __future__ import annotations

from podnet.diag.checks_base import Facts, Finding, key_of
from podnet.kernel.lookup import route_line

# An agent that is not running leaves the data path as it was: routes, rules
# and pods stay, nothing is repaired. That is worth saying, but what breaks a
# path is the drift it fails to repair, so a stopped agent is a warning and
# the drift (a missing route, a wrong FDB entry) is the error ranked first.
WARN_ROLES = ("agent-",)


def _exec(lab: str, node: str, cmd: str) -> str:
    return "podnet lab exec --lab %s %s -- %s" % (lab, node, cmd)


def check_processes(f: Facts) -> list[Finding]:
    out = []
    for role, p in sorted(f.procs.items()):
        if p.get("alive"):
            continue
        node = role[len("agent-") :] if role.startswith("agent-") else None
        if node and not f.in_scope_node(node):
            continue
        severity = "warning" if role.startswith(WARN_ROLES) else "error"
        what = "the agent of %s" % node if node else role
        out.append(
            Finding(
                "processes",
                severity,
                "%s is not running (PID %s exited): nothing on %s is repaired or updated"
                % (what, p.get("pid"), node or "the lab"),
                ["procs.json: %s pid %s, not alive" % (role, p.get("pid"))],
                "podnet lab up --name %s  (starts what is missing)" % f.lab,
                node,
            )
        )
    return out


def _want_route(f: Facts, other: str) -> str:
    n = f.nodes[other]
    if f.mode == "vxlan":
        return "%s via %s dev podnet.1 onlink" % (n["podCIDR"], n["podCIDR"].split("/")[0])
    if f.mode == "host-gw":
        return "%s via %s dev eth0" % (n["podCIDR"], n["ip"])
    return "%s via %s proto bird" % (n["podCIDR"], n["ip"])


def _route_ok(f: Facts, route: dict, other: str) -> bool:
    n = f.nodes[other]
    if f.mode == "vxlan":
        return route.get("dev") == "podnet.1"
    if f.mode == "host-gw":
        return route.get("gateway") == n["ip"]
    return route.get("gateway") == n["ip"] or route.get("protocol") == "bird"


def check_node_routes(f: Facts) -> list[Finding]:
    out = []
    for node, k in sorted(f.kernel.items()):
        if not f.in_scope_node(node) or "routes" not in k:
            continue
        by_dst = {r.get("dst"): r for r in k["routes"]}
        for other, n in sorted(f.nodes.items()):
            if other == node or not n.get("podCIDR"):
                continue
            r = by_dst.get(n["podCIDR"])
            if r is not None and _route_ok(f, r, other):
                continue
            have = "has %s" % _route_text(r) if r else "has none"
            out.append(
                Finding(
                    "node-routes",
                    "error",
                    "%s has no %s route to %s's podCIDR %s (%s): pods on %s are unreachable from %s"
                    % (node, f.mode, other, n["podCIDR"], have, other, node),
                    ["wanted: %s" % _want_route(f, other)]
                    + ["%s route table: %s" % (node, _route_text(x)) for x in k["routes"]],
                    _exec(f.lab, node, "ip route"),
                    node,
                )
            )
    return out


def _route_text(r: dict | None) -> str:
    return route_line(r) if r else "-"


def check_vxlan_fdb(f: Facts) -> list[Finding]:
    if f.mode != "vxlan":
        return []
    out = []
    for node, k in sorted(f.kernel.items()):
        if not f.in_scope_node(node) or "fdb" not in k:
            continue
        fdb, neigh = k["fdb"], k.get("neigh", {})
        for other, n in sorted(f.nodes.items()):
            mac = n.get("vtep_mac")
            if other == node or not mac:
                continue
            got = fdb.get(mac)
            if got != n["ip"]:
                out.append(
                    Finding(
                        "vxlan-fdb",
                        "error",
                        "%s's podnet.1 FDB sends %s's VTEP MAC %s to %s, not to %s's IP %s"
                        % (node, other, mac, got or "nowhere", other, n["ip"]),
                        ["%s fdb: %s dst %s" % (node, m, d) for m, d in sorted(fdb.items())]
                        + ["Node %s annotation podnet.io/vtep-mac=%s, InternalIP %s" % (other, mac, n["ip"])],
                        _exec(f.lab, node, "bridge fdb show dev podnet.1"),
                        node,
                    )
                )
            gw = n["podCIDR"].split("/")[0] if n.get("podCIDR") else None
            if gw and neigh.get(gw) != mac:
                out.append(
                    Finding(
                        "vxlan-fdb",
                        "error",
                        "%s's podnet.1 neighbour %s is %s, not %s's VTEP MAC %s"
                        % (node, gw, neigh.get(gw) or "missing", other, mac),
                        ["%s neigh: %s lladdr %s" % (node, ip, m) for ip, m in sorted(neigh.items())],
                        _exec(f.lab, node, "ip neigh show dev podnet.1"),
                        node,
                    )
                )
    return out


def check_bgp(f: Facts) -> list[Finding]:
    if f.mode != "bgp":
        return []
    out: list[Finding] = []
    sessions: list[Finding] = []  # a stopped BIRD first: the sessions it breaks follow from it
    for node, b in sorted(f.bird.items()):
        if not f.in_scope_node(node):
            continue
        if not b.get("running"):
            out.append(
                Finding(
                    "bgp",
                    "error",
                    "BIRD is not running on %s: %s announces no routes and learns none" % (node, node),
                    ["no live bird with control socket %s" % b.get("ctl", "?")],
                    "podnet lab up --name %s  (the agent of %s restarts BIRD)" % (f.lab, node),
                    node,
                )
            )
            continue
        for s in b.get("sessions", []):
            if s.get("state") != "Established":
                sessions.append(
                    Finding(
                        "bgp",
                        "error",
                        "BGP session of %s with %s is %s, not Established" % (node, s.get("peer"), s.get("state")),
                        ["birdc show protocols: %s %s %s" % (s.get("name"), s.get("state"), s.get("info", ""))],
                        "birdc -s %s show protocols all" % b.get("ctl", "bird.ctl"),
                        node,
                    )
                )
    return out + sessions


def check_mtu(f: Facts) -> list[Finding]:
    """A pod's packets towards other nodes leave at its default route's MTU
    (podnet puts the tunnel's there) or, without one, at eth0's: above the
    overlay's, full-size packets are dropped where they enter the tunnel."""
    out = []
    for key, pk in sorted(f.pod_kernel.items()):
        pod = f.pod(key)
        if pod is None or not f.in_scope_pod(key) or pk.get("mtu") is None:
            continue
        node = pod["spec"].get("nodeName")
        k = f.kernel.get(node or "", {})
        dev = "podnet.1" if f.mode == "vxlan" else "eth0"
        path_mtu = (k.get("mtu") or {}).get(dev)
        route = pk.get("route_mtu")
        sends = min(pk["mtu"], route) if route else pk["mtu"]
        if path_mtu is None or sends <= path_mtu:
            continue
        how = "default route mtu %d" % route if route else "eth0 mtu %d, default route without mtu" % pk["mtu"]
        out.append(
            Finding(
                "mtu",
                "error",
                "pod %s sends up to %d bytes towards other nodes (%s), above the path MTU %d of %s on %s: "
                "full-size packets to other nodes are dropped" % (key, sends, how, path_mtu, dev, node),
                ["pod %s eth0 mtu %d, %s" % (key, pk["mtu"], how), "%s %s mtu %d" % (node, dev, path_mtu)],
                "podnet exec -n %s %s -- ip route show default" % tuple(key.split("/", 1)),
                node,
            )
        )
    return out


def check_sysctls(f: Facts) -> list[Finding]:
    out = []
    for node, k in sorted(f.kernel.items()):
        if not f.in_scope_node(node):
            continue
        s = k.get("sysctls", {})
        if s.get("net.ipv4.ip_forward", "1") != "1":
            out.append(
                Finding(
                    "sysctls",
                    "error",
                    "net.ipv4.ip_forward is %s on %s: it forwards no pod traffic" % (s["net.ipv4.ip_forward"], node),
                    ["%s: net.ipv4.ip_forward = %s" % (node, s["net.ipv4.ip_forward"])],
                    _exec(f.lab, node, "sysctl -w net.ipv4.ip_forward=1"),
                    node,
                )
            )
        if s.get("net.ipv4.conf.all.rp_filter") == "1":
            out.append(
                Finding(
                    "sysctls",
                    "warning",
                    "strict reverse-path filtering (rp_filter=1) on %s may drop asymmetric pod traffic" % node,
                    ["%s: net.ipv4.conf.all.rp_filter = 1" % node],
                    _exec(f.lab, node, "sysctl -w net.ipv4.conf.all.rp_filter=2"),
                    node,
                )
            )
    return out


def pods_on(f: Facts, node: str) -> list[str]:
    return [key_of(p) for p in f.pods if p["spec"].get("nodeName") == node]
