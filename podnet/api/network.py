"""Validation and defaults of Service, NetworkPolicy, EndpointSlice and Node."""

import ipaddress

from podnet.api import support
from podnet.api.fields import (
    Check,
    IPNetwork,
    check_port_or_name,
    index,
    ip_error,
    join,
    need_map,
    opt_bool,
    opt_enum,
    opt_int,
    opt_list,
    opt_map,
    opt_maps,
    opt_str,
    parse_cidr,
    protocol,
    shown,
    str_list,
    str_map,
)
from podnet.api.meta import dns_label, dns_subdomain, fail, label_key
from podnet.api.selectors import check_selector
from podnet.api.types import Obj

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
TRAFFIC_POLICIES = ("Cluster", "Local")
NODE_PORTS = (30000, 32767)
# the cloud providers' older spelling of spec.loadBalancerSourceRanges (comma-separated)
SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"


# ---- Service ------------------------------------------------------------------


def _service_ports(spec: Obj, stype: str, needed: bool) -> None:
    ports = opt_maps(spec, "ports", "spec", required=needed, nonempty=needed)
    names: dict[str, str] = {}
    seen: dict[tuple[int, str], str] = {}
    node_ports: dict[tuple[int, str], str] = {}
    for port, p in ports:
        support.check(port, p, "ServicePort")
        name = opt_str(port, "name", p, check=lambda v: v and dns_label(v))
        num = opt_int(port, "port", p, 1, 65535, required=True)
        proto = protocol(port, p)
        if port.get("targetPort") is None:
            port["targetPort"] = num
        check_port_or_name(port["targetPort"], join(p, "targetPort"))
        np = opt_int(port, "nodePort", p, *NODE_PORTS)
        if np is not None:
            if stype not in ("NodePort", "LoadBalancer"):
                fail(join(p, "nodePort"), "may only be set for NodePort or LoadBalancer services (type is %s)" % stype)
            if (np, proto) in node_ports:
                fail(join(p, "nodePort"), "duplicate nodePort %d/%s (also %s)" % (np, proto, node_ports[(np, proto)]))
            node_ports[(np, proto)] = p
        opt_str(port, "appProtocol", p)
        if len(ports) > 1 and not name:
            fail(join(p, "name"), "required when the service has more than one port")
        if name:
            if name in names:
                fail(join(p, "name"), "duplicate port name %s (also %s)" % (shown(name), names[name]))
            names[name] = p
        if (num, proto) in seen:
            fail(p, "duplicate port %d/%s (also %s)" % (num, proto, seen[(num, proto)]))
        seen[(num, proto)] = p


def _source_ranges(obj: Obj, spec: Obj, stype: str) -> None:
    """spec.loadBalancerSourceRanges, or else the annotation: CIDRs, only on
    a LoadBalancer (as the API server checks both; the proxy reads the field,
    entries trimmed of spaces as Kubernetes allows)."""
    ranges = str_list(spec, "loadBalancerSourceRanges", "spec") or []
    if ranges:
        if stype != "LoadBalancer":
            fail("spec.loadBalancerSourceRanges", "may only be used when type is LoadBalancer (type is %s)" % stype)
        for i, r in enumerate(ranges):
            parse_cidr(r.strip(), index("spec.loadBalancerSourceRanges", i))
        return
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(SOURCE_RANGES_ANNOTATION)
    if value is None:
        return
    path = "metadata.annotations[%s]" % SOURCE_RANGES_ANNOTATION
    if stype != "LoadBalancer":
        fail(path, "may only be used when type is LoadBalancer (type is %s)" % stype)
    text = str(value).strip()
    for r in text.split(",") if text else []:  # one CIDR after another, as the API server reads it
        parse_cidr(r.strip(), path)


