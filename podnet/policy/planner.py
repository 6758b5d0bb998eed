"""NetworkPolicy semantics, pure: (policies, pods, namespaces, this node) -> Plan.

The Plan is the structure of the node's `inet podnet-policy` table (rendered to
one `nft -f` script by podnet.policy.nftscript, evaluated in memory by
podnet.policy.trace); nothing here does I/O.

    forward hook, priority filter - 1   chain egress
        ct state established,related accept     replies, and connections already up
        ip saddr vmap @egress-pods              local pod isolated for egress -> its chain
    forward hook, priority filter       chain ingress
        ct state established,related accept
        ip saddr @node-ips accept               the pod's own node (kubelet probes)
        ip daddr vmap @ingress-pods             local pod isolated for ingress -> its chain
    egress-<h>-<ns>/<pod>       jump policy-eg-<h>-<ns>/<policy> ... ; counter drop
    ingress-<h>-<ns>/<pod>      jump policy-in-<h>-<ns>/<policy> ... ; counter drop
    policy-in-<h>-<ns>/<policy> one rule per (rule, protocol) of the policy: accept

Two base chains so that "the sender's egress AND the receiver's ingress" is
plain nftables: an `accept` only ends its own base chain, the next one still
sees the packet, a `drop` is final. Each node only enforces its own pods (a
pod's egress where it sends from, its ingress where it receives), so a
cross-node connection gets both verdicts, as with Calico or kube-router.
Policy chains are shared by every local pod the policy selects; the only
per-pod part of a policy chain is a named port, resolved on the destination
pod's containerPorts (`ip daddr . th dport { ip . port }`).

IPv4 only: pod IPs and ipBlocks are IPv4 here (IPv6 ipBlocks are ignored).
"""

import base64
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field

from podnet.api.selectors import format_selector, matches

NS_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server
NAME_MAX = 100  # readable part of a chain name
PROTOCOLS = ("tcp", "udp", "sctp")
_BAD = re.compile(r"[^A-Za-z0-9_./-]")


@dataclass(frozen=True)
class Rule:
    """One nft rule: every match given must hold; None = not matched on."""

    verdict: str  # "accept", "drop", "jump <chain>"
    saddr: object = None  # (ip_network, ...) disjoint, or a set's name
    daddr: object = None
    proto: str | None = None  # tcp / udp / sctp
    dports: tuple | None = None  # ((lo, hi), ...) disjoint, sorted
    daddr_dport: object = None  # ((ip_address, port),) or a set's name: named ports
    counter: bool = False
    comment: str = ""


@dataclass(frozen=True)
class NamedSet:
    comment: str
    type: str  # "ipv4_addr" (interval) or "ipv4_addr . inet_service"
    elements: tuple  # ip_networks, or (ip_address, port) pairs


@dataclass
class Chain:
    comment: str = ""
    rules: list = field(default_factory=list)


@dataclass
class Plan:
    node_ips: tuple = ()  # sources always allowed in (probes)
    ingress_pods: dict = field(default_factory=dict)  # ip_address -> chain
    egress_pods: dict = field(default_factory=dict)
    chains: dict = field(default_factory=dict)  # name -> Chain, policy chains first
    sets: dict = field(default_factory=dict)  # name -> NamedSet
    selected: dict = field(default_factory=dict)  # "ns/policy" -> ["ns/pod", ...] local pods


def _hash(text):
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:8]


def chain_name(prefix, key):
    """A valid nft identifier: prefix, short hash of key, readable key."""
    return "%s-%s-%s" % (prefix, _hash(key), _BAD.sub("_", key)[:NAME_MAX])


def _meta(obj):
    return obj.get("metadata") or {}


def _key(obj):
    m = _meta(obj)
    return "%s/%s" % (m.get("namespace") or "default", m.get("name", ""))


def policy_types(spec):
    """spec.policyTypes, or the API default: Ingress, plus Egress when egress rules exist."""
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if spec.get("egress") else []))


