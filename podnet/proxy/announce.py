"""Who answers for a LoadBalancer IP on the underlay (MetalLB's L2 mode).

elect() is pure: every agent computes the same owner from the same Node and
EndpointSlice objects, so no lock or lease is needed: among the live nodes
(Ready, heartbeat fresh) the one with the highest hash of (IP, node name)
wins (rendezvous hashing: when the owner goes, only its IPs move). With
externalTrafficPolicy Local only nodes with a ready local endpoint stand.

The owner puts the IP on its `lo` with the label `lo:pnlb` (so we find our
own addresses again, and never touch others), which makes the kernel answer
ARP for it on eth0, and sends a gratuitous ARP so neighbours that cached the
previous owner's MAC switch at once. Packets then meet the proxy's DNAT in
prerouting like any other Service front.
"""

import calendar
import hashlib
import logging
import time

from podnet.proxy.inputs import SERVICE_NAME_LABEL, external_addresses, service_key

log = logging.getLogger("podnet.proxy")
LABEL = "lo:pnlb"
STALE = 40.0  # a node whose heartbeat is older is gone (Kubernetes' node-monitor-grace-period)


def node_alive(node, now=None):
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            if c.get("status") != "True":
                return False
            beat = c.get("lastHeartbeatTime")
            if not beat:
                return True
            try:
                t = calendar.timegm(time.strptime(beat, "%Y-%m-%dT%H:%M:%SZ"))
            except ValueError:
                return True
            return (now or time.time()) - t < STALE
    return False


def _score(ip, node):
    return hashlib.sha256(("%s|%s" % (ip, node)).encode()).digest()


def elect(services, slices, nodes, now=None):
    """{LoadBalancer ingress IP: node name} for every IP that has an owner."""
    alive = sorted(n["metadata"]["name"] for n in nodes if node_alive(n, now))
    ready_on = {}  # (ns, svc) -> nodes with a ready endpoint
    for sl in slices:
        m = sl.get("metadata", {})
        key = (m.get("namespace"), (m.get("labels") or {}).get(SERVICE_NAME_LABEL))
        for ep in sl.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready", True) and ep.get("nodeName"):
                ready_on.setdefault(key, set()).add(ep["nodeName"])
    owners = {}
    for svc in services:
        spec = svc.get("spec") or {}
        if spec.get("type") != "LoadBalancer":
            continue
        m = svc.get("metadata", {})
        lb_ips = [str(ip) for ip in external_addresses({"spec": {"type": "LoadBalancer"}, "status": svc.get("status")})]
        cands = alive
        if spec.get("externalTrafficPolicy") == "Local":
            here = ready_on.get((m.get("namespace"), m.get("name")), set())
            cands = [n for n in alive if n in here]
        for ip in lb_ips:
            if cands and ip not in owners:
                owners[ip] = max(cands, key=lambda n: _score(ip, n))
    return owners


def lb_services_by_ip(services):
    return {
        str(ip): service_key(s)
        for s in services
        for ip in external_addresses({"spec": {"type": (s.get("spec") or {}).get("type")}, "status": s.get("status")})
    }


class L2Announcer:
    """Kernel side: the /32s labelled lo:pnlb on `lo` are exactly `ips`."""

    def __init__(self, uplink="eth0"):
        self.uplink = uplink

    def ensure(self, ips):
        """-> (added, removed)."""
        from podnet.kernel import links, neigh
        from podnet.kernel.netns import iproute

        ipr = iproute()  # the agent runs in the node's namespace
        try:
            have = links.labelled_addresses(ipr, "lo", LABEL)
            want = set(ips)
            for ip in sorted(want - have):
                links.ensure_address(ipr, "lo", ip + "/32", label=LABEL)
            for ip in sorted(have - want):
                links.delete_address(ipr, "lo", ip + "/32")
            mac = links.link_mac(ipr, self.uplink)
        finally:
            ipr.close()
        for ip in sorted(want - have) if mac else ():
            try:
                neigh.gratuitous_arp(self.uplink, mac, ip)
            except OSError as exc:  # the IP is still answered on request; only the fast switch is lost
                log.warning("gratuitous ARP for %s on %s: %s", ip, self.uplink, exc)
        return sorted(want - have), sorted(have - want)

    def release(self):
        return self.ensure(())


def bgp_prefixes(services, slices, node):
    """The LoadBalancer /32s this node advertises over BGP (Calico's model):
    every node for externalTrafficPolicy Cluster (any node can forward), only
    nodes with a ready local endpoint for Local. A Service with no ready
    endpoint anywhere is not advertised at all."""
    ready_on = {}
    for sl in slices:
        m = sl.get("metadata", {})
        key = (m.get("namespace"), (m.get("labels") or {}).get(SERVICE_NAME_LABEL))
        for ep in sl.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready", True):
                ready_on.setdefault(key, set()).add(ep.get("nodeName"))
    out = set()
    for svc in services:
        spec = svc.get("spec") or {}
        if spec.get("type") != "LoadBalancer":
            continue
        m = svc.get("metadata", {})
        here = ready_on.get((m.get("namespace"), m.get("name")), set())
        if not here or (spec.get("externalTrafficPolicy") == "Local" and node not in here):
            continue
        out.update(
            "%s/32" % ip for ip in external_addresses({"spec": {"type": "LoadBalancer"}, "status": svc.get("status")})
        )
    return sorted(out)