def service(obj: Obj) -> Obj:
    spec = opt_map(obj, "spec", "", required=True)
    support.check(spec, "spec", "ServiceSpec")
    stype = opt_enum(spec, "type", "spec", SERVICE_TYPES, default="ClusterIP")
    cip = opt_str(
        spec,
        "clusterIP",
        "spec",
        check=lambda v: (
            None
            if v in ("", "None")
            else ip_error(v) and "must be empty, None (headless) or an IP address, got %s" % shown(v)
        ),
    )
    cips = str_list(spec, "clusterIPs", "spec", check=lambda v: None if v == "None" else ip_error(v))
    if cip and cips and cips[0] != cip:
        fail("spec.clusterIPs[0]", "must equal spec.clusterIP (%s)" % cip)
    headless = cip == "None"
    if stype == "ExternalName":
        opt_str(spec, "externalName", "spec", required=True, check=dns_subdomain)
        if cip:
            fail("spec.clusterIP", "must be empty for ExternalName services")
    elif headless and stype != "ClusterIP":
        fail("spec.clusterIP", "may not be None (headless) for %s services" % stype)
    _service_ports(spec, stype, needed=stype != "ExternalName" and not headless)
    str_map(spec, "selector", "spec")
    affinity = opt_enum(spec, "sessionAffinity", "spec", ("None", "ClientIP"), default="None")
    sac = opt_map(spec, "sessionAffinityConfig", "spec")
    if affinity == "ClientIP":
        sac = sac if sac is not None else spec.setdefault("sessionAffinityConfig", {})
        cl = opt_map(sac, "clientIP", "spec.sessionAffinityConfig")
        cl = cl if cl is not None else sac.setdefault("clientIP", {})
        opt_int(cl, "timeoutSeconds", "spec.sessionAffinityConfig.clientIP", 1, 86400, default=10800)
    elif sac is not None:
        fail("spec.sessionAffinityConfig", "may only be set when sessionAffinity is ClientIP")
    external_ips = str_list(spec, "externalIPs", "spec", check=ip_error) or []
    externally = stype in ("NodePort", "LoadBalancer") or bool(external_ips)
    if spec.get("externalTrafficPolicy") is not None and not externally:
        fail("spec.externalTrafficPolicy", "may only be set for NodePort or LoadBalancer services or with externalIPs")
    if externally:
        opt_enum(spec, "externalTrafficPolicy", "spec", TRAFFIC_POLICIES, default="Cluster")
    else:
        opt_enum(spec, "externalTrafficPolicy", "spec", TRAFFIC_POLICIES)
    if stype != "ExternalName":
        opt_enum(spec, "internalTrafficPolicy", "spec", TRAFFIC_POLICIES, default="Cluster")
    opt_str(spec, "loadBalancerIP", "spec", check=ip_error)
    _source_ranges(obj, spec, stype)
    opt_bool(spec, "publishNotReadyAddresses", "spec")
    # a single-stack IPv4 cluster, as kube-apiserver on one: IPv6 and
    # RequireDualStack are refused, PreferDualStack gets the one family
    for i, fam in enumerate(opt_list(spec, "ipFamilies", "spec") or []):
        if fam not in ("IPv4", "IPv6"):
            fail("spec.ipFamilies[%d]" % i, "must be IPv4 or IPv6, got %s" % shown(fam))
        if fam == "IPv6" or i > 0:
            fail("spec.ipFamilies[%d]" % i, "%s: this cluster is single-stack IPv4 (its service CIDR is IPv4)" % fam)
    policy = opt_enum(spec, "ipFamilyPolicy", "spec", ("SingleStack", "PreferDualStack", "RequireDualStack"))
    if policy == "RequireDualStack":
        fail("spec.ipFamilyPolicy", "RequireDualStack: this cluster is single-stack IPv4 (its service CIDR is IPv4)")
    return obj


# ---- NetworkPolicy ------------------------------------------------------------


def _subnet_of(sub: IPNetwork, net: IPNetwork) -> bool:
    """sub inside net (False across address families)."""
    if isinstance(sub, ipaddress.IPv4Network) and isinstance(net, ipaddress.IPv4Network):
        return sub.subnet_of(net)
    if isinstance(sub, ipaddress.IPv6Network) and isinstance(net, ipaddress.IPv6Network):
        return sub.subnet_of(net)
    return False


def _ip_block(block: object, path: str) -> None:
    block = need_map(block, path)
    if block.get("cidr") is None:
        fail(join(path, "cidr"), "required")
    net = parse_cidr(block["cidr"], join(path, "cidr"))
    for i, ex in enumerate(str_list(block, "except", path) or []):
        p = index(join(path, "except"), i)
        sub = parse_cidr(ex, p)
        if not _subnet_of(sub, net) or sub == net:
            fail(p, "must be a smaller range inside cidr %s, got %s" % (block["cidr"], shown(ex)))


def _peer(peer: object, path: str) -> None:
    peer = need_map(peer, path)
    present = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if peer.get(k) is not None]
    if not present:
        fail(path, "must set at least one of podSelector, namespaceSelector, ipBlock")
    if "ipBlock" in present and len(present) > 1:
        fail(join(path, "ipBlock"), "may not be combined with podSelector or namespaceSelector")
    for k in present:
        if k == "ipBlock":
            _ip_block(peer[k], join(path, k))
        else:
            check_selector(peer[k], join(path, k))


