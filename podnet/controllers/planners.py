"""The controllers' decisions, as pure functions of cluster state.

Each takes lists of objects (dicts) and returns what should change; the
manager (manager.py) reads the store, calls these, and writes the result.
Nothing here does I/O, so every rule is unit-tested without a cluster.
"""

import hashlib
import ipaddress
import json
from collections.abc import Iterable, Sequence

from podnet.api import Obj, matches_map

CLUSTER_CIDR = "10.244.0.0/16"
NODE_PREFIX = 24


class Exhausted(Exception):
    pass


# ---- node podCIDRs ------------------------------------------------------------


def plan_pod_cidrs(nodes: Sequence[Obj], cluster_cidr: str = CLUSTER_CIDR, prefix: int = NODE_PREFIX) -> dict[str, str]:
    """{node name: podCIDR} for nodes that have none; raises Exhausted."""
    net = ipaddress.ip_network(cluster_cidr)
    used = {n["spec"].get("podCIDR") for n in nodes if n.get("spec", {}).get("podCIDR")}
    free = (str(s) for s in net.subnets(new_prefix=prefix) if str(s) not in used)
    out: dict[str, str] = {}
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        if node.get("spec", {}).get("podCIDR"):
            continue
        cidr = next(free, None)
        if cidr is None:
            raise Exhausted(
                "cluster CIDR %s has no free /%d left for node %s" % (cluster_cidr, prefix, node["metadata"]["name"])
            )
        out[node["metadata"]["name"]] = cidr
    return out


# ---- placement ---------------------------------------------------------------


def node_ready(node: Obj) -> bool:
    for c in node.get("status", {}).get("conditions", []):
        if c.get("type") == "Ready":
            status: str | None = c.get("status")
            return status == "True"
    return False


def host_ports(pod: Obj) -> list[tuple[str, str, int]]:
    """(hostIP, protocol, hostPort) of each container port that asks for one."""
    out: list[tuple[str, str, int]] = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", int(p["hostPort"])))
    return out


def _ports_conflict(want: list[tuple[str, str, int]], used: list[tuple[str, str, int]]) -> bool:
    """HostPortInfo.CheckConflict: same protocol and port, and the same
    hostIP or either one 0.0.0.0."""
    return any(
        wp == up and wproto == uproto and (wip == uip or "0.0.0.0" in (wip, uip))
        for wip, wproto, wp in want
        for uip, uproto, up in used
    )


NO_FREE_PORTS = "didn't have free ports for the requested pod ports"
NOT_SELECTED = "no Ready node with a podCIDR matches the pod's nodeSelector"


def place(pod: Obj, nodes: Iterable[Obj], pods: Iterable[Obj]) -> tuple[str | None, str]:
    """-> (node name, "") or (None, why) as kube-scheduler's FailedScheduling
    says it: spec.nodeSelector, Ready nodes with a podCIDR, free hostPorts
    (the NodePorts filter: a live pod bound to the node holds the same
    hostIP/protocol/port), then the node with the fewest pods of the same
    owner (replicas spread over nodes, as the default scheduler's pod
    topology spread does), then the least-loaded (ties by name)."""
    nodes = list(nodes)
    want = pod["spec"].get("nodeSelector") or {}
    ports = host_ports(pod)
    owner = _owner_uid(pod)
    load: dict[str, int] = {}
    siblings: dict[str, int] = {}
    used: dict[str, list[tuple[str, str, int]]] = {}
    for p in pods:
        n = p["spec"].get("nodeName")
        if n and p["metadata"].get("uid", p["metadata"]["name"]) != pod["metadata"].get("uid", pod["metadata"]["name"]):
            load[n] = load.get(n, 0) + 1
            if owner is not None and _owner_uid(p) == owner:
                siblings[n] = siblings.get(n, 0) + 1
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                used.setdefault(n, []).extend(host_ports(p))
    eligible = [
        n
        for n in nodes
        if node_ready(n)
        and n["spec"].get("podCIDR")
        and all(n["metadata"].get("labels", {}).get(k) == v for k, v in want.items())
    ]
    fits = [n for n in eligible if not (ports and _ports_conflict(ports, used.get(n["metadata"]["name"], [])))]
    if not fits:
        if eligible:
            why = "0/%d nodes are available: %d node(s) %s" % (len(nodes), len(eligible), NO_FREE_PORTS)
            if len(eligible) < len(nodes):
                why += ", %d node(s) %s" % (len(nodes) - len(eligible), "not Ready, without a podCIDR or not selected")
            return None, why
        return None, "0/%d nodes are available: %s" % (len(nodes), NOT_SELECTED)
    chosen: str = min(
        fits,
        key=lambda n: (
            siblings.get(n["metadata"]["name"], 0),
            load.get(n["metadata"]["name"], 0),
            n["metadata"]["name"],
        ),
    )["metadata"]["name"]
    return chosen, ""


