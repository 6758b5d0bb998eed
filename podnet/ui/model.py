"""The picture the web view draws, as one JSON-able document built from the
API's objects (pure: no I/O, so it is unit-tested with plain dicts).

    {lab, routing, underlay, external, nodes: [{name, ip, ready, podCIDR,
     backend, bgp: [{peer, state}], pods: [{key, name, namespace, ip, ready,
     phase, policies}]}], unscheduled: [pods], services: [{key, name,
     namespace, type, clusterIP, ports, endpoints: [{ip, ready, pod, node}]}],
     policies: [{key, name, namespace, types, pods}]}

The browser re-renders from the whole document on every change (level
triggered, as the reconcilers are): a missed event can never leave the page
wrong, only late.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from podnet.api.selectors import matches

Obj = dict[str, Any]
ANN_BACKEND = "podnet.io/backend-type"  # as podnet/routing/planner.py writes them on the Node
ANN_BGP = "podnet.io/bgp-sessions"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def key(obj: Obj) -> str:
    m = _meta(obj)
    return "%s/%s" % (m.get("namespace"), m.get("name")) if m.get("namespace") else str(m.get("name"))


def _condition(obj: Obj, kind: str) -> bool:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c.get("status") == "True"
    return False


def bgp_sessions(text: str | None) -> list[Obj]:
    """ "192.168.200.12=Established,192.168.200.13=Active" -> [{peer, state}];
    a text that is not that list (BIRD not answering yet) is one entry with
    peer "" and the text as its state, so the page shows it as it is."""
    if not text:
        return []
    out = []
    for part in text.split(","):
        peer, sep, state = part.partition("=")
        if not sep:
            return [{"peer": "", "state": text}]
        out.append({"peer": peer.strip(), "state": state.strip()})
    return out


def gateway(cidr: str | None) -> str | None:
    """The node's own address on its pods' bridge (the CIDR's first): what
    kubelet's probes come from."""
    try:
        return str(ipaddress.ip_network(cidr or "")[1])
    except (ValueError, IndexError):
        return None


def node_view(node: Obj) -> Obj:
    m = _meta(node)
    ann = m.get("annotations") or {}
    addrs = (node.get("status") or {}).get("addresses") or []
    ip = next((a.get("address") for a in addrs if a.get("type") == "InternalIP"), None)
    return {
        "name": m.get("name"),
        "ip": ip,
        "ready": _condition(node, "Ready"),
        "podCIDR": (node.get("spec") or {}).get("podCIDR"),
        "gateway": gateway((node.get("spec") or {}).get("podCIDR")),
        "backend": ann.get(ANN_BACKEND),
        "bgp": bgp_sessions(ann.get(ANN_BGP)),
        "pods": [],
    }


def policy_selects(pol: Obj, pod: Obj) -> bool:
    """A NetworkPolicy selects the pods of its own namespace that its
    podSelector matches (an empty selector: all of them)."""
    if _meta(pol).get("namespace") != _meta(pod).get("namespace"):
        return False
    sel = (pol.get("spec") or {}).get("podSelector")
    return matches(sel if sel is not None else {}, _meta(pod).get("labels"))


def pod_view(pod: Obj, policies: list[Obj]) -> Obj:
    m, st = _meta(pod), pod.get("status") or {}
    return {
        "key": key(pod),
        "name": m.get("name"),
        "namespace": m.get("namespace"),
        "ip": st.get("podIP"),
        "phase": st.get("phase") or "Pending",
        "ready": _condition(pod, "Ready"),
        "deleting": bool(m.get("deletionTimestamp")),
        "policies": [key(p) for p in policies if policy_selects(p, pod)],
    }


def service_view(svc: Obj, slices: list[Obj], pods_by_ip: dict[str, Obj]) -> Obj:
    m, spec = _meta(svc), svc.get("spec") or {}
    eps = []
    for sl in slices:
        sm = _meta(sl)
        if sm.get("namespace") != m.get("namespace") or (sm.get("labels") or {}).get(SERVICE_NAME_LABEL) != m.get(
            "name"
        ):
            continue
        for ep in sl.get("endpoints") or []:
            for ip in ep.get("addresses") or []:
                ref = ep.get("targetRef") or {}
                pod = pods_by_ip.get(ip)
                eps.append(
                    {
                        "ip": ip,
                        "ready": (ep.get("conditions") or {}).get("ready") is not False,
                        "pod": key(pod)
                        if pod
                        else ("%s/%s" % (ref.get("namespace"), ref["name"]) if ref.get("name") else None),
                        "node": ep.get("nodeName"),
                    }
                )
    lb = [i.get("ip") for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
    return {
        "key": key(svc),
        "name": m.get("name"),
        "namespace": m.get("namespace"),
        "type": spec.get("type") or "ClusterIP",
        "clusterIP": spec.get("clusterIP"),
        "loadBalancer": [ip for ip in lb if ip],
        "ports": [
            {
                "port": p.get("port"),
                "protocol": p.get("protocol") or "TCP",
                "targetPort": p.get("targetPort"),
                "nodePort": p.get("nodePort"),
            }
            for p in spec.get("ports") or []
        ],
        "endpoints": sorted(eps, key=lambda e: e["ip"]),
    }


def policy_view(pol: Obj, pods: list[Obj]) -> Obj:
    spec = pol.get("spec") or {}
    types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
    return {
        "key": key(pol),
        "name": _meta(pol).get("name"),
        "namespace": _meta(pol).get("namespace"),
        "types": types,
        "pods": sorted(key(p) for p in pods if policy_selects(pol, p)),
    }


def snapshot(
    lab: Obj, nodes: list[Obj], pods: list[Obj], services: list[Obj], slices: list[Obj], policies: list[Obj]
) -> Obj:
    """The page's whole document from the lab file and the API's lists."""
    views = {n["name"]: n for n in (node_view(o) for o in sorted(nodes, key=key))}
    unscheduled: list[Obj] = []
    live = [p for p in sorted(pods, key=key) if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    for p in live:
        pv = pod_view(p, policies)
        node = (p.get("spec") or {}).get("nodeName")
        (views[node]["pods"] if node in views else unscheduled).append(pv)
    pods_by_ip = {str(p["status"]["podIP"]): p for p in live if (p.get("status") or {}).get("podIP")}
    return {
        "lab": lab.get("name"),
        "routing": (lab.get("routing") or {}).get("mode") or "vxlan",
        "encryption": lab.get("encryption") or "none",
        "underlay": (lab.get("underlay") or {}).get("cidr"),
        "clusterCIDR": lab.get("clusterCIDR"),
        "external": {"name": "external", "ip": (lab.get("external") or {}).get("ip")},
        "nodes": list(views.values()),
        "unscheduled": unscheduled,
        "services": [service_view(s, slices, pods_by_ip) for s in sorted(services, key=key)],
        "policies": [policy_view(p, live) for p in sorted(policies, key=key)],
    }