def _policy_ports(rule: Obj, base: str) -> None:
    for port, p in opt_maps(rule, "ports", base):
        protocol(port, p)
        num = port.get("port")
        if num is not None:
            num = check_port_or_name(num, join(p, "port"))
        end = opt_int(port, "endPort", p, 1, 65535)
        if end is not None:
            if not isinstance(num, int):
                fail(
                    join(p, "endPort"),
                    "needs a numeric port" if num is None else "may not be used with a named port (%s)" % shown(num),
                )
            if end < num:
                fail(join(p, "endPort"), "must be >= port (%d)" % num)


def network_policy(obj: Obj) -> Obj:
    spec = opt_map(obj, "spec", "", required=True)
    if spec.get("podSelector") is None:
        fail("spec.podSelector", "required (use {} to select every pod in the namespace)")
    check_selector(spec["podSelector"], "spec.podSelector")
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for rule, p in opt_maps(spec, direction, "spec"):
            for i, peer in enumerate(opt_list(rule, peers, p) or []):
                _peer(peer, index(join(p, peers), i))
            _policy_ports(rule, p)
    types = opt_list(spec, "policyTypes", "spec")
    if types:
        for i, t in enumerate(types):
            if t not in ("Ingress", "Egress"):
                fail("spec.policyTypes[%d]" % i, "must be Ingress or Egress, got %s" % shown(t))
            if t in types[:i]:
                fail("spec.policyTypes[%d]" % i, "duplicate %s" % t)
    else:
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    return obj


# ---- EndpointSlice ------------------------------------------------------------


def endpoint_slice(obj: Obj) -> Obj:
    family = opt_enum(obj, "addressType", "", ("IPv4", "IPv6", "FQDN"), required=True)
    checks: dict[str, Check] = {
        "IPv4": lambda v: ip_error(v, 4),
        "IPv6": lambda v: ip_error(v, 6),
        "FQDN": dns_subdomain,
    }
    check = checks[family]
    if obj.get("endpoints") is None:
        obj["endpoints"] = []
    endpoints = opt_maps(obj, "endpoints", "")
    if len(endpoints) > 1000:
        fail("endpoints", "at most 1000 endpoints, got %d" % len(endpoints))
    for ep, p in endpoints:
        addrs = str_list(ep, "addresses", p, required=True, nonempty=True, check=check)
        if len(addrs) > 100:
            fail(join(p, "addresses"), "at most 100 addresses, got %d" % len(addrs))
        cond = opt_map(ep, "conditions", p)
        for key in ("ready", "serving", "terminating"):
            if cond is not None:
                opt_bool(cond, key, join(p, "conditions"))
        opt_str(ep, "hostname", p, check=dns_label)
        opt_str(ep, "nodeName", p, check=dns_subdomain)
        opt_str(ep, "zone", p)
        opt_map(ep, "targetRef", p)
    names: dict[str, str] = {}
    for port, p in opt_maps(obj, "ports", ""):
        name = opt_str(port, "name", p, check=lambda v: v and dns_label(v))
        if name is not None:
            if name in names:
                fail(join(p, "name"), "duplicate port name %s (also %s)" % (shown(name), names[name]))
            names[name] = p
        opt_int(port, "port", p, 1, 65535)
        protocol(port, p)
        opt_str(port, "appProtocol", p)
    return obj


# ---- Node ---------------------------------------------------------------------

ADDRESS_TYPES = ("InternalIP", "ExternalIP", "Hostname", "InternalDNS", "ExternalDNS")


def node(obj: Obj) -> Obj:
    spec = opt_map(obj, "spec", "")
    if spec is not None:
        cidr = opt_str(spec, "podCIDR", "spec")
        if cidr is not None:
            parse_cidr(cidr, "spec.podCIDR", strict=True)
        cidrs = str_list(spec, "podCIDRs", "spec") or []
        for i, c in enumerate(cidrs):
            parse_cidr(c, "spec.podCIDRs[%d]" % i, strict=True)
        if cidr and cidrs and cidrs[0] != cidr:
            fail("spec.podCIDRs[0]", "must equal spec.podCIDR (%s)" % cidr)
        opt_bool(spec, "unschedulable", "spec")
        for t, p in opt_maps(spec, "taints", "spec"):
            opt_str(t, "key", p, required=True, check=label_key)
            opt_str(t, "value", p)
            opt_enum(t, "effect", p, ("NoSchedule", "PreferNoSchedule", "NoExecute"), required=True)
    status = opt_map(obj, "status", "")
    if status is not None:
        for a, p in opt_maps(status, "addresses", "status"):
            atype = opt_enum(a, "type", p, ADDRESS_TYPES, required=True)
            opt_str(a, "address", p, required=True, nonempty=True, check=ip_error if atype.endswith("IP") else None)
    return obj