def _ipv4(text):
    try:
        ip = ipaddress.ip_address(str(text))
    except ValueError:
        return None
    return ip if ip.version == 4 else None


# ---- the cluster as the planner sees it ----------------------------------------


@dataclass(frozen=True)
class PodInfo:
    ns: str
    name: str
    ip: ipaddress.IPv4Address
    node: str
    labels: dict
    ports: tuple  # ((name, protocol lowercase, containerPort), ...)

    @property
    def key(self):
        return "%s/%s" % (self.ns, self.name)


def live_pods(pods):
    """Pods that own an IP on the pod network: podIP set, not hostNetwork, not
    finished. Two pods with one IP (a reused address while the old pod is
    still terminating) count once: the newest, not terminating, wins."""
    best = {}
    for p in pods:
        m, spec, st = _meta(p), p.get("spec") or {}, p.get("status") or {}
        ip = _ipv4(st.get("podIP"))
        if ip is None or spec.get("hostNetwork") or st.get("phase") in ("Succeeded", "Failed"):
            continue
        ports = tuple(
            (str(cp["name"]), str(cp.get("protocol") or "TCP").lower(), int(cp["containerPort"]))
            for c in spec.get("containers") or []
            for cp in c.get("ports") or []
            if cp.get("name") and cp.get("containerPort")
        )
        info = PodInfo(
            m.get("namespace") or "default",
            m.get("name", ""),
            ip,
            spec.get("nodeName") or "",
            dict(m.get("labels") or {}),
            ports,
        )
        rank = (m.get("deletionTimestamp") is None, m.get("creationTimestamp") or "", info.key)
        if ip not in best or rank > best[ip][0]:
            best[ip] = (rank, info)
    return sorted((info for _, info in best.values()), key=lambda i: (i.ns, i.name))


def namespace_labels(namespaces, pods, policies):
    """Every namespace we know of -> its labels, with kubernetes.io/metadata.name
    as the API server sets it (also for namespaces that have no object here)."""
    out = {}
    for n in namespaces:
        name = _meta(n).get("name")
        out[name] = dict(_meta(n).get("labels") or {}, **{NS_NAME_LABEL: name})
    for o in list(pods) + list(policies):
        ns = _meta(o).get("namespace") or "default"
        out.setdefault(ns, {NS_NAME_LABEL: ns})
    return out


class Cluster:
    """Selector lookups over one snapshot, memoised (1,000 policies share few selectors)."""

    def __init__(self, pods, ns_labels):
        self.pods, self.ns_labels = pods, ns_labels
        self.by_ns = {}
        for p in pods:
            self.by_ns.setdefault(p.ns, []).append(p)
        self._memo = {}
        self.sets = {}  # named sets the rules refer to

    def _cached(self, key, fn):
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    def in_namespace(self, ns, selector):
        return self._cached(
            ("pods", ns, repr(selector)), lambda: [p for p in self.by_ns.get(ns, []) if matches(selector, p.labels)]
        )

    def namespaces(self, selector):
        return self._cached(
            ("ns", repr(selector)), lambda: sorted(n for n, lab in self.ns_labels.items() if matches(selector, lab))
        )

    def peer_pods(self, ns, peer):
        """Pods a podSelector/namespaceSelector peer names (policy namespace ns)."""
        pod_sel = peer.get("podSelector")
        if peer.get("namespaceSelector") is None:
            return self.in_namespace(ns, pod_sel)
        return [
            p
            for n in self.namespaces(peer["namespaceSelector"])
            for p in self.in_namespace(n, {} if pod_sel is None else pod_sel)
        ]


# ---- one policy -> chains ---------------------------------------------------------


def ip_block(block):
    """ipBlock -> disjoint IPv4 networks: cidr minus every except."""
    try:
        nets = [ipaddress.ip_network(block["cidr"], strict=False)]
        excepts = [ipaddress.ip_network(e, strict=False) for e in block.get("except") or []]
    except (KeyError, ValueError):
        return []
    if nets[0].version != 4:
        return []
    for ex in excepts:
        nxt = []
        for n in nets:
            if ex.version == 4 and ex.subnet_of(n):
                nxt += list(n.address_exclude(ex))
            elif ex.version == 4 and n.subnet_of(ex):
                continue
            else:
                nxt.append(n)
        nets = nxt
    return nets


