"""Services as one nftables table, `ip podnet-proxy` (kube-proxy nftables shape).

Pure. Each Service becomes a Fragment: the chains, sets and map elements it
contributes; the fixed skeleton of the table is one more Fragment (`base`).
render.py turns fragments into a full `nft -f` script or into the difference
between two syncs. Because a Service's fragment depends only on the Service,
its EndpointSlices and this node, the reconciler plans again only the
Services whose objects changed (`Planner` caches by resourceVersion), which is
what keeps a one-Service change at 10,000 Services cheap.

    nat-prerouting (dstnat) / nat-output (-100)  -> jump services
    services        ip daddr . meta l4proto . th dport vmap @service-ips
                    fib daddr type local ... meta l4proto . th dport vmap @service-nodeports
    svc-<h>-<ns/name/proto/port>   masquerade off-cluster clients, affinity
                    checks, numgen random mod N vmap { i : goto ep-... }
    ext-<h>-...     NodePort, LoadBalancer and external IPs: Cluster policy ->
                    mark for masquerade, goto svc-...; Local -> pods and the
                    node use svc-..., others only local endpoints (client
                    address kept), dropped when there is none here
    ep-<h>-.../<ip>/<port>   hairpin mark, affinity update, dnat
    all-<h>-...     the cluster-wide endpoints, when the ClusterIP's own chain
                    has only this node's (internalTrafficPolicy Local): where
                    pods and the node go through an external address
    fw-<h>-...      loadBalancerSourceRanges: `ip saddr <range> return` per
                    range, then drop; reached from nat-prerouting and
                    nat-output (before `jump services`, so before DNAT) through
                    the map firewall-ips (LoadBalancer IP . proto . port)
    nat-postrouting (srcnat)  meta mark & 0x4000 == 0x4000 masquerade fully-random
    *-check         as kube-proxy: a service without endpoints is rejected (an
                    immediate ICMP error), endpoints that exist but may not be
                    used here are dropped, unknown ports of a ClusterIP are
                    rejected. kube-proxy jumps to them from five filter base
                    chains (`ct state new jump ...`); here nat-prerouting and
                    nat-output jump to them, around `jump services`. The
                    kernel evaluates a nat chain only for the first packet of
                    a connection (and again while that packet is dropped or
                    rejected: the connection is never confirmed), which is
                    what `ct state new` selected, so the checks are the same;
                    but every other packet (all of a plain pod-to-pod flow)
                    crosses no chain of this table at all (bench/dataplane.py:
                    five base chains cost RTT on every hook a packet crosses,
                    twice per node with VXLAN). The maps' keys are disjoint
                    (a Service port is either in service-ips or in
                    no-endpoint-services), so checking before DNAT instead of
                    after it (kube-proxy's forward/input hooks) changes
                    nothing; unknown ClusterIP ports are checked after
                    `jump services`, which ends in a DNAT for every known one.

Endpoints: ready ones; when none is ready, those serving and terminating.
IPv4 only (addressType IPv4, IPv4 ClusterIPs); the first address of an endpoint.
"""

import collections
import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from podnet.api.types import Obj
from podnet.kernel.flowsrc import NFLOG_GROUP
from podnet.proxy.inputs import (
    Endpoint,
    affinity_timeout,
    endpoints_for,
    external_addresses,
    firewall_rules,
    ipv4,
    l4proto,
    port_of,
    service_key,
    slices_by_service,
    usable_endpoints,
)

MARK = "0x4000"
NAME_MAX = 100  # readable part of a chain/set name (nft allows 255)
_BAD = re.compile(r"[^A-Za-z0-9_./-]")