def choose_node(pod: Obj, nodes: Iterable[Obj], pods: Iterable[Obj]) -> str | None:
    """place() without the reason; None when nothing fits."""
    return place(pod, nodes, pods)[0]


def _owner_uid(pod: Obj) -> str | None:
    refs = pod["metadata"].get("ownerReferences") or []
    uid: str | None = refs[0].get("uid") if refs else None
    return uid


# ---- pods --------------------------------------------------------------------


def pod_ready(pod: Obj) -> bool:
    for c in pod.get("status", {}).get("conditions", []):
        if c.get("type") == "Ready":
            status: str | None = c.get("status")
            return status == "True"
    return False


# ---- endpointslices ---------------------------------------------------------------


def target_port(pod: Obj, svc_port: Obj) -> int | None:
    """A Service port's targetPort in `pod`: a number, or a name looked up
    among the pod's containerPorts of the same protocol (None: no such port)."""
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in pod["spec"].get("containers", []):
        for p in c.get("ports", []):
            if p.get("name") == target and p.get("protocol", "TCP") == svc_port.get("protocol", "TCP"):
                port: int = p["containerPort"]
                return port
    return None


def should_set_hostname(pod: Obj, svc: Obj) -> bool:
    """An endpoint carries the pod's hostname (and so gets the DNS name
    <hostname>.<svc>.<ns>.svc.<zone>) only when the pod's subdomain names this
    Service, in its namespace: the EndpointSlice controller's ShouldSetHostname.
    A pod selected by several Services is named in one of them at most."""
    spec = pod.get("spec") or {}
    return (
        bool(spec.get("hostname"))
        and spec.get("subdomain") == svc["metadata"]["name"]
        and pod["metadata"].get("namespace") == svc["metadata"].get("namespace")
    )


def plan_endpointslices(svc: Obj, pods: Iterable[Obj]) -> list[Obj]:
    """The EndpointSlices a Service with a selector should have (one per
    distinct port mapping, as pods may resolve a named targetPort differently)."""
    spec = svc["spec"]
    if not spec.get("selector") or spec.get("type") == "ExternalName":
        return []
    ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
    groups: dict[str, tuple[list[Obj], list[Obj]]] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if pod["metadata"].get("namespace") != ns or not pod.get("status", {}).get("podIP"):
            continue
        if not matches_map(spec["selector"], pod["metadata"].get("labels", {})):
            continue
        ports: list[Obj] = []
        for sp in spec.get("ports", []):
            port = target_port(pod, sp)
            if port is not None:
                ep_port = {"name": sp.get("name", ""), "port": port, "protocol": sp.get("protocol", "TCP")}
                if sp.get("appProtocol"):  # carried over as the EndpointSlice controller does
                    ep_port["appProtocol"] = sp["appProtocol"]
                ports.append(ep_port)
        if not ports and spec.get("ports"):
            continue
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        serving = pod_ready(pod)
        # as the EndpointSlice controller's podToEndpoint: a Service that
        # publishes not-ready addresses gets every endpoint marked ready, so
        # the proxy sends to it too (and the DNS lists it)
        ready = bool(spec.get("publishNotReadyAddresses")) or (serving and not terminating)
        ep: Obj = {
            "addresses": [pod["status"]["podIP"]],
            "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
            "nodeName": pod["spec"].get("nodeName"),
            "targetRef": {
                "kind": "Pod",
                "namespace": ns,
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"].get("uid"),
            },
        }
        if should_set_hostname(pod, svc):
            ep["hostname"] = pod["spec"]["hostname"]
        key = json.dumps(ports, sort_keys=True)
        groups.setdefault(key, (ports, []))[1].append(ep)
    if not groups:  # as Kubernetes: one empty slice says "no endpoints" explicitly
        groups["[]"] = ([], [])
    slices: list[Obj] = []
    for key in sorted(groups):
        ports, eps = groups[key]
        suffix = hashlib.sha1(key.encode()).hexdigest()[:5]
        slices.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "%s-%s" % (name, suffix),
                    "namespace": ns,
                    "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "podnet"},
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Service",
                            "name": name,
                            "uid": svc["metadata"].get("uid"),
                            "controller": True,
                        }
                    ],
                },
                "addressType": "IPv4",
                "endpoints": eps,
                "ports": ports,
            }
        )
    return slices


