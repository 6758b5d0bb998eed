"""One node's NetworkPolicy plan kept current change by change. Pure.

planner.plan() plans the node's table from every policy, pod and namespace;
at 1,000 policies that is ~0.1 s of Python for every pod event. Incremental
keeps the cluster as the table sees it and the plan of it per policy (its
chains, the local pods it selects, the peers and sets it looked up), and a
change re-plans only what it can touch:

- a policy: that policy, and the chains of the local pods it selects (before
  or after the change);
- a pod (new, deleted, relabelled, another IP or ports): the policies whose
  podSelector matches it (before or after) when it runs here; the peers whose
  selector (or ipBlock) matches it are resolved again: a peer whose
  addresses keep their shape (a set stays a set, one inline address stays
  that address) only changes its set's elements, otherwise the policies that
  use it are re-planned; named ports on those peers' pods (or on every pod)
  alike: their set's elements change, or, when the pairs change shape, the
  policies that use them are re-planned;
- a namespace's labels: the peers with a namespaceSelector whose match of it
  changed, as above.

plan() returns a Plan equal to planner.plan() over the same objects
(tests/unit/test_policy_incremental.py checks that after every step of
random sequences of changes), with the Chain and NamedSet objects that did
not change shared with the previous Plan, so that nftscript.diff finds the
changed ones by identity.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

from podnet.api.selectors import matches
from podnet.api.types import Obj
from podnet.policy.cluster import (
    NS_NAME_LABEL,
    Cluster,
    IPv4,
    NamedSet,
    Net,
    Pairs,
    PeerRef,
    PodInfo,
    Rank,
    _ipv4,
    pod_info,
)
from podnet.policy.planner import (
    ALL,
    Chain,
    Plan,
    ip_block,
    named_ref,
    peer_key,
    peer_ref,
    pod_chain,
    policy_chains,
    selected_pods,
)


@dataclass
class _Peer:
    ns: str
    spec: Obj
    ref: PeerRef | None
    nets: tuple[Net, ...] = ()  # an ipBlock's networks (its addresses never change)
    spans: tuple[tuple[int, int], ...] = ()  # the same as integer ranges: `ip in net` is slow
    users: set[str] = field(default_factory=set)  # policy keys


NamedKey = tuple[str, str, str]  # a named port's targets' group, name, protocol (planner.named_ref)


@dataclass
class _Named:
    ref: Pairs | str | None  # as the rules name it: None, inline pairs, or a set's name
    users: set[str] = field(default_factory=set)  # policy keys


@dataclass
class _Planned:
    """One policy that selects pods here, as last planned."""

    selected: list[PodInfo]
    chains: dict[str, Chain]
    peers: set[str]
    sets: set[str]
    named: set[NamedKey]  # named ports it looked up
    keys: list[str] = field(default_factory=list)  # its selected pods' keys, as Plan.selected lists them


def _peers_of(pol: Obj) -> dict[str, tuple[str, Obj]]:
    ns = pol["metadata"].get("namespace") or "default"
    spec = pol.get("spec") or {}
    out = {}
    for side, rules in (("from", spec.get("ingress")), ("to", spec.get("egress"))):
        for rule in rules or []:
            for peer in (rule or {}).get(side) or []:
                out[peer_key(ns, peer)] = (ns, peer)
    return out


def _shape(ref: PeerRef | None) -> object:
    """What a rule says about a peer: nothing, its inline addresses, or its set's name."""
    return None if ref is None else ref[0]


