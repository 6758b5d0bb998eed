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
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from podnet.api.selectors import format_selector
from podnet.api.types import Obj
from podnet.policy.cluster import (
    Addrs,
    Cluster,
    IPv4,
    NamedSet,
    Net,
    Pairs,
    PeerRef,
    PodInfo,
    _ipv4,
    _meta,
    live_pods,
    namespace_labels,
)

NAME_MAX = 100  # readable part of a chain name
PROTOCOLS = ("tcp", "udp", "sctp")
_BAD = re.compile(r"[^A-Za-z0-9_./-]")


@dataclass(frozen=True)
class Rule:
    """One nft rule: every match given must hold; None = not matched on."""

    verdict: str  # "accept", "drop", "jump <chain>"
    saddr: Addrs = None  # (ip_network, ...) disjoint, or a set's name
    daddr: Addrs = None
    proto: str | None = None  # tcp / udp / sctp
    dports: tuple[tuple[int, int], ...] | None = None  # ((lo, hi), ...) disjoint, sorted
    daddr_dport: Pairs | str | None = None  # ((ip_address, port),) or a set's name: named ports
    counter: bool = False
    comment: str = ""


@dataclass
class Chain:
    comment: str = ""
    rules: list[Rule] = field(default_factory=list)


@dataclass
class Plan:
    node_ips: tuple[IPv4, ...] = ()  # sources always allowed in (probes)
    ingress_pods: dict[IPv4, str] = field(default_factory=dict)  # ip_address -> chain
    egress_pods: dict[IPv4, str] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)  # name -> Chain, policy chains first
    sets: dict[str, NamedSet] = field(default_factory=dict)  # name -> NamedSet
    selected: dict[str, list[str]] = field(default_factory=dict)  # "ns/policy" -> ["ns/pod", ...] local pods


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:8]


def chain_name(prefix: str, key: str) -> str:
    """A valid nft identifier: prefix, short hash of key, readable key."""
    return "%s-%s-%s" % (prefix, _hash(key), _BAD.sub("_", key)[:NAME_MAX])


def _key(obj: Obj) -> str:
    m = _meta(obj)
    return "%s/%s" % (m.get("namespace") or "default", m.get("name", ""))


def policy_types(spec: Obj) -> list[str]:
    """spec.policyTypes, or the API default: Ingress, plus Egress when egress rules exist."""
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if spec.get("egress") else []))


# ---- one policy -> chains ---------------------------------------------------------


def ip_block(block: Obj) -> list[Net]:
    """ipBlock -> disjoint IPv4 networks: cidr minus every except."""
    try:
        cidr = ipaddress.ip_network(block["cidr"], strict=False)
        excepts = [ipaddress.ip_network(e, strict=False) for e in block.get("except") or []]
    except (KeyError, ValueError):
        return []
    if not isinstance(cidr, Net):
        return []
    nets = [cidr]
    for ex in excepts:
        if not isinstance(ex, Net):
            continue  # an IPv6 except takes nothing out of an IPv4 cidr
        nxt: list[Net] = []
        for n in nets:
            if ex.subnet_of(n):
                nxt += list(n.address_exclude(ex))
            elif n.subnet_of(ex):
                continue
            else:
                nxt.append(n)
        nets = nxt
    return nets


PortGroups = dict[str | None, tuple[tuple[int, int], ...] | None]
"""{protocol (None: any): None (every port) | port ranges}."""


def _port_groups(ports: Iterable[Obj]) -> tuple[PortGroups, list[tuple[str, str]]]:
    """ports -> {proto: None (every port) | [(lo, hi), ...]} and [(proto, name)]."""
    numeric: dict[str, list[tuple[int, int]] | None] = {}
    named: list[tuple[str, str]] = []
    for p in ports:
        proto = str(p.get("protocol") or "TCP").lower()
        port, end = p.get("port"), p.get("endPort")
        if port is None:
            numeric[proto] = None
        elif isinstance(port, str):
            named.append((proto, port))
        else:
            ranges = numeric.setdefault(proto, [])
            if ranges is not None:  # None: every port of proto already
                ranges.append((int(port), int(end or port)))
    return {proto: None if r is None else _merge(r) for proto, r in numeric.items()}, named


