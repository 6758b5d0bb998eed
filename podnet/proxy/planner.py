"""Services as one nftables table, `ip podnet-proxy` (kube-proxy nftables shape).

plan_ruleset() is pure: Services + EndpointSlices + this node -> ONE `nft -f`
script that replaces the whole table in one transaction (add, delete, then the
full definition). The output is sorted, so equal inputs give equal scripts.

    nat-prerouting (dstnat) / nat-output (-100)  -> jump services
    services        ip daddr . meta l4proto . th dport vmap @service-ips
                    fib daddr type local ... meta l4proto . th dport vmap @service-nodeports
    svc-<h>-<ns/name/proto/port>   masquerade off-cluster clients, affinity
                    checks, numgen random mod N vmap { i : goto ep-... }
    ext-<h>-...     NodePort: Cluster -> mark for masquerade, goto svc-...;
                    Local -> local endpoints only, client address kept
    ep-<h>-.../<ip>/<port>   hairpin mark, affinity update, dnat
    nat-postrouting (srcnat)  meta mark & 0x4000 == 0x4000 masquerade fully-random
    filter-*        (priority -110/-90) as kube-proxy: no-endpoint services and
                    nodeports are rejected (or dropped when endpoints exist but
                    none may be used, e.g. externalTrafficPolicy Local with no
                    local endpoint), unknown ports of a ClusterIP rejected.

Endpoints: ready ones; when none is ready, those serving and terminating.
IPv4 only (addressType IPv4, IPv4 ClusterIPs); the first address of an endpoint.
"""

import base64
import hashlib
import ipaddress
import re

MARK = "0x4000"
DEFAULT_AFFINITY_TIMEOUT = 10800
NAME_MAX = 100          # readable part of a chain/set name (nft allows 255)
_BAD = re.compile(r"[^A-Za-z0-9_./-]")


def _hash(text):
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:8]


def chain_name(prefix, key):
    """A valid nft identifier: prefix, short hash of key, readable key."""
    return "%s-%s-%s" % (prefix, _hash(key), _BAD.sub("_", key)[:NAME_MAX])


def _proto(p):
    return str(p or "TCP").lower()


def _ipv4(text):
    try:
        ip = ipaddress.ip_address(str(text))
    except ValueError:
        return None
    return ip if ip.version == 4 else None


def _conditions(ep):
    c = ep.get("conditions") or {}
    ready = c.get("ready")
    ready = True if ready is None else bool(ready)
    serving = c.get("serving")
    serving = ready if serving is None else bool(serving)
    return ready, serving, bool(c.get("terminating"))


def _usable(eps):
    ready = [e for e in eps if e["ready"]]
    return ready or [e for e in eps if e["serving"] and e["terminating"]]


def _endpoints(svc_port, svc_ns, svc_name, slices, node_name):
    """[{ip, port, ready, serving, terminating, local}] for one service port, sorted."""
    name, proto = svc_port.get("name", "") or "", _proto(svc_port.get("protocol"))
    found = {}
    for sl in slices:
        meta = sl.get("metadata", {})
        if meta.get("namespace") != svc_ns or (meta.get("labels") or {}).get("kubernetes.io/service-name") != svc_name:
            continue
        if sl.get("addressType", "IPv4") != "IPv4":
            continue
        target = None
        for p in sl.get("ports") or []:
            if (p.get("name") or "") == name and _proto(p.get("protocol")) == proto and isinstance(p.get("port"), int):
                target = p["port"]
                break
        if target is None:
            continue
        for ep in sl.get("endpoints") or []:
            ip = _ipv4((ep.get("addresses") or [None])[0])
            if ip is None:
                continue
            ready, serving, terminating = _conditions(ep)
            rec = {"ip": ip, "port": target, "ready": ready, "serving": serving, "terminating": terminating,
                   "local": bool(node_name) and ep.get("nodeName") == node_name}
            key = (ip, target)
            old = found.get(key)  # the same endpoint in two slices: the more usable one wins
            if old is None or (rec["ready"], rec["serving"]) > (old["ready"], old["serving"]):
                found[key] = rec
    return [found[k] for k in sorted(found)]


def _affinity_timeout(spec):
    if spec.get("sessionAffinity") != "ClientIP":
        return None
    cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
    t = cfg.get("timeoutSeconds")
    return t if isinstance(t, int) and not isinstance(t, bool) and t > 0 else DEFAULT_AFFINITY_TIMEOUT