# ---- LoadBalancer ingress IPs ------------------------------------------------

LB_POOL = "192.168.200.240/28"


def plan_endpoints(slices: Iterable[Obj]) -> list[Obj]:
    """The legacy Endpoints of each Service, mirrored from its EndpointSlices
    (kubectl get endpoints, describe svc): one subset per slice, ready
    addresses apart from the others. -> Endpoints objects (no server fields),
    sorted by namespace and name."""
    by: dict[tuple[str, str], Obj] = {}
    for sl in slices:
        meta = sl.get("metadata") or {}
        svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not svc:
            continue
        key = (str(meta.get("namespace") or "default"), str(svc))
        ep = by.setdefault(
            key,
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {
                    "name": key[1],
                    "namespace": key[0],
                    "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
                },
                "subsets": [],
            },
        )
        ready: list[Obj] = []
        notready: list[Obj] = []
        for e in sl.get("endpoints") or []:
            for a in e.get("addresses") or []:
                addr: Obj = {"ip": a}
                for f in ("nodeName", "targetRef", "hostname"):
                    if e.get(f):
                        addr[f] = e[f]
                (ready if (e.get("conditions") or {}).get("ready") else notready).append(addr)
        if not ready and not notready:
            continue
        subset: Obj = {
            "ports": [
                {
                    k: v
                    for k, v in (
                        ("name", p.get("name")),
                        ("port", p.get("port")),
                        ("protocol", p.get("protocol", "TCP")),
                        ("appProtocol", p.get("appProtocol")),
                    )
                    if v
                }
                for p in sl.get("ports") or []
            ]
        }
        if ready:
            subset["addresses"] = ready
        if notready:
            subset["notReadyAddresses"] = notready
        ep["subsets"].append(subset)
    return [by[k] for k in sorted(by)]


def _lb_ip(svc: Obj) -> str | None:
    ing = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ip: str | None = ing[0].get("ip") if ing else None
    return ip


def plan_lb_ips(services: Iterable[Obj], pool: str = LB_POOL) -> dict[tuple[str | None, str], str | None]:
    """{(namespace, name): ip or None} for Services whose LoadBalancer ingress
    must change: a LoadBalancer without one gets spec.loadBalancerIP when that
    is in the pool and free, else the lowest free address; a Service that is
    no longer a LoadBalancer (or holds an IP outside the pool) gives it back.
    Raises Exhausted naming the Service when the pool is used up."""
    net = ipaddress.ip_network(pool)
    changes: dict[tuple[str | None, str], str | None] = {}
    used: set[str] = set()
    lbs: list[tuple[tuple[str | None, str], Obj]] = []
    for s in sorted(services, key=lambda s: (s["metadata"].get("namespace", ""), s["metadata"]["name"])):
        key = (s["metadata"].get("namespace"), s["metadata"]["name"])
        ip = _lb_ip(s)
        if (s.get("spec") or {}).get("type") != "LoadBalancer":
            if ip is not None:
                changes[key] = None
            continue
        if ip is not None and ipaddress.ip_address(ip) in net and ip not in used:
            used.add(ip)
        else:
            lbs.append((key, s))
            if ip is not None:
                changes[key] = None
    free = [str(h) for h in net.hosts() if str(h) not in used]
    for key, s in lbs:
        want = (s.get("spec") or {}).get("loadBalancerIP")
        if want and want in free:
            ip = want
        elif free:
            ip = free[0]
        else:
            raise Exhausted("service %s/%s: no free LoadBalancer IP left in %s" % (key[0], key[1], pool))
        free.remove(ip)
        changes[key] = ip
    return changes
