"""The node agent's routing loop: Node objects in, kernel state out.

Level-triggered: a watch on nodes only marks work pending; each pass plans
from the full list of Nodes and applies the difference (the peers' routes with
vxlan and host-gw, the service CIDR's route in every mode), and hands BIRD a
new configuration (bgp). A periodic resync repairs drift (a route deleted by
hand). The same pass keeps the node's masquerade table,
`inet podnet-node`: traffic from the cluster CIDR to anywhere outside it
leaves with the node's address; pod-to-pod and node-to-pod traffic is never
NATed. A failed pass is logged and retried in full.

With encryption "wireguard" the same pass first keeps the node's WireGuard
interface (routing/wgapply.py: key, podnet.wg, peers) and publishes the
node's public key, the implementation and the handshakes on its Node; the
plan then routes other nodes' podCIDRs through podnet.wg.
"""

import logging
import threading
import time

from podnet.client import loop
from podnet.kernel import links, netns, nft
from podnet.routing import apply as ap
from podnet.routing.planner import (
    ANN_BACKEND,
    ANN_VTEP,
    SERVICE_CIDR,
    internal_ip,
    peers,
    plan,
    pod_mtu,
    vtep_mac,
)

log = logging.getLogger("podnet.routing")
RESYNC = 5.0
ANN_BGP = "podnet.io/bgp-sessions"


def masq_script(cluster_cidr):
    t = "inet podnet-node"
    return (
        "\n".join(
            [
                "add table %s" % t,
                "add chain %s postrouting { type nat hook postrouting priority srcnat; policy accept; }" % t,
                "flush chain %s postrouting" % t,
                "add rule %s postrouting ip saddr %s ip daddr != %s masquerade" % (t, cluster_cidr, cluster_cidr),
            ]
        )
        + "\n"
    )


def ensure_forwarding():
    """net.ipv4.ip_forward=1 in the agent's (the node's) namespace. Routing
    pods' traffic is this loop's job, so it does not wait for the CNI plugin
    to turn forwarding on at the node's first pod: a node without pods still
    forwards NodePort and LoadBalancer traffic to pods elsewhere. Checked on
    every pass, so a hand-made `sysctl -w net.ipv4.ip_forward=0` is undone."""
    if links.read_sysctl(None, "net.ipv4.ip_forward") == "1":
        return 0
    if netns.ns_ident("self", "net") == netns.ns_ident(1, "net"):
        # an agent started by hand in the machine's own namespace: the
        # machine's forwarding is its owner's decision, not a lab's
        log.warning("routing: net.ipv4.ip_forward is off in the machine's namespace; left alone")
        return 0
    links.write_sysctl(None, "net.ipv4.ip_forward", 1)
    log.warning("routing: net.ipv4.ip_forward was off on this node; turned it on")
    return 1


