"""What a Service and its EndpointSlices say, read for the proxy's planner:
the endpoints of one service port (ready ones, else serving-and-terminating
ones), session affinity, external addresses, loadBalancerSourceRanges and
the firewall rules they make. Pure; parsing is most of a plan's cost, so
addresses are parsed once (cached).
"""

import functools
import ipaddress
import socket
from collections.abc import Iterable
from typing import TypedDict

from podnet.api.types import Obj

DEFAULT_AFFINITY_TIMEOUT = 10800
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

_PROTOS = {None: "tcp", "": "tcp", "TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


def l4proto(p: str | None) -> str:
    got = _PROTOS.get(p)
    return got if got is not None else str(p).lower()


@functools.lru_cache(maxsize=1 << 16)
def ipv4(text: object) -> str | None:
    """The canonical text of an IPv4 address, or None. Cached: the same
    addresses come back in every plan, and parsing is most of a plan's cost."""
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, str(text)))
    except (OSError, ValueError):
        return None


def port_of(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536 else None


class Endpoint(TypedDict):
    ip: str
    port: int
    ready: bool
    serving: bool
    terminating: bool
    local: bool  # on this node


def conditions(ep: Obj) -> tuple[bool, bool, bool]:
    c = ep.get("conditions") or {}
    ready = c.get("ready")
    ready = True if ready is None else bool(ready)
    serving = c.get("serving")
    serving = ready if serving is None else bool(serving)
    return ready, serving, bool(c.get("terminating"))


def usable_endpoints(eps: list[Endpoint]) -> list[Endpoint]:
    ready = [e for e in eps if e["ready"]]
    return ready or [e for e in eps if e["serving"] and e["terminating"]]


def slices_by_service(slices: Iterable[Obj] | None) -> dict[tuple[str | None, str], list[Obj]]:
    """{(namespace, service name): [slices]}: one pass, so planning N services
    never scans every slice N times."""
    out: dict[tuple[str | None, str], list[Obj]] = {}
    for sl in slices or []:
        meta = sl.get("metadata", {})
        name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if name:
            out.setdefault((meta.get("namespace"), name), []).append(sl)
    return out


def endpoints_for(svc_port: Obj, slices: Iterable[Obj], node_name: str | None) -> list[Endpoint]:
    """[{ip, port, ready, serving, terminating, local}] for one service port, sorted."""
    name, proto = svc_port.get("name", "") or "", l4proto(svc_port.get("protocol"))
    found: dict[tuple[str, int], Endpoint] = {}
    for sl in slices:
        if sl.get("addressType", "IPv4") != "IPv4":
            continue
        target = None
        for p in sl.get("ports") or []:
            if (p.get("name") or "") == name and l4proto(p.get("protocol")) == proto and port_of(p.get("port")):
                target = p["port"]
                break
        if target is None:
            continue
        for ep in sl.get("endpoints") or []:
            ip = ipv4((ep.get("addresses") or [None])[0])
            if ip is None:
                continue
            ready, serving, terminating = conditions(ep)
            rec: Endpoint = {
                "ip": ip,
                "port": target,
                "ready": ready,
                "serving": serving,
                "terminating": terminating,
                "local": bool(node_name) and ep.get("nodeName") == node_name,
            }
            key = (ip, target)
            old = found.get(key)  # the same endpoint in two slices: the more usable one wins
            if old is None or (rec["ready"], rec["serving"]) > (old["ready"], old["serving"]):
                found[key] = rec
    return [found[k] for k in sorted(found)]


def affinity_timeout(spec: Obj) -> int | None:
    if spec.get("sessionAffinity") != "ClientIP":
        return None
    cfg = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
    t = cfg.get("timeoutSeconds")
    return t if isinstance(t, int) and not isinstance(t, bool) and t > 0 else DEFAULT_AFFINITY_TIMEOUT


def external_addresses(svc: Obj) -> list[str]:
    """The service's externalIPs and LoadBalancer ingress IPs (IPv4), sorted."""
    spec, status = svc.get("spec") or {}, svc.get("status") or {}
    ips: set[str | None] = set()
    for x in spec.get("externalIPs") or []:
        ips.add(ipv4(x))
    if spec.get("type") == "LoadBalancer":
        for ing in (status.get("loadBalancer") or {}).get("ingress") or []:
            ips.add(ipv4(ing.get("ip")))
    return sorted(ip for ip in ips if ip is not None)


def source_ranges(svc: Obj) -> list[ipaddress.IPv4Network]:
    """A LoadBalancer's spec.loadBalancerSourceRanges, IPv4 ones, in order.
    As kube-proxy: padded entries are trimmed, host bits dropped, what does
    not parse skipped; the annotation of the same name is for cloud load
    balancers, not the proxy."""
    spec = svc.get("spec") or {}
    if spec.get("type") != "LoadBalancer":
        return []
    out: list[ipaddress.IPv4Network] = []
    for x in spec.get("loadBalancerSourceRanges") or []:
        try:
            net = ipaddress.ip_network(str(x).strip(), strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network) and net not in out:
            out.append(net)
    return out


def lb_ips(svc: Obj) -> list[str]:
    status = svc.get("status") or {}
    ips = {ipv4(ing.get("ip")) for ing in (status.get("loadBalancer") or {}).get("ingress") or []}
    return sorted(ip for ip in ips if ip is not None)


def firewall_rules(svc: Obj, node_ips: Iterable[str]) -> tuple[list[str], tuple[str, ...]] | None:
    """(LoadBalancer IPs, rules of the chain that drops sources outside
    loadBalancerSourceRanges), or None when the Service has no such check.
    The node itself is allowed when one of its addresses is in a range; its
    own connections to an IP it holds come from that IP, so those are
    allowed too then (kube-proxy's allowFromNode)."""
    ranges = source_ranges(svc)
    lbs = lb_ips(svc) if ranges else []
    if not lbs:
        return None
    rules = ["ip saddr %s return" % net for net in ranges]
    mine = [ipaddress.IPv4Address(ip) for ip in (ipv4(x) for x in node_ips) if ip is not None]
    if any(ip in net for ip in mine for net in ranges):
        rules += ["ip saddr %s return" % ip for ip in lbs]
    rules.append("drop")
    return lbs, tuple(rules)


def service_key(svc: Obj) -> str:
    m = svc.get("metadata", {})
    return "%s/%s" % (m.get("namespace", ""), m.get("name", ""))
