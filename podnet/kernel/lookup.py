"""Read-only lookups for `podnet trace`: what the kernel of one namespace
would do with a packet (route get, the route that matched and its proto,
the device MTU, the neighbour and VXLAN FDB entries behind a next hop), a
sysctl, conntrack entries, and whether BIRD runs in a namespace.

Each is one `ip -j` / `bridge -j` / `conntrack` call (a few ms) instead of
pyroute2, whose import alone costs ~250 ms: a trace reads only the handful
of hops its packet crossed. Every function names the namespace in its
errors and returns None (or {}) when the object is absent.
"""

from __future__ import annotations

import ipaddress
import json
import os

from podnet.kernel import links
from podnet.kernel.netns import Netns, NetnsError, pids_in, run


def _ip_json(ns_name, argv):
    with Netns(ns_name) as h:
        res = run(argv, ns=h, check=False)
    if res.returncode != 0:
        return None, (res.stderr or res.stdout).strip()
    try:
        return json.loads(res.stdout or "[]"), ""
    except ValueError as exc:
        return None, "%s: unreadable JSON: %s" % (" ".join(argv), exc)


def route_get(ns_name, dst):
    """{"dst", "gateway", "dev", "prefsrc", "proto", "prefix", "type", "mtu", "mtu_of", "line"}
    for a packet to dst in this namespace, or {"error": text} when the
    kernel has no route (`ip route get` fails: unreachable, no route)."""
    got, err = _ip_json(ns_name, ["ip", "-j", "route", "get", dst])
    if got is None or not got:
        return {"dst": dst, "error": err or "no route"}
    r = got[0]
    if r.get("type") in ("unreachable", "prohibit", "blackhole"):
        return {"dst": dst, "error": "route type %s" % r["type"]}
    out = {
        "dst": dst,
        "gateway": r.get("gateway"),
        "dev": r.get("dev"),
        "prefsrc": r.get("prefsrc"),
        "proto": None,
        "prefix": None,
        "type": r.get("type", "unicast"),
    }
    matched = None if out["type"] == "local" else matching_route(ns_name, dst)
    if out["type"] == "local":  # one of the namespace's own addresses (table local)
        out["line"] = "local %s dev %s table local" % (dst, out["dev"])
    elif matched:
        out["proto"] = matched.get("protocol")
        out["prefix"] = matched.get("dst")
        out["line"] = route_line(matched)
    else:
        out["line"] = "%s%s dev %s" % (dst, " via %s" % out["gateway"] if out["gateway"] else "", out["dev"])
    # the route's own MTU (`ip route ... mtu 1450`: a pod's default route
    # carries the tunnel's) where it has one, else the device's; from the
    # table's route, not `route get`'s answer, which also shows a path MTU
    # the kernel learned from an ICMP "fragmentation needed" (the probe's own)
    own = links.route_mtu(matched or {})
    out["mtu"] = own or (link_mtu(ns_name, out["dev"]) if out["dev"] else None)
    out["mtu_of"] = "route" if own else "dev"
    return out


def route_line(r):
    """An `ip route` line from its JSON form."""
    words = [r.get("dst", "?")]
    if r.get("gateway"):
        words += ["via", r["gateway"]]
    if r.get("dev"):
        words += ["dev", r["dev"]]
    if r.get("protocol"):
        words += ["proto", r["protocol"]]
    words += [f for f in r.get("flags") or []]
    return " ".join(words)


def matching_route(ns_name, dst):
    """The most specific route of the main table covering dst (JSON form)."""
    got, _ = _ip_json(ns_name, ["ip", "-j", "route", "show", "match", dst])
    best, best_len = None, -1
    for r in got or []:
        d = r.get("dst", "")
        n = 0 if d == "default" else ipaddress.ip_network(d if "/" in d else d + "/32", strict=False).prefixlen
        if n > best_len:
            best, best_len = r, n
    return best


def link_mtu(ns_name, dev):
    got, _ = _ip_json(ns_name, ["ip", "-j", "link", "show", "dev", dev])
    return got[0].get("mtu") if got else None


def neighbour(ns_name, dev, ip):
    """The lladdr of ip on dev (`ip neigh show to IP dev DEV`), or None."""
    got, _ = _ip_json(ns_name, ["ip", "-j", "neigh", "show", "to", ip, "dev", dev])
    for n in got or []:
        if n.get("lladdr"):
            return n["lladdr"]
    return None


def fdb(ns_name, dev):
    """{mac: remote IP} of a VXLAN device's FDB (`bridge fdb show dev`)."""
    got, _ = _ip_json(ns_name, ["bridge", "-j", "fdb", "show", "dev", dev])
    return {e["mac"]: e["dst"] for e in got or [] if e.get("dst") and e.get("mac")}


def sysctl(ns_name, key):
    """A net.* sysctl read inside the namespace, or None when unreadable."""
    try:
        with Netns(ns_name) as h:
            return links.read_sysctl(h, key)
    except (OSError, NetnsError):
        return None


def conntrack_entries(ns_name, proto, sport):
    """conntrack entries (text lines, `conntrack -L`) whose original source
    port is sport; [] when none or the tool fails."""
    with Netns(ns_name) as h:
        res = run(["conntrack", "-L", "-p", proto, "--orig-port-src", str(sport)], ns=h, check=False)
    return [ln for ln in res.stdout.splitlines() if ln.strip()]


def running_in(ns_name, comm):
    """PIDs of processes named `comm` (by /proc/PID/comm) in the namespace."""
    out = []
    for pid in pids_in([ns_name]):
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() == comm:
                    out.append(pid)
        except OSError:
            continue
    return out


def exists(ns_name):
    return os.path.exists("/run/netns/" + ns_name)