def plan_ruleset(services, slices, node_name, node_ips, table="podnet-proxy", cluster_cidr="10.244.0.0/16"):
    T = "ip " + table
    slices = list(slices or [])
    chains = {}                     # name -> [rule bodies]
    sets = {}                       # name -> declaration body
    service_ips, service_nodeports = {}, {}
    no_endpoint_services, no_endpoint_nodeports = {}, {}
    cluster_ips = set()

    def dispatch(rules, eps, ep_chain, affinity):
        if affinity is not None:
            for e in eps:
                rules.append("ip saddr @%s goto %s" % (ep_chain[e["ip"], e["port"]][1], ep_chain[e["ip"], e["port"]][0]))
        vmap = ", ".join("%d : goto %s" % (i, ep_chain[e["ip"], e["port"]][0]) for i, e in enumerate(eps))
        rules.append("numgen random mod %d vmap { %s }" % (len(eps), vmap))

    def svc_key(s):
        m = s.get("metadata", {})
        return (m.get("namespace", ""), m.get("name", ""))

    for svc in sorted(services or [], key=svc_key):
        ns, name = svc_key(svc)
        spec = svc.get("spec") or {}
        stype = spec.get("type", "ClusterIP")
        if stype == "ExternalName":
            continue
        cip = _ipv4(spec.get("clusterIP"))
        if cip is None:                                  # headless ("None"), unallocated, IPv6
            continue
        cluster_ips.add(cip)
        affinity = _affinity_timeout(spec)
        ext_local = spec.get("externalTrafficPolicy") == "Local"
        int_local = spec.get("internalTrafficPolicy") == "Local"
        ports = sorted(spec.get("ports") or [], key=lambda p: (_proto(p.get("protocol")), p.get("port", 0), p.get("name") or ""))
        for sp in ports:
            port, proto = sp.get("port"), _proto(sp.get("protocol"))
            if not isinstance(port, int):
                continue
            base = "%s/%s/%s/%d" % (ns, name, proto, port)
            eps = _endpoints(sp, ns, name, slices, node_name)
            usable = _usable(eps)
            local = _usable([e for e in eps if e["local"]])
            cluster = local if int_local else usable
            nodeport = sp.get("nodePort") if stype in ("NodePort", "LoadBalancer") else None
            nodeport = nodeport if isinstance(nodeport, int) and not isinstance(nodeport, bool) else None
            external = (local if ext_local else usable) if nodeport else []

            ep_chain = {}
            for e in sorted({(e["ip"], e["port"]): e for e in cluster + external}.values(),
                            key=lambda e: (e["ip"], e["port"])):
                key = "%s__%s/%d" % (base, e["ip"], e["port"])
                ch, aff = chain_name("ep", key), chain_name("affinity", key)
                ep_chain[e["ip"], e["port"]] = (ch, aff)
                rules = ["ip saddr %s meta mark set meta mark | %s" % (e["ip"], MARK)]
                if affinity is not None:
                    sets[aff] = "type ipv4_addr; flags dynamic,timeout; timeout %ds;" % affinity
                    rules.append("update @%s { ip saddr }" % aff)
                rules.append("meta l4proto %s dnat to %s:%d" % (proto, e["ip"], e["port"]))
                chains[ch] = rules

            svc_chain = chain_name("svc", base)
            key = (cip, proto, port)
            if cluster:
                rules = []
                if cluster_cidr:
                    rules.append("ip daddr %s meta l4proto %s th dport %d ip saddr != %s meta mark set meta mark | %s"
                                 % (cip, proto, port, cluster_cidr, MARK))
                dispatch(rules, cluster, ep_chain, affinity)
                chains[svc_chain] = rules
                service_ips.setdefault(key, "goto " + svc_chain)
            else:   # endpoints that exist but may not be used here are dropped, none at all rejected
                no_endpoint_services.setdefault(key, "drop" if usable else "goto reject-chain")

            if nodeport is None:
                continue
            nkey = (proto, nodeport)
            if not external:
                no_endpoint_nodeports.setdefault(nkey, "drop" if usable else "goto reject-chain")
                continue
            ext_chain = chain_name("ext", base)
            rules = []
            if ext_local:
                if cluster:  # pods and the node itself may use every endpoint
                    if cluster_cidr:
                        rules.append("ip saddr %s goto %s" % (cluster_cidr, svc_chain))
                    rules.append("fib saddr type local meta mark set meta mark | %s" % MARK)
                    rules.append("fib saddr type local goto %s" % svc_chain)
                dispatch(rules, external, ep_chain, affinity)
            else:
                rules.append("meta mark set meta mark | %s" % MARK)
                if cluster == external:
                    rules.append("goto " + svc_chain)
                else:
                    dispatch(rules, external, ep_chain, affinity)
            chains[ext_chain] = rules
            service_nodeports.setdefault(nkey, "goto " + ext_chain)

    node_ips = sorted({ip for ip in (_ipv4(x) for x in (node_ips or [])) if ip is not None})
    np_match = "fib daddr type local ip daddr != 127.0.0.0/8" + (" ip daddr @nodeport-ips" if node_ips else "")

    base_chains = [
        ("nat-prerouting", "type nat hook prerouting priority dstnat; policy accept;", ["jump services"]),
        ("nat-output", "type nat hook output priority -100; policy accept;", ["jump services"]),
        ("nat-postrouting", "type nat hook postrouting priority srcnat; policy accept;",
         ["meta mark & %s == %s masquerade fully-random" % (MARK, MARK)]),
        ("filter-input", "type filter hook input priority -110; policy accept;",
         ["ct state new jump nodeport-endpoints-check", "ct state new jump service-endpoints-check"]),
        ("filter-forward", "type filter hook forward priority -110; policy accept;",
         ["ct state new jump service-endpoints-check", "ct state new jump cluster-ips-check"]),
        ("filter-output", "type filter hook output priority -110; policy accept;",
         ["ct state new jump service-endpoints-check"]),
        ("filter-output-post-dnat", "type filter hook output priority -90; policy accept;",
         ["ct state new jump cluster-ips-check"]),
    ]
    regular = [
        ("services", ["ip daddr . meta l4proto . th dport vmap @service-ips",
                      np_match + " meta l4proto . th dport vmap @service-nodeports"]),
        ("service-endpoints-check", ["ip daddr . meta l4proto . th dport vmap @no-endpoint-services"]),
        ("nodeport-endpoints-check", [np_match + " meta l4proto . th dport vmap @no-endpoint-nodeports"]),
        ("cluster-ips-check", ["ip daddr @cluster-ips reject"]),
        ("reject-chain", ["reject"]),
    ]

    out = ["add table %s" % T, "delete table %s" % T, "add table %s" % T]
    for name, decl, _ in base_chains:
        out.append("add chain %s %s { %s }" % (T, name, decl))
    for name, _ in regular:
        out.append("add chain %s %s" % (T, name))
    for name in sorted(chains):
        out.append("add chain %s %s" % (T, name))

    out.append("add set %s cluster-ips { type ipv4_addr; }" % T)
    out.append("add set %s nodeport-ips { type ipv4_addr; }" % T)
    for name in sorted(sets):
        out.append("add set %s %s { %s }" % (T, name, sets[name]))
    out.append("add map %s service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }" % T)
    out.append("add map %s service-nodeports { type inet_proto . inet_service : verdict; }" % T)
    out.append("add map %s no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict; }" % T)
    out.append("add map %s no-endpoint-nodeports { type inet_proto . inet_service : verdict; }" % T)

    for ip in sorted(cluster_ips):
        out.append("add element %s cluster-ips { %s }" % (T, ip))
    for ip in node_ips:
        out.append("add element %s nodeport-ips { %s }" % (T, ip))
    for mname, m in (("service-ips", service_ips), ("no-endpoint-services", no_endpoint_services)):
        for (ip, proto, port) in sorted(m):
            out.append("add element %s %s { %s . %s . %d : %s }" % (T, mname, ip, proto, port, m[ip, proto, port]))
    for mname, m in (("service-nodeports", service_nodeports), ("no-endpoint-nodeports", no_endpoint_nodeports)):
        for (proto, port) in sorted(m):
            out.append("add element %s %s { %s . %d : %s }" % (T, mname, proto, port, m[proto, port]))

    for name, _, rules in base_chains:
        out += ["add rule %s %s %s" % (T, name, r) for r in rules]
    for name, rules in regular:
        out += ["add rule %s %s %s" % (T, name, r) for r in rules]
    for name in sorted(chains):
        out += ["add rule %s %s %s" % (T, name, r) for r in chains[name]]
    return "\n".join(out) + "\n"