class RoutingReconciler:
    def __init__(
        self,
        mode,
        node,
        objects,
        underlay,
        cluster_cidr,
        netns_path,
        state_dir,
        direct_routing=False,
        route_reflector=None,
        upstreams=(),
        service_cidr=SERVICE_CIDR,
        encryption="none",
        node_dir=None,
        dirty=None,
    ):
        self.mode, self.node, self.objects = mode, node, objects
        self.underlay, self.cluster_cidr = underlay, cluster_cidr
        self.netns_path, self.state_dir = netns_path, state_dir
        self.direct_routing = direct_routing
        self.route_reflector = route_reflector
        self.upstreams = list(upstreams)  # bgp: routers outside the cluster, [(name, ip)]
        self.service_cidr = service_cidr
        self.dirty = dirty or threading.Event()  # set: a pass now (Node watch, a dead wireguard-go, SIGHUP)
        self.passes = self.changes = 0
        self.bird = None
        self.last_masq = 0.0
        self.encryption = encryption or "none"
        self.wg = None
        if self.encryption == "wireguard":
            from podnet.routing.wgapply import WireguardPart

            self.wg = WireguardPart(node, node_dir or state_dir, self.dirty, cluster_cidr=cluster_cidr)

    def pod_mtu(self):
        return pod_mtu(self.mode, encryption=self.encryption)

    def annotations(self):
        ann = {ANN_BACKEND: self.mode}
        if self.mode == "vxlan":
            ann[ANN_VTEP] = vtep_mac(self.node)
        if self.wg is not None:
            ann.update(self.wg.annotations())
        return ann

    def sync(self):
        nodes = self.objects.list("Node")
        if self.mode == "bgp":
            self._bgp(nodes)
        # bgp too: the plan then holds only the service CIDR's route (BIRD's are proto bird)
        desired = plan(
            self.mode,
            self.node,
            nodes,
            self.underlay,
            self.direct_routing,
            service_cidr=self.service_cidr,
            encryption=self.encryption,
        )
        n = ensure_forwarding()
        ipr = netns.iproute()  # the agent runs in the node's namespace
        try:
            if self.wg is not None:  # the interface first: the routes go through it
                w, ann = self.wg.sync(ipr, nodes)
                n += w
                self._publish(nodes, ann)
            n += ap.apply(ipr, desired)
        finally:
            ipr.close()
        if n:
            log.info("routing (%s): %d change(s), %d route(s)", self.mode, n, len(desired.routes))
        self.changes += n
        if time.monotonic() - self.last_masq > RESYNC:
            nft.apply(masq_script(self.cluster_cidr), what="node masquerade")
            self.last_masq = time.monotonic()
        self.passes += 1

    def _publish(self, nodes, ann):
        """The annotations on this node's Node, written only when they differ."""
        me = next((n for n in nodes if n["metadata"]["name"] == self.node), None)
        have = (me or {}).get("metadata", {}).get("annotations") or {}
        if me is None or all(have.get(k) == v for k, v in ann.items()):
            return

        def put(n):
            have = n["metadata"].setdefault("annotations", {})
            if all(have.get(k) == v for k, v in ann.items()):
                return False
            have.update(ann)

        self.objects.mutate("Node", None, self.node, put)

    def _bgp(self, nodes):
        from podnet.routing.bgp import Bird, render_config

        me = next((n for n in nodes if n["metadata"]["name"] == self.node), None)
        if me is None or not me["spec"].get("podCIDR") or not internal_ip(me):
            return
        from podnet.proxy.announce import bgp_prefixes

        others = [(p.name, p.ip) for p in peers(self.node, nodes)]
        rr = self.route_reflector
        lb = bgp_prefixes(self.objects.list("Service"), self.objects.list("EndpointSlice"), self.node)
        conf = render_config(
            self.node,
            internal_ip(me),
            me["spec"]["podCIDR"],
            others if not rr or rr == self.node else [(n, ip) for n, ip in others if n == rr],
            route_reflector=bool(rr) and rr == self.node,
            announce=lb,
            upstreams=self.upstreams,
            # encrypted: pods' routes only through podnet.wg, never BIRD's plain ones
            keep_out=(self.cluster_cidr,) if self.encryption == "wireguard" else (),
        )
        if self.bird is None:
            self.bird = Bird(self.netns_path, self.state_dir)
        what = self.bird.ensure(conf)
        if what != "unchanged":
            log.info("bgp: BIRD %s (%d peers)", what, len(others))
        try:
            sessions = ",".join("%s=%s" % (s["peer"], s["state"]) for s in self.bird.sessions())
        except Exception as exc:  # birdc not answering yet: report it, retry next pass
            sessions = "unknown (%s)" % exc
        if me["metadata"].get("annotations", {}).get(ANN_BGP) != sessions:
            self.objects.mutate(
                "Node",
                None,
                self.node,
                lambda n: n["metadata"].setdefault("annotations", {}).__setitem__(ANN_BGP, sessions),
            )

    def run(self, stop):
        self.objects.watch_dirty("Node", self.dirty)
        # bgp: a short period so the BGP session state on the Node stays fresh
        loop.run(self.sync, self.dirty, stop, 1.0 if self.mode == "bgp" else RESYNC, log, "routing pass")
