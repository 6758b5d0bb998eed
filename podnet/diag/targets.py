"""What FROM and TO of `podnet trace` name: a pod, a Service (ClusterIP,
NodePort, LoadBalancer IP), a node, the external host, a bare IP, or a DNS
name resolved the way FROM would resolve it (a pod asks the nameserver of
its own resolv.conf, from inside its namespace, with its search list; a
node or the external host asks the lab's resolver).

`Cluster` is one read of the lab's API objects (pods, services, nodes):
a trace needs them once, so a plain list each, no informers.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any

from podnet.lab import topology as topo

Obj = dict[str, Any]


class TargetError(Exception):
    """Bad input: a name that resolves to nothing (the CLI exits 2)."""


@dataclass
class Target:
    kind: str  # pod | node | external | ip | service
    name: str | None
    ip: str
    node: str | None = None
    netns: str | None = None
    port: int | None = None
    obj: Obj | None = None  # the Pod or Service

    def as_json(self, with_port=False):
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "ip": self.ip}
        if with_port:
            out["port"] = self.port
        out["node"] = self.node
        return out


class Cluster:
    def __init__(self, lab, client):
        self.lab = lab
        self.doc = topo.load(lab)
        self.pods = [p for p in client.list("Pod", None) if (p.get("status") or {}).get("podIP")]
        self.services = client.list("Service", None)
        self.nodes = client.list("Node", None)
        self.slices = client.list("EndpointSlice", None)
        self.node_ip = {n["name"]: n["ip"] for n in self.doc["nodes"]}
        self.node_ns = {n["name"]: n["netns"] for n in self.doc["nodes"]}

    def pod_netns(self, pod):
        from podnet.agent.agent import pod_netns

        return pod_netns(self.lab, pod["metadata"]["uid"])

    def pod_target(self, pod):
        m = pod["metadata"]
        node = pod["spec"].get("nodeName")
        host = pod["spec"].get("hostNetwork")
        ns = self.node_ns.get(node) if host else self.pod_netns(pod)
        return Target("pod", "%s/%s" % (m["namespace"], m["name"]), pod["status"]["podIP"], node, ns, obj=pod)

    def find_pod(self, ns, name, anywhere=False):
        return _find(self.pods, ns, name, anywhere)

    def find_service(self, ns, name, anywhere=False):
        return _find(self.services, ns, name, anywhere)

    def endpoints(self, svc):
        """Ready endpoint IPs of a Service (its EndpointSlices)."""
        key = "%s/%s" % (svc["metadata"]["namespace"], svc["metadata"]["name"])
        ips = set()
        for sl in self.slices:
            m = sl["metadata"]
            if "%s/%s" % (m["namespace"], (m.get("labels") or {}).get("kubernetes.io/service-name")) != key:
                continue
            for ep in sl.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready", True):
                    ips.update(ep.get("addresses") or [])
        return ips

    def pod_cidrs(self):
        return {n["spec"]["podCIDR"]: n["metadata"]["name"] for n in self.nodes if (n.get("spec") or {}).get("podCIDR")}

    def fronts(self):
        """ "ip:port" of every Service front (ClusterIP, LB IP, node IP +
        nodePort) -> ns/name."""
        out = {}
        for s in self.services:
            key = "%s/%s" % (s["metadata"]["namespace"], s["metadata"]["name"])
            spec = s.get("spec") or {}
            ips = [spec.get("clusterIP")] + list(spec.get("externalIPs") or [])
            ips += [i.get("ip") for i in ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
            for p in spec.get("ports") or []:
                for ip in ips:
                    if ip and ip != "None":
                        out["%s:%s" % (ip, p["port"])] = key
                if p.get("nodePort"):
                    for nip in self.node_ip.values():
                        out["%s:%s" % (nip, p["nodePort"])] = key
        return out


def _find(objs, ns, name, anywhere):
    """The object ns/name; with `anywhere` (a bare name, no namespace given
    with it) also the only object of that name in another namespace."""
    same = [o for o in objs if o["metadata"]["name"] == name]
    for o in same:
        if o["metadata"]["namespace"] == ns:
            return o
    return same[0] if anywhere and len(same) == 1 else None


def _split_port(text):
    if text.count(":") == 1:
        host, port = text.rsplit(":", 1)
        if port.isdigit():
            return host, int(port)
        raise TargetError("%r: the port after ':' must be a number" % text)
    return text, None


def _is_ip(text):
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False


def _service_port(svc, port, proto):
    ports = (svc.get("spec") or {}).get("ports") or []
    if port is not None:
        return port
    for p in ports:
        if p.get("protocol", "TCP").lower() == proto:
            return p["port"]
    return ports[0]["port"] if ports else None


def _pod_port(pod, proto):
    for c in pod["spec"].get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("protocol", "TCP").lower() == proto:
                return p["containerPort"]
    return 80


def by_ip(cl, ip, port, proto):
    """What an address is: a pod, a node, a Service front, or just an IP."""
    for p in cl.pods:
        if p["status"]["podIP"] == ip and not p["spec"].get("hostNetwork"):
            t = cl.pod_target(p)
            t.port = port if port is not None else (None if proto == "icmp" else _pod_port(p, proto))
            return t
    if port is not None:
        key = cl.fronts().get("%s:%s" % (ip, port))
        if key:
            ns, name = key.split("/", 1)
            svc = cl.find_service(ns, name)
            node = next((n for n, nip in cl.node_ip.items() if nip == ip), None)
            return Target("service", key, ip, node, port=port, obj=svc)
    for name, nip in cl.node_ip.items():
        if nip == ip:
            return Target("node", name, ip, name, cl.node_ns[name], port=port)
    if ip == cl.doc["external"]["ip"]:
        return Target("external", "external", ip, None, cl.doc["external"]["netns"], port=port)
    for s in cl.services:
        if (s.get("spec") or {}).get("clusterIP") == ip:
            key = "%s/%s" % (s["metadata"]["namespace"], s["metadata"]["name"])
            return Target("service", key, ip, None, port=_service_port(s, port, proto), obj=s)
    return Target("ip", None, ip, None, port=port if port is not None or proto == "icmp" else 80)


def resolve(cl, text, namespace, proto, source=None):
    """A Target for FROM (source None) or TO (source: the FROM Target, whose
    resolver answers DNS names). TargetError names what was not found."""
    host, port = _split_port(text)
    if host == "external":
        return Target("external", "external", cl.doc["external"]["ip"], None, cl.doc["external"]["netns"], port=port)
    if host in cl.node_ip:
        return Target("node", host, cl.node_ip[host], host, cl.node_ns[host], port=port)
    if host.startswith(("svc/", "service/")):
        name = host.split("/", 1)[1]
        ns, name = name.split("/", 1) if "/" in name else (namespace, name)
        svc = cl.find_service(ns, name, anywhere="/" not in host[4:])
        if svc is None:
            raise TargetError("service %s/%s not found" % (ns, name))
        ns = svc["metadata"]["namespace"]
        ip = (svc.get("spec") or {}).get("clusterIP")
        if not ip or ip == "None":
            raise TargetError("service %s/%s has no ClusterIP (headless)" % (ns, name))
        return Target("service", "%s/%s" % (ns, name), ip, None, port=_service_port(svc, port, proto), obj=svc)
    if _is_ip(host):
        return by_ip(cl, host, port, proto)
    ns, name = host.split("/", 1) if "/" in host else (namespace, host)
    pod = cl.find_pod(ns, name, anywhere="/" not in host)
    if pod is not None:
        t = cl.pod_target(pod)
        t.port = port if port is not None else (None if proto == "icmp" else _pod_port(pod, proto))
        return t
    if source is not None and "/" not in host:  # a DNS name (a bare one through the search list)
        ip = resolve_name(cl, source, host)
        if ip is None:
            raise TargetError(
                "pod %s/%s not found, and the resolver of %s does not know %s" % (ns, name, source.name, host)
            )
        return by_ip(cl, ip, port, proto)
    raise TargetError("pod %s/%s not found (nor a node, 'external', svc/NAME or an IP)" % (ns, name))


# ---- DNS, as FROM resolves it ----------------------------------------------


def resolv_conf(cl, source):
    """(nameservers, search list) from FROM's resolv.conf."""
    if source.kind == "pod" and source.obj is not None:
        m = source.obj["metadata"]
        pattern = os.path.join(
            topo.state_dir(cl.lab),
            "nodes",
            source.node or "*",
            "pods",
            "%s_%s_%s" % (m["namespace"], m["name"], m["uid"]),
            "resolv.conf",
        )
        paths = glob.glob(pattern)
    elif source.kind == "node":
        paths = [topo.node_resolv_conf(cl.lab, source.name)]
    else:
        paths = []
    servers, search = [], []
    for path in paths[:1]:
        with open(path) as f:
            for line in f:
                w = line.split()
                if len(w) >= 2 and w[0] == "nameserver":
                    servers.append(w[1])
                elif w and w[0] == "search":
                    search = w[1:]
    return servers or [cl.doc["external"]["ip"]], search


def resolve_name(cl, source, name, timeout=1.0):
    """The A record FROM's resolver gives for name (search list applied as
    the stub resolver would, absolute names as they are), or None."""
    import dns.message
    import dns.rdatatype

    from podnet.kernel.netns import Netns, entered

    servers, search = resolv_conf(cl, source)
    names = [name] if name.endswith(".") else [name + "."] + ["%s.%s." % (name, s) for s in search]
    for qname in names:
        q = dns.message.make_query(qname, dns.rdatatype.A)
        with Netns(source.netns or cl.doc["external"]["netns"]) as h, entered(h):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.settimeout(timeout)
            s.sendto(q.to_wire(), (servers[0], 53))
            wire, _ = s.recvfrom(4096)
        except OSError:
            continue
        finally:
            s.close()
        r = dns.message.from_wire(wire)
        for rrset in r.answer:
            for rd in rrset:
                if rd.rdtype == dns.rdatatype.A:
                    return rd.address
    return None