# element containers of the table: name -> declaration
MAPS = {
    "service-ips": "type ipv4_addr . inet_proto . inet_service : verdict;",
    "service-nodeports": "type inet_proto . inet_service : verdict;",
    "no-endpoint-services": "type ipv4_addr . inet_proto . inet_service : verdict;",
    "no-endpoint-nodeports": "type inet_proto . inet_service : verdict;",
    "firewall-ips": "type ipv4_addr . inet_proto . inet_service : verdict;",
}
FIXED_SETS = {
    "cluster-ips": "type ipv4_addr;",
    "nodeport-ips": "type ipv4_addr;",
    "hairpin": "type ipv4_addr . ipv4_addr;",
}
# nat chains only: the kernel runs them for a connection's first packet, never
# for the rest of it (see the module's docstring: no filter base chains)
BASE_CHAINS = {
    "nat-prerouting": "type nat hook prerouting priority dstnat; policy accept;",
    "nat-output": "type nat hook output priority -100; policy accept;",
    "nat-postrouting": "type nat hook postrouting priority srcnat; policy accept;",
}
# what a connection's first packet goes through, in order: the LoadBalancer
# source ranges and the no-endpoint checks before DNAT, then the Services,
# then (not DNATed: no such port) the ClusterIPs' unknown ports
FIRST_PACKET = (
    "jump firewall-check",
    "jump service-endpoints-check",
    "jump nodeport-endpoints-check",
    "jump services",
    "jump cluster-ips-check",
)


@dataclass
class Fragment:
    """What one Service (or the skeleton) puts into the table."""

    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> tuple of rule bodies
    sets: dict[str, str] = field(default_factory=dict)  # dynamic set name -> declaration
    # map/set name -> {key text: verdict text or None}
    elements: dict[str, dict[str, str | None]] = field(default_factory=dict)
    udp_endpoints: frozenset[tuple[str, int]] = frozenset()  # {(ip, port)} behind UDP service ports
    udp_fronts: frozenset[tuple[str | None, int]] = frozenset()  # {(ip or None for nodePort, port)} UDP with endpoints
    endpoints: int = 0  # endpoints in use, for metrics
    endpoint_ips: frozenset[str] = frozenset()  # their addresses (hairpin pairs)
    uses_node_ips: bool = False  # depends on the node's addresses too (loadBalancerSourceRanges)

    def add(self, container: str, key: str, value: str | None = None) -> None:
        self.elements.setdefault(container, {})[key] = value


@functools.lru_cache(maxsize=1 << 16)
def _hash(text: str) -> str:
    # blake2s in C: base32 of sha256 (kube-proxy's) cost a fifth of a full plan
    return hashlib.blake2s(text.encode(), digest_size=5).hexdigest().upper()


def chain_name(prefix: str, key: str) -> str:
    """A valid nft identifier: prefix, short hash of key, readable key."""
    return "%s-%s-%s" % (prefix, _hash(key), _BAD.sub("_", key)[:NAME_MAX])


Target = tuple[str, str | None]
"""How a rule sends a packet to one endpoint: (action, its affinity set or None)."""


def _dispatch(rules: list[str], chosen: list[Endpoint], targets: dict[tuple[str, int], Target], affinity: bool) -> None:
    """Rules that pick one of `chosen`: a returning client to its endpoint
    first (affinity), then a uniform random pick."""
    if affinity:
        for e in chosen:
            action, aff = targets[e["ip"], e["port"]]
            rules.append("ip saddr @%s %s" % (aff, action))
    n = len(chosen)
    for i, e in enumerate(chosen):
        action = targets[e["ip"], e["port"]][0]
        rules.append(action if i == n - 1 else "numgen random mod %d == 0 %s" % (n - i, action))