def _port_groups(ports):
    """ports -> {proto: None (every port) | [(lo, hi), ...]} and [(proto, name)]."""
    numeric, named = {}, []
    for p in ports:
        proto = str(p.get("protocol") or "TCP").lower()
        port, end = p.get("port"), p.get("endPort")
        if port is None:
            numeric[proto] = None
        elif isinstance(port, str):
            named.append((proto, port))
        elif proto not in numeric or numeric[proto] is not None:
            numeric.setdefault(proto, []).append((int(port), int(end or port)))
    return {proto: None if r is None else _merge(r) for proto, r in numeric.items()}, named


def _merge(ranges):
    out = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _sel_text(sel):
    text = format_selector(sel)
    return "*" if text == "<none>" else text


def peer_ref(cluster, ns, peer):
    """A peer -> (addresses, pods), memoised per peer: addresses are a set name
    (shared by every rule that names the same peer) or, for one address, the
    address itself; None when the peer names nobody. Sharing matters: nft's
    parser pays per set element, and 1,000 policies repeat few selectors."""
    if peer.get("ipBlock") is not None:
        b = peer["ipBlock"]
        key = (
            "block %s except %s" % (b.get("cidr"), ",".join(b.get("except") or []))
            if b.get("except")
            else "block %s" % b.get("cidr")
        )
    elif peer.get("namespaceSelector") is None:
        key = "%s pods %s" % (ns, _sel_text(peer.get("podSelector")))
    else:
        key = "ns %s pods %s" % (_sel_text(peer["namespaceSelector"]), _sel_text(peer.get("podSelector") or {}))

    def resolve():
        if peer.get("ipBlock") is not None:
            nets = tuple(ip_block(peer["ipBlock"]))
            pods = [p for p in cluster.pods if any(p.ip in n for n in nets)]
        else:
            pods = cluster.peer_pods(ns, peer)
            nets = tuple(ipaddress.collapse_addresses(ipaddress.ip_network(p.ip) for p in pods))
        if not nets:
            return None
        if len(nets) == 1:
            return nets, pods
        name = chain_name("peers", key)
        cluster.sets[name] = NamedSet("peers: " + key, "ipv4_addr", nets)
        return name, pods

    return cluster._cached(("peer", key), resolve)


def _pairs_ref(cluster, pairs, what):
    """Named-port (ip, port) pairs: inline when one, else a set shared by content."""
    pairs = tuple(sorted(pairs, key=lambda pair: (int(pair[0]), pair[1])))  # ints: IPv4Address compares slowly
    if len(pairs) <= 1:
        return pairs
    name = chain_name("named", "%s %s" % (what, _hash(" ".join("%d:%d" % (int(ip), port) for ip, port in pairs))))
    cluster.sets[name] = NamedSet("named port " + what, "ipv4_addr . inet_service", pairs)
    return name


def _rule_rules(cluster, ns, rule, ingress, selected, where):
    """One ingress/egress rule -> nft Rules (each ends in accept): one per
    peer and protocol (peers are OR, each peer its own set)."""
    peers = rule.get("from" if ingress else "to") or []
    if peers:
        refs = [r for r in (peer_ref(cluster, ns, peer) for peer in peers) if r is not None]
        if not refs:
            return []  # peers that name nobody allow nothing
    else:
        refs = [(None, cluster.pods)]
    ports = rule.get("ports") or []
    numeric, named = _port_groups(ports) if ports else ({None: None}, [])
    out = []
    for addrs, pods in refs:
        ends = {"saddr" if ingress else "daddr": addrs}
        # one rule per port range: an anonymous port set per rule costs nft
        # a set object each (1,000 policies: seconds), a range costs nothing
        out += [
            Rule("accept", proto=proto, dports=None if numeric[proto] is None else (r,), comment=where, **ends)
            for proto in sorted(numeric, key=str)
            for r in (numeric[proto] or [None])
        ]
        # a name is looked up on the destination pod: the selected pods for
        # ingress, the peer's pods for egress (every pod when `to` is empty;
        # pods inside an ipBlock too, as the upstream e2e suite expects)
        targets = selected if ingress else pods
        for proto, name in sorted(set(named)):
            pairs = {(p.ip, port) for p in targets for n, pr, port in p.ports if n == name and pr == proto}
            if pairs:
                out.append(
                    Rule(
                        "accept",
                        proto=proto,
                        daddr_dport=_pairs_ref(cluster, pairs, "%s/%s" % (name, proto)),
                        comment="%s port %s" % (where, name),
                        **(ends if ingress else {}),
                    )
                )
    return out