def _merge(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


_SEL_TEXT: dict[str, str] = {}  # repr(selector) -> its text: formatting is slow, selectors repeat


def _sel_text(sel: Obj | None) -> str:
    r = repr(sel)
    text = _SEL_TEXT.get(r)
    if text is None:
        if len(_SEL_TEXT) > 10000:
            _SEL_TEXT.clear()
        text = format_selector(sel)
        text = _SEL_TEXT[r] = "*" if text == "<none>" else text
    return text


def peer_ref(cluster: Cluster, ns: str, peer: Obj) -> PeerRef | None:
    """A peer -> (addresses, pods), memoised per peer. A selector peer's
    addresses are always a named set (shared by every rule that names the
    same peer), even of one address or none: a pod coming, going or changing
    its labels then changes that set's elements, never the rules that name
    it (an empty set matches nothing, as an absent rule would). An ipBlock's
    addresses never change: one network stays inline, several are a set,
    none is None (the rule allows nothing and is left out). Sharing matters:
    nft's parser pays per set element, and 1,000 policies repeat few selectors."""
    key = peer_key(ns, peer)

    def resolve() -> PeerRef | None:
        if peer.get("ipBlock") is not None:
            nets = tuple(ip_block(peer["ipBlock"]))
            spans = [(int(n.network_address), int(n.broadcast_address)) for n in nets]  # ints: `in` is slow
            pods = [p for p in cluster.pods if any(lo <= int(p.ip) <= hi for lo, hi in spans)]
            if not nets:
                return None
            if len(nets) == 1:
                return nets, pods
            name = chain_name("peers", key)
            cluster.sets[name] = NamedSet("peers: " + key, INTERVAL_TYPE, nets)
            return name, pods
        # pod addresses, one element each (a plain hash set, not intervals:
        # a pod coming or going is one element added or deleted, and nft
        # needs no interval bookkeeping to do it)
        pods = cluster.peer_pods(ns, peer)
        ips = tuple(Net(ip) for ip in sorted({int(p.ip) for p in pods}))
        name = chain_name("peers", key)
        cluster.sets[name] = NamedSet("peers: " + key, ADDR_TYPE, ips)
        return name, pods

    ref = cluster._cached(("peer", key), resolve)
    cluster.peers_used.add(key)
    if ref is not None and isinstance(ref[0], str):
        cluster.sets_used.add(ref[0])
    return ref


def peer_key(ns: str, peer: Obj) -> str:
    """What a peer names, as text: peers with one key resolve alike (and share a set)."""
    if peer.get("ipBlock") is not None:
        b = peer["ipBlock"]
        return (
            "block %s except %s" % (b.get("cidr"), ",".join(b.get("except") or []))
            if b.get("except")
            else "block %s" % b.get("cidr")
        )
    if peer.get("namespaceSelector") is None:
        return "%s pods %s" % (ns, _sel_text(peer.get("podSelector")))
    return "ns %s pods %s" % (_sel_text(peer["namespaceSelector"]), _sel_text(peer.get("podSelector") or {}))


ALL = "@all"  # a named port's targets: every pod (an egress rule without `to`)


def selection_group(ns: str, selector: Obj | None) -> str:
    """A named port's targets: the local pods a policy selects (its ingress)."""
    return "@selected %s %s" % (ns, _sel_text(selector or {}))


def named_ref(cluster: Cluster, targets: list[PodInfo], group: str, name: str, proto: str) -> Pairs | str | None:
    """A named port on `targets` (named by `group`: ALL, a selection_group or
    a peer's key) -> the name of the set of its (ip, port) pairs, named by
    group, port and protocol (not by content), and a set also when one
    target or none has the port: a pod coming, going or taking the port
    changes the set's elements, never the rules that name it (an empty set
    matches nothing, as an absent rule would). Memoised per Cluster."""
    key = (group, name, proto)

    def build() -> Pairs | str | None:
        pairs = {(p.ip, port) for p in targets for n, pr, port in p.ports if n == name and pr == proto}
        ordered = tuple(sorted(pairs, key=lambda pair: (int(pair[0]), pair[1])))  # ints: IPv4Address compares slowly
        set_name = chain_name("named", "%s/%s %s" % (name, proto, group))
        cluster.sets[set_name] = NamedSet("named port %s/%s of %s" % (name, proto, group), PAIRS_TYPE, ordered)
        return set_name

    if key not in cluster.named:
        cluster.named[key] = build()
    ref = cluster.named[key]
    cluster.pairs_used.add(key)
    if isinstance(ref, str):
        cluster.sets_used.add(ref)
    return ref


PAIRS_TYPE = "ipv4_addr . inet_service"
ADDR_TYPE = "ipv4_addr"  # pod addresses (/32 networks)
INTERVAL_TYPE = "ipv4_addr interval"  # an ipBlock's networks


def _rule_rules(
    cluster: Cluster, ns: str, rule: Obj, ingress: bool, selected: tuple[str, list[PodInfo]], where: str
) -> list[Rule]:
    """One ingress/egress rule -> nft Rules (each ends in accept): one per
    peer and protocol (peers are OR, each peer its own set). selected: the
    policy's selection_group and its pods."""
    peers = rule.get("from" if ingress else "to") or []
    refs: list[tuple[str, Addrs, list[PodInfo]]]
    if peers:
        refs = [(peer_key(ns, peer), *r) for peer in peers if (r := peer_ref(cluster, ns, peer)) is not None]
        if not refs:
            return []  # peers that name nobody allow nothing
    else:
        refs = [(ALL, None, cluster.pods)]
    ports = rule.get("ports") or []
    numeric: PortGroups
    named: list[tuple[str, str]]
    numeric, named = _port_groups(ports) if ports else ({None: None}, [])
    out: list[Rule] = []
    for group, addrs, pods in refs:
        saddr, daddr = (addrs, None) if ingress else (None, addrs)
        # one rule per port range: an anonymous port set per rule costs nft
        # a set object each (1,000 policies: seconds), a range costs nothing
        for proto in sorted(numeric, key=str):
            ranges = numeric[proto]
            if ranges is None:
                out.append(Rule("accept", saddr, daddr, proto, None, comment=where))
            else:
                out += [Rule("accept", saddr, daddr, proto, (r,), comment=where) for r in ranges]
        # a name is looked up on the destination pod: the selected pods for
        # ingress, the peer's pods for egress (every pod when `to` is empty;
        # pods inside an ipBlock too, as the upstream e2e suite expects)
        group, targets = selected if ingress else (group, pods)
        for proto, name in sorted(set(named)):
            pairs = named_ref(cluster, targets, group, name, proto)
            if pairs is not None:
                out.append(
                    Rule(
                        "accept",
                        proto=proto,
                        daddr_dport=pairs,
                        comment="%s port %s" % (where, name),
                        saddr=saddr,  # for egress the pairs are the destination
                    )
                )
    return out


def policy_chain(cluster: Cluster, pol: Obj, direction: str, selected: list[PodInfo]) -> Chain:
    spec, key = pol.get("spec") or {}, _key(pol)
    ns = _meta(pol).get("namespace") or "default"
    ingress = direction == "Ingress"
    rules: list[Rule] = []
    group = (selection_group(ns, spec.get("podSelector")), selected)
    for i, rule in enumerate(spec.get("ingress" if ingress else "egress") or []):
        rules += _rule_rules(
            cluster, ns, rule or {}, ingress, group, "%s %s[%d]" % (key, "ingress" if ingress else "egress", i)
        )
    why = "" if rules else " (no rule: allows nothing)"
    return Chain("NetworkPolicy %s %s%s" % (key, direction.lower(), why), rules)


# ---- the node ----------------------------------------------------------------------


def selected_pods(cluster: Cluster, pol: Obj, node: str) -> list[PodInfo]:
    """The pods of `node` a policy applies to."""
    ns = _meta(pol).get("namespace") or "default"
    sel = (pol.get("spec") or {}).get("podSelector") or {}
    # memoised: policies with one selector share the list (and _named_ref relies on that)
    return cluster._cached(
        ("selected", ns, repr(sel), node), lambda: [p for p in cluster.in_namespace(ns, sel) if p.node == node]
    )


def policy_chains(cluster: Cluster, pol: Obj, selected: list[PodInfo]) -> dict[str, Chain]:
    """One policy's chains ("policy-in-..." before "policy-eg-..."), for the pods it selects here."""
    out: dict[str, Chain] = {}
    types = policy_types(pol.get("spec") or {})
    for direction in ("Ingress", "Egress"):
        if direction in types:
            name = chain_name("policy-in" if direction == "Ingress" else "policy-eg", _key(pol))
            out[name] = policy_chain(cluster, pol, direction, selected)
    return out


def pod_chain(p: PodInfo, direction: str, jumps: list[str]) -> tuple[str, Chain]:
    """A local pod's chain for one direction: its policies' chains in turn, then drop."""
    name = chain_name(direction, p.key)
    rules = [Rule("jump " + j) for j in jumps]
    rules.append(Rule("drop", counter=True, comment="%s: no NetworkPolicy allows this %s" % (p.key, direction)))
    return name, Chain("pod %s %s (%s)" % (p.key, p.ip, direction), rules)


def plan(
    policies: Collection[Obj],
    pods: Collection[Obj],
    namespaces: Iterable[Obj],
    node: str,
    node_ips: Iterable[object] = (),
) -> Plan:
    """The whole table for `node`. node_ips: its InternalIP and the bridge gateway."""
    live = live_pods(pods)
    cluster = Cluster(live, namespace_labels(namespaces, pods, policies))
    out = Plan(node_ips=tuple(sorted({ip for ip in (_ipv4(a) for a in node_ips) if ip})))
    isolating: dict[str, dict[str, list[str]]] = {"ingress": {}, "egress": {}}  # pod key -> [policy chain names]
    for pol in sorted(policies, key=_key):
        selected = selected_pods(cluster, pol, node)
        if not selected:
            continue
        out.selected[_key(pol)] = [p.key for p in selected]
        for name, chain in policy_chains(cluster, pol, selected).items():
            out.chains[name] = chain
            for p in selected:
                isolating["ingress" if name.startswith("policy-in") else "egress"].setdefault(p.key, []).append(name)
    out.sets = dict(sorted(cluster.sets.items()))
    for p in live:
        if p.node != node:
            continue
        for direction, table in (("ingress", out.ingress_pods), ("egress", out.egress_pods)):
            jumps = isolating[direction].get(p.key)
            if jumps:  # else no policy selects it for this direction: everything allowed
                name, out.chains[name] = pod_chain(p, direction, jumps)
                table[p.ip] = name
    return out