def plan_service(
    svc: Obj,
    slices: Sequence[Obj],
    node_name: str | None,
    cluster_cidr: str | None = "10.244.0.0/16",
    node_ips: Iterable[str] = (),
) -> Fragment | None:
    """One Service (and its EndpointSlices) -> Fragment, or None when the
    Service gets no rules (headless, ExternalName, no IPv4 ClusterIP).

    One chain per service port (and one more for its external fronts);
    endpoints are picked by a cascade of `numgen random mod k == 0` rules
    (uniform: rule i wins with 1/(N-i) of what is left), as kube-proxy's
    iptables mode does with `-m statistic`. No anonymous sets or per-endpoint
    chains: nft 1.0's cost per transaction grows with the table's chains and
    sets, so fewer of them is what keeps a sync fast at 10,000 Services.
    Affinity is the exception: a chain and a timeout set per endpoint.

    Traffic from pods (the cluster CIDR) and from the node itself to an
    external address of a Service with externalTrafficPolicy Local is subject
    to neither traffic policy: it goes to the cluster-wide endpoints, as if it
    had gone out to a load balancer and come back (kube-proxy's short-circuit).
    `node_ips` only matter with loadBalancerSourceRanges (see firewall)."""
    spec = svc.get("spec") or {}
    stype = spec.get("type", "ClusterIP")
    if stype == "ExternalName":
        return None
    cip = ipv4(spec.get("clusterIP"))
    if cip is None:  # headless ("None"), unallocated, IPv6
        return None
    frag = Fragment()
    frag.add("cluster-ips", str(cip))
    affinity = affinity_timeout(spec)
    ext_local = spec.get("externalTrafficPolicy") == "Local"
    int_local = spec.get("internalTrafficPolicy") == "Local"
    fronts = external_addresses(svc)
    firewall = firewall_rules(svc, node_ips)
    frag.uses_node_ips = firewall is not None
    udp_eps: set[tuple[str, int]] = set()
    udp_fronts: set[tuple[str | None, int]] = set()
    used: set[tuple[str, int]] = set()
    ports = sorted(
        spec.get("ports") or [], key=lambda p: (l4proto(p.get("protocol")), p.get("port", 0), p.get("name") or "")
    )
    for sp in ports:
        port, proto = port_of(sp.get("port")), l4proto(sp.get("protocol"))
        if port is None:
            continue
        base = "%s/%s/%d" % (service_key(svc), proto, port)
        eps = endpoints_for(sp, slices, node_name)
        usable = usable_endpoints(eps)
        local = usable_endpoints([e for e in eps if e["local"]])
        cluster = local if int_local else usable
        nodeport = port_of(sp.get("nodePort")) if stype in ("NodePort", "LoadBalancer") else None
        has_external = bool(nodeport or fronts)
        external = (local if ext_local else usable) if has_external else []
        # short-circuited traffic (pods, the node) to an external address of a Local service
        wide = usable if has_external and ext_local and cluster != usable else []

        if firewall is not None:  # a chain per port, as kube-proxy (`podnet rules --service` finds it)
            fw_chain = chain_name("fw", base)
            frag.chains[fw_chain] = firewall[1]
            for ip in firewall[0]:
                frag.add("firewall-ips", "%s . %s . %d" % (ip, proto, port), "goto " + fw_chain)

        targets: dict[tuple[str, int], Target] = {}  # (ip, port) -> the action that sends a packet there
        for e in sorted(
            {(e["ip"], e["port"]): e for e in cluster + external + wide}.values(), key=lambda e: (e["ip"], e["port"])
        ):
            dnat = "meta l4proto %s dnat to %s:%d" % (proto, e["ip"], e["port"])
            if affinity is not None:
                key = "%s__%s/%d" % (base, e["ip"], e["port"])
                ch, aff = chain_name("ep", key), chain_name("affinity", key)
                frag.sets[aff] = "type ipv4_addr; flags dynamic,timeout; timeout %ds;" % affinity
                frag.chains[ch] = ("update @%s { ip saddr }" % aff, dnat)
                targets[e["ip"], e["port"]] = ("goto " + ch, aff)
            else:
                targets[e["ip"], e["port"]] = (dnat, None)
            used.add((str(e["ip"]), e["port"]))
            if proto == "udp":
                udp_eps.add((str(e["ip"]), e["port"]))

        svc_chain = chain_name("svc", base)
        svc_key_text = "%s . %s . %d" % (cip, proto, port)
        if cluster:
            rules: list[str] = []
            if cluster_cidr:
                rules.append("ip saddr != %s meta mark set meta mark | %s" % (cluster_cidr, MARK))
            _dispatch(rules, cluster, targets, affinity is not None)
            frag.chains[svc_chain] = tuple(rules)
            frag.add("service-ips", svc_key_text, "goto " + svc_chain)
            if proto == "udp":
                udp_fronts.add((str(cip), port))
        else:  # endpoints that exist but may not be used here are dropped, none at all rejected
            frag.add("no-endpoint-services", svc_key_text, "drop" if usable else "goto reject-chain")

        if not has_external:
            continue
        front_keys = ["%s . %s . %d" % (ip, proto, port) for ip in fronts]
        if not usable:  # nothing anywhere: reject on every front
            for k in front_keys:
                frag.add("no-endpoint-services", k, "goto reject-chain")
            if nodeport:
                frag.add("no-endpoint-nodeports", "%s . %d" % (proto, nodeport), "goto reject-chain")
            continue
        ext_chain = chain_name("ext", base)
        rules = []
        if ext_local:
            # pods and the node itself: every endpoint, whatever either policy says
            short = svc_chain
            if wide:
                short = chain_name("all", base)
                wide_rules: list[str] = []
                _dispatch(wide_rules, wide, targets, affinity is not None)
                frag.chains[short] = tuple(wide_rules)
            if cluster_cidr:
                rules.append("ip saddr %s goto %s" % (cluster_cidr, short))
            rules.append("fib saddr type local meta mark set meta mark | %s" % MARK)
            rules.append("fib saddr type local goto %s" % short)
            if external:
                _dispatch(rules, external, targets, affinity is not None)
            else:  # no local endpoint: outside clients are dropped here (healthCheckNodePort says 503)
                rules.append("drop")
        else:
            rules.append("meta mark set meta mark | %s" % MARK)
            if cluster == external:
                rules.append("goto " + svc_chain)
            else:
                _dispatch(rules, external, targets, affinity is not None)
        frag.chains[ext_chain] = tuple(rules)
        for k in front_keys:
            frag.add("service-ips", k, "goto " + ext_chain)
        if nodeport:
            frag.add("service-nodeports", "%s . %d" % (proto, nodeport), "goto " + ext_chain)
        if proto == "udp" and external:
            udp_fronts.update((ip, port) for ip in map(str, fronts))
            if nodeport:
                udp_fronts.add((None, nodeport))
    frag.udp_endpoints, frag.udp_fronts, frag.endpoints = frozenset(udp_eps), frozenset(udp_fronts), len(used)
    frag.endpoint_ips = frozenset(ip for ip, _ in used)
    return frag


