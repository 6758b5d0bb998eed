"""The cluster as the policy planner sees it: live pods, namespaces' labels,
and selector lookups over one snapshot, memoised (podnet.policy.planner
plans from a Cluster; podnet.policy.incremental builds one per change).
Pure: nothing here does I/O."""

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar, cast

from podnet.api.selectors import matches
from podnet.api.types import Obj

IPv4 = ipaddress.IPv4Address
Net = ipaddress.IPv4Network
Addrs = tuple[Net, ...] | str | None
"""Addresses a rule matches: disjoint networks inline, a named set, or None (any)."""
Pairs = tuple[tuple[IPv4, int], ...]
"""Named-port destinations: (pod IP, containerPort) pairs."""

NS_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server


@dataclass(frozen=True)
class NamedSet:
    comment: str
    type: str  # "ipv4_addr" (pod addresses), "ipv4_addr interval" (networks) or "ipv4_addr . inet_service"
    elements: tuple[Net, ...] | Pairs  # ip_networks, or (ip_address, port) pairs


def _meta(obj: Obj) -> Obj:
    meta: Obj = obj.get("metadata") or {}
    return meta


def _ipv4(text: object) -> IPv4 | None:
    try:
        ip = ipaddress.ip_address(str(text))
    except ValueError:
        return None
    return ip if isinstance(ip, IPv4) else None


@dataclass(frozen=True)
class PodInfo:
    ns: str
    name: str
    ip: ipaddress.IPv4Address
    node: str
    labels: dict[str, str]
    ports: tuple[tuple[str, str, int], ...]  # ((name, protocol lowercase, containerPort), ...)

    @property
    def key(self) -> str:
        return "%s/%s" % (self.ns, self.name)


Rank = tuple[bool, str, str]


def pod_info(p: Obj) -> tuple[Rank, PodInfo] | None:
    """A pod that owns an IP on the pod network (podIP set, not hostNetwork,
    not finished) and its rank among pods with that IP; else None."""
    m, spec, st = _meta(p), p.get("spec") or {}, p.get("status") or {}
    ip = _ipv4(st.get("podIP"))
    if ip is None or spec.get("hostNetwork") or st.get("phase") in ("Succeeded", "Failed"):
        return None
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
    return (m.get("deletionTimestamp") is None, m.get("creationTimestamp") or "", info.key), info


def live_pods(pods: Iterable[Obj]) -> list[PodInfo]:
    """Pods that own an IP on the pod network (pod_info). Two pods with one IP
    (a reused address while the old pod is still terminating) count once:
    the newest, not terminating, wins."""
    best: dict[IPv4, tuple[Rank, PodInfo]] = {}
    for p in pods:
        got = pod_info(p)
        if got is not None and (got[1].ip not in best or got[0] > best[got[1].ip][0]):
            best[got[1].ip] = got
    return sorted((info for _, info in best.values()), key=lambda i: (i.ns, i.name))


def namespace_labels(
    namespaces: Iterable[Obj], pods: Iterable[Obj], policies: Iterable[Obj]
) -> dict[str, dict[str, str]]:
    """Every namespace we know of -> its labels, with kubernetes.io/metadata.name
    as the API server sets it (also for namespaces that have no object here)."""
    out: dict[str, dict[str, str]] = {}
    for n in namespaces:
        name = cast(str, _meta(n).get("name"))  # validated: every Namespace has a name
        out[name] = dict(_meta(n).get("labels") or {}, **{NS_NAME_LABEL: name})
    for o in list(pods) + list(policies):
        ns = _meta(o).get("namespace") or "default"
        out.setdefault(ns, {NS_NAME_LABEL: ns})
    return out


_T = TypeVar("_T")

PeerRef = tuple[Addrs, list[PodInfo]]
"""A peer's addresses (as a rule matches them) and its pods."""


class Cluster:
    """Selector lookups over one snapshot, memoised (1,000 policies share few selectors)."""

    def __init__(self, pods: list[PodInfo], ns_labels: dict[str, dict[str, str]]):
        self.pods, self.ns_labels = pods, ns_labels
        self.by_ns: dict[str, list[PodInfo]] = {}
        for p in pods:
            self.by_ns.setdefault(p.ns, []).append(p)
        self._memo: dict[tuple[str, ...], object] = {}
        self.sets: dict[str, NamedSet] = {}  # named sets the rules refer to
        # what planning one policy looked up (podnet.policy.incremental keeps
        # it to know which policies a change touches): peer keys, set names
        self.peers_used: set[str] = set()
        self.sets_used: set[str] = set()
        self.pairs_used: set[tuple[str, str, str]] = set()  # named ports: (targets' group, name, protocol)
        self.named: dict[tuple[str, str, str], Pairs | str | None] = {}  # their pairs (planner.named_ref)

    def _cached(self, key: tuple[str, ...], fn: Callable[[], _T]) -> _T:
        if key not in self._memo:
            self._memo[key] = fn()
        return cast(_T, self._memo[key])  # each key has one kind of value

    def in_namespace(self, ns: str, selector: Obj | None) -> list[PodInfo]:
        return self._cached(
            ("pods", ns, repr(selector)), lambda: [p for p in self.by_ns.get(ns, []) if matches(selector, p.labels)]
        )

    def namespaces(self, selector: Obj | None) -> list[str]:
        return self._cached(
            ("ns", repr(selector)), lambda: sorted(n for n, lab in self.ns_labels.items() if matches(selector, lab))
        )

    def peer_pods(self, ns: str, peer: Obj) -> list[PodInfo]:
        """Pods a podSelector/namespaceSelector peer names (policy namespace ns)."""
        pod_sel = peer.get("podSelector")
        if peer.get("namespaceSelector") is None:
            return self.in_namespace(ns, pod_sel)
        return [
            p
            for n in self.namespaces(peer["namespaceSelector"])
            for p in self.in_namespace(n, {} if pod_sel is None else pod_sel)
        ]


def node_addresses(node_obj: Obj | None) -> list[str]:
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