class Incremental:
    def __init__(self, node: str):
        self.node = node
        self.node_ips: tuple[IPv4, ...] = ()
        self.policies: dict[str, Obj] = {}  # "ns/name" -> object
        self.by_ns: dict[str, set[str]] = {}  # namespace -> its policies' keys
        self.ns_labels: dict[str, dict[str, str]] = {}  # namespaces with an object
        self.cands: dict[IPv4, dict[str, tuple[Rank, PodInfo]]] = {}  # pods claiming an IP
        self.ip_of: dict[str, IPv4] = {}  # pod key -> the IP it claims
        self.live: dict[IPv4, PodInfo] = {}  # the pod each IP belongs to
        self.planned: dict[str, _Planned] = {}
        self.peers: dict[str, _Peer] = {}  # peer keys some planned policy uses
        self.sets: dict[str, NamedSet] = {}
        self.set_users: dict[str, set[str]] = {}
        self.named: dict[NamedKey, _Named] = {}  # named ports some planned policy uses
        self.pod_chains: dict[str, dict[str, tuple[str, Chain]]] = {}  # pod key -> direction -> chain
        self._pods: dict[str, Obj | None] = {}  # changes not planned yet
        self._namespaces: dict[str, Obj | None] = {}
        self._policies: dict[str, Obj | None] = {}

    # ---- changes in (nothing is planned until plan()) ---------------------------

    def pod(self, key: str, obj: Obj | None) -> None:
        """key: "ns/name"; obj None: deleted."""
        self._pods[key] = obj

    def namespace(self, name: str, obj: Obj | None) -> None:
        self._namespaces[name] = obj

    def policy(self, key: str, obj: Obj | None) -> None:
        self._policies[key] = obj

    def set_node_ips(self, ips: Iterable[object]) -> None:
        self.node_ips = tuple(sorted({ip for ip in (_ipv4(a) for a in ips) if ip}))

    # ---- the plan --------------------------------------------------------------

    def _apply_pods(self) -> list[PodInfo]:
        """Pod changes into the copy -> the PodInfos that left or joined `live`."""
        ips: set[IPv4] = set()
        for key, obj in self._pods.items():
            old_ip = self.ip_of.pop(key, None)
            if old_ip is not None:
                self.cands[old_ip].pop(key, None)
                ips.add(old_ip)
            got = pod_info(obj) if obj is not None else None
            if got is not None:
                ip = got[1].ip
                self.cands.setdefault(ip, {})[key] = got
                self.ip_of[key] = ip
                ips.add(ip)
        self._pods = {}
        changed = []
        for ip in ips:
            cands = self.cands.get(ip) or {}
            new = max(cands.values(), key=lambda c: c[0])[1] if cands else None
            if not cands:
                self.cands.pop(ip, None)
            old = self.live.get(ip)
            if old == new:
                continue
            if new is None:
                del self.live[ip]
            else:
                self.live[ip] = new
            changed += [p for p in (old, new) if p is not None]
        return changed

    def _apply_namespaces(self) -> list[tuple[dict[str, str], dict[str, str]]]:
        out = []
        for name, obj in self._namespaces.items():
            default = {NS_NAME_LABEL: name}
            old = self.ns_labels.pop(name, default)
            new = dict((obj.get("metadata") or {}).get("labels") or {}, **default) if obj else default
            if obj is not None:
                self.ns_labels[name] = new
            if old != new:
                out.append((old, new))
        self._namespaces = {}
        return out

    def _apply_policies(self) -> set[str]:
        for key, obj in self._policies.items():
            ns = key.split("/", 1)[0]
            if obj is None:
                self.policies.pop(key, None)
                self.by_ns.get(ns, set()).discard(key)
            else:
                self.policies[key] = obj
                self.by_ns.setdefault(ns, set()).add(key)
        out = set(self._policies)
        self._policies = {}
        return out

    def _labels(self, ns: str) -> dict[str, str]:
        return self.ns_labels.get(ns) or {NS_NAME_LABEL: ns}

    def _touched(self, peer: _Peer, pods: list[PodInfo], nss: list[tuple[dict[str, str], dict[str, str]]]) -> bool:
        """Could these changes change what the peer names? (may say yes wrongly, never no wrongly)"""
        if peer.spec.get("ipBlock") is not None:
            return any(lo <= int(p.ip) <= hi for p in pods for lo, hi in peer.spans)
        pod_sel, ns_sel = peer.spec.get("podSelector"), peer.spec.get("namespaceSelector")
        if ns_sel is None:
            return any(p.ns == peer.ns and matches(pod_sel, p.labels) for p in pods)
        if any(matches(ns_sel, old) != matches(ns_sel, new) for old, new in nss):
            return True
        pod_sel = {} if pod_sel is None else pod_sel
        return any(matches(ns_sel, self._labels(p.ns)) and matches(pod_sel, p.labels) for p in pods)

    def _forget(self, key: str) -> list[PodInfo]:
        """Drop a policy's planned part (its users' counts) -> the pods it selected."""
        old = self.planned.pop(key, None)
        if old is None:
            return []
        for pk in old.peers:
            self.peers[pk].users.discard(key)
        for name in old.sets:
            self.set_users[name].discard(key)
        for nk in old.named:
            self.named[nk].users.discard(key)
        return old.selected

    def _replan(self, cluster: Cluster, key: str) -> list[PodInfo]:
        """Plan one policy again -> the pods whose chains may change."""
        before = self.planned.get(key)  # _forget drops it: its chains keep their identity when equal
        pods = self._forget(key)
        pol = self.policies.get(key)
        if pol is None:
            return pods
        selected = selected_pods(cluster, pol, self.node)
        if not selected:
            return pods
        cluster.peers_used, cluster.sets_used, cluster.pairs_used = set(), set(), set()
        chains = policy_chains(cluster, pol, selected)
        specs = _peers_of(pol)
        for pk in cluster.peers_used:
            ns, spec = specs[pk]
            peer = self.peers.get(pk)
            if peer is None:
                nets = tuple(ip_block(spec["ipBlock"])) if spec.get("ipBlock") is not None else ()
                spans = tuple((int(n.network_address), int(n.broadcast_address)) for n in nets)
                peer = self.peers[pk] = _Peer(ns, spec, None, nets, spans)
            peer.ref = peer_ref(cluster, ns, spec)  # memoised: what the chains just used
            peer.users.add(key)
        for name in cluster.sets_used:
            self._keep_set(name, cluster.sets[name])
            self.set_users.setdefault(name, set()).add(key)
        for nk in cluster.pairs_used:
            entry = self.named.setdefault(nk, _Named(None))
            entry.ref = cluster.named[nk]
            entry.users.add(key)
        old = before.chains if before is not None else {}
        chains = {n: old[n] if old.get(n) == c else c for n, c in chains.items()}
        self.planned[key] = _Planned(
            selected,
            chains,
            set(cluster.peers_used),
            set(cluster.sets_used),
            set(cluster.pairs_used),
            [p.key for p in selected],
        )
        return pods + selected

    def _keep_set(self, name: str, s: NamedSet) -> None:
        if self.sets.get(name) != s:  # an equal one keeps its identity (diff compares by it)
            self.sets[name] = s

    def _local(self, key: str) -> PodInfo | None:
        """The pod as it runs here now (None: gone, no IP of its own, or elsewhere)."""
        ip = self.ip_of.get(key)
        info = self.live.get(ip) if ip is not None else None
        return info if info is not None and info.key == key and info.node == self.node else None

    def _pod_chains(self, key: str) -> None:
        p = self._local(key)
        mine: dict[str, tuple[str, Chain]] = {}
        if p is not None:
            pols = [k for k in sorted(self.by_ns.get(p.ns, ())) if k in self.planned]
            pols = [k for k in pols if any(s.key == key for s in self.planned[k].selected)]
            for direction, prefix in (("ingress", "policy-in"), ("egress", "policy-eg")):
                jumps = [n for k in pols for n in self.planned[k].chains if n.startswith(prefix)]
                if jumps:
                    new = pod_chain(p, direction, jumps)
                    old = self.pod_chains.get(key, {}).get(direction)
                    mine[direction] = old if old == new else new  # keep the identity: diff compares by it
        if mine:
            self.pod_chains[key] = mine
        else:
            self.pod_chains.pop(key, None)

    def plan(self) -> Plan:
        pods = self._apply_pods()
        nss = self._apply_namespaces()
        replan = self._apply_policies()
        live = sorted(self.live.values(), key=lambda i: (i.ns, i.name))
        labels = {p.ns: self._labels(p.ns) for p in live}
        cluster = Cluster(live, dict(self.ns_labels, **labels))
        # policies whose selection may change: a pod of theirs, here, changed
        for p in pods:
            if p.node == self.node:
                for k in self.by_ns.get(p.ns, ()):
                    if matches((self.policies[k].get("spec") or {}).get("podSelector") or {}, p.labels):
                        replan.add(k)
        # named ports on every pod: a pod came, went, or changed its IP or ports
        old_sig = sorted((str(p.ip), p.key, p.ports) for p in pods if self.live.get(p.ip) is not p)
        new_sig = sorted((str(p.ip), p.key, p.ports) for p in pods if self.live.get(p.ip) is p)
        # peers that may name other pods now
        touched = set()
        for pk, peer in list(self.peers.items()):
            if not peer.users:
                del self.peers[pk]
                continue
            if not self._touched(peer, pods, nss):
                continue
            touched.add(pk)
            cluster.peers_used, cluster.sets_used = set(), set()
            new = peer_ref(cluster, peer.ns, peer.spec)
            if _shape(new) != _shape(peer.ref):
                replan |= peer.users
            else:
                for name in cluster.sets_used:
                    self._keep_set(name, cluster.sets[name])
            peer.ref = new
        # named ports on pods that may have come, gone or changed: as peers
        for nk, entry in list(self.named.items()):
            group = nk[0]
            if not entry.users:
                del self.named[nk]
                continue
            if group == ALL and old_sig != new_sig:
                targets = cluster.pods
            elif group in touched and (ref := self.peers[group].ref) is not None:
                targets = ref[1]
            else:
                continue  # untouched; a selection's: its policies are re-planned with it (above)
            cluster.sets_used = set()
            new_ref = named_ref(cluster, targets, *nk)
            if new_ref != entry.ref:
                replan |= entry.users
            else:
                for name in cluster.sets_used:
                    self._keep_set(name, cluster.sets[name])
            entry.ref = new_ref
        redo = {p.key for p in pods}
        for key in sorted(replan):
            redo |= {p.key for p in self._replan(cluster, key)}
        for name in [n for n, users in self.set_users.items() if not users]:
            del self.set_users[name]
            self.sets.pop(name, None)
        for key in redo:
            self._pod_chains(key)
        return self._assemble(cluster)

    def _assemble(self, cluster: Cluster) -> Plan:
        out = Plan(node_ips=self.node_ips)
        for key in sorted(self.planned):
            planned = self.planned[key]
            out.selected[key] = list(planned.keys)
            out.chains.update(planned.chains)
        for p in cluster.pods:
            mine = self.pod_chains.get(p.key)
            if not mine or p.node != self.node:
                continue
            for direction, table in (("ingress", out.ingress_pods), ("egress", out.egress_pods)):
                if direction in mine:
                    name, out.chains[name] = mine[direction]
                    table[p.ip] = name
        out.sets = {n: self.sets[n] for n in sorted(self.set_users)}
        return out