def plan_base(node_ips: Iterable[object] | None, endpoint_ips: Iterable[str] = ()) -> Fragment:
    """The fixed skeleton: base chains, dispatch chains, maps, node addresses,
    and the hairpin pairs: a pod DNATed to itself (source = destination after
    DNAT) must be masqueraded, or its reply would never leave the pod. One
    `ip . ip` element per endpoint address does that comparison in a lookup."""
    frag = Fragment()
    ips = sorted({ip for ip in (ipv4(x) for x in (node_ips or [])) if ip is not None})
    np_match = "fib daddr type local ip daddr != 127.0.0.0/8" + (" ip daddr @nodeport-ips" if ips else "")
    frag.chains = {
        "nat-prerouting": FIRST_PACKET,
        "nat-output": FIRST_PACKET,
        "nat-postrouting": (
            "meta mark & %s == %s masquerade fully-random" % (MARK, MARK),
            "ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random",
        ),
        "services": (
            "ip daddr . meta l4proto . th dport vmap @service-ips",
            np_match + " meta l4proto . th dport vmap @service-nodeports",
        ),
        "service-endpoints-check": ("ip daddr . meta l4proto . th dport vmap @no-endpoint-services",),
        "nodeport-endpoints-check": (np_match + " meta l4proto . th dport vmap @no-endpoint-nodeports",),
        # the log rules copy the refused packet to the agent's flow log (podnet.flows), with the reason
        "cluster-ips-check": ('ip daddr @cluster-ips log prefix "pn:rej:unknown-port" group %d reject' % NFLOG_GROUP,),
        "firewall-check": ("ip daddr . meta l4proto . th dport vmap @firewall-ips",),
        "reject-chain": ('log prefix "pn:rej:no-endpoints" group %d' % NFLOG_GROUP, "reject"),
    }
    for ip in ips:
        frag.add("nodeport-ips", str(ip))
    for ip in sorted(endpoint_ips):
        frag.add("hairpin", "%s . %s" % (ip, ip))
    return frag