def policy_chain(cluster, pol, direction, selected):
    spec, key = pol.get("spec") or {}, _key(pol)
    ns = _meta(pol).get("namespace") or "default"
    ingress = direction == "Ingress"
    rules = []
    for i, rule in enumerate(spec.get("ingress" if ingress else "egress") or []):
        rules += _rule_rules(
            cluster, ns, rule or {}, ingress, selected, "%s %s[%d]" % (key, "ingress" if ingress else "egress", i)
        )
    why = "" if rules else " (no rule: allows nothing)"
    return Chain("NetworkPolicy %s %s%s" % (key, direction.lower(), why), rules)


# ---- the node ----------------------------------------------------------------------


def plan(policies, pods, namespaces, node, node_ips=()):
    """The whole table for `node`. node_ips: its InternalIP and the bridge gateway."""
    live = live_pods(pods)
    cluster = Cluster(live, namespace_labels(namespaces, pods, policies))
    local = [p for p in live if p.node == node]
    out = Plan(node_ips=tuple(sorted({ip for ip in (_ipv4(a) for a in node_ips) if ip})))
    isolating = {"Ingress": {}, "Egress": {}}  # pod key -> [policy chain names]
    for pol in sorted(policies, key=_key):
        spec = pol.get("spec") or {}
        ns = _meta(pol).get("namespace") or "default"
        selected = [p for p in cluster.in_namespace(ns, spec.get("podSelector") or {}) if p.node == node]
        if not selected:
            continue
        out.selected[_key(pol)] = [p.key for p in selected]
        for direction in ("Ingress", "Egress"):
            if direction not in policy_types(spec):
                continue
            name = chain_name("policy-in" if direction == "Ingress" else "policy-eg", _key(pol))
            out.chains[name] = policy_chain(cluster, pol, direction, selected)
            for p in selected:
                isolating[direction].setdefault(p.key, []).append(name)
    out.sets = dict(sorted(cluster.sets.items()))
    for p in local:
        for direction, prefix, table in (
            ("Ingress", "ingress", out.ingress_pods),
            ("Egress", "egress", out.egress_pods),
        ):
            jumps = isolating[direction].get(p.key)
            if not jumps:
                continue  # no policy selects it for this direction: everything allowed
            name = chain_name(prefix, p.key)
            rules = [Rule("jump " + j) for j in jumps]
            rules.append(
                Rule("drop", counter=True, comment="%s: no NetworkPolicy allows this %s" % (p.key, direction.lower()))
            )
            out.chains[name] = Chain("pod %s %s (%s)" % (p.key, p.ip, direction.lower()), rules)
            table[p.ip] = name
    return out


def node_addresses(node_obj):
    """The node's own addresses that talk to its pods: InternalIPs and the
    bridge gateway (first address of the podCIDR, as the podnet bridge sets it)."""
    if not node_obj:
        return []
    out = [
        a.get("address") for a in (node_obj.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalIP"
    ]
    cidr = (node_obj.get("spec") or {}).get("podCIDR")
    if cidr:
        try:
            out.append(str(next(ipaddress.ip_network(cidr, strict=False).hosts())))
        except (ValueError, StopIteration):
            pass
    return [a for a in out if a]