class Planner:
    """The plan of one node, kept between syncs.

    `update(key, svc, slices)` re-plans one Service (svc None: it is gone);
    `plan(node_ips)` returns the current {key: Fragment} ("" = skeleton). A
    change to one Service therefore costs one plan_service call plus a dict
    copy, whatever the number of Services. `replan_all` rebuilds everything
    from full lists (first sync, periodic resync, after a failure), so an
    update the caller missed cannot outlive the next full sync. The few
    fragments that depend on the node's addresses (loadBalancerSourceRanges)
    keep their inputs and are planned again when `plan` sees new addresses."""

    def __init__(self, node_name: str | None, cluster_cidr: str | None = "10.244.0.0/16"):
        self.node_name, self.cluster_cidr = node_name, cluster_cidr
        self.frags: dict[str, Fragment] = {}  # service key -> Fragment
        self.hairpin: collections.Counter[str] = collections.Counter()  # endpoint IP -> fragments using it
        self._base: tuple[object, Fragment] = (None, Fragment())  # (inputs, skeleton); None: not planned yet
        self.node_ips: tuple[str, ...] = ()  # the addresses the fragments were planned with
        self._node_inputs: dict[str, tuple[Obj, Sequence[Obj]]] = {}  # key -> (svc, slices) of those using them

    def update(self, key: str, svc: Obj | None, slices: Sequence[Obj]) -> None:
        old = self.frags.pop(key, None)
        if old is not None:
            self.hairpin.subtract(old.endpoint_ips)
        self._node_inputs.pop(key, None)
        frag = None
        if svc is not None:
            frag = plan_service(svc, slices, self.node_name, self.cluster_cidr, self.node_ips)
        if frag is not None:
            self.frags[key] = frag
            self.hairpin.update(frag.endpoint_ips)
            if frag.uses_node_ips and svc is not None:
                self._node_inputs[key] = (svc, slices)

    def replan_all(self, services: Iterable[Obj] | None, slices: Iterable[Obj] | None) -> None:
        by_svc = slices_by_service(slices)
        self.frags, self.hairpin, self._node_inputs = {}, collections.Counter(), {}
        for svc in services or []:
            m = svc.get("metadata", {})
            self.update(service_key(svc), svc, by_svc.get((m.get("namespace"), m.get("name")), []))

    def plan(self, node_ips: Iterable[str] | None) -> dict[str, Fragment]:
        ips = tuple(sorted(node_ips or ()))
        if ips != self.node_ips:
            self.node_ips = ips
            for key, (svc, slices) in list(self._node_inputs.items()):
                self.update(key, svc, slices)
        hairpin = frozenset(ip for ip, n in self.hairpin.items() if n > 0)
        if self._base[0] != (ips, hairpin):
            self._base = ((ips, hairpin), plan_base(ips, hairpin))
        out = dict(self.frags)
        out[""] = self._base[1]
        return out


def plan_ruleset(
    services: Iterable[Obj] | None,
    slices: Iterable[Obj] | None,
    node_name: str | None,
    node_ips: Iterable[str] | None,
    table: str = "podnet-proxy",
    cluster_cidr: str | None = "10.244.0.0/16",
) -> str:
    """The whole table as one script that replaces it (see render.full)."""
    from podnet.proxy.render import full

    by_svc = slices_by_service(slices)
    ips = tuple(node_ips or ())
    frags: dict[str, Fragment] = {}
    for svc in services or []:
        m = svc.get("metadata", {})
        frag = plan_service(svc, by_svc.get((m.get("namespace"), m.get("name")), []), node_name, cluster_cidr, ips)
        if frag is not None:
            frags[service_key(svc)] = frag
    frags[""] = plan_base(ips, frozenset().union(*(f.endpoint_ips for f in frags.values())))
    return full(frags, table)
