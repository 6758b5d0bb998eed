"""What every doctor check shares: the facts it reads and the finding it returns.

A check is a pure function `check_x(facts) -> list[Finding]`: no API call, no
kernel read. `podnet.diag.doctor` gathers the facts once (API objects, then
kernel reads per node and per pod) and hands the same Facts to every check,
so each check is unit-tested with a hand-made Facts and the whole run reads
each fact once.

RANK orders findings: errors before warnings, and among errors a cause
before its consequences, by check: a dead process or a stopped BIRD before
the routes they leave missing, a kernel setting before the path it breaks,
a pod failing readiness before "the Service has no ready endpoints".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

# cause before consequence (see the module note)
RANK = [
    "processes",
    "bgp",
    "sysctls",
    "node-routes",
    "vxlan-fdb",
    "mtu",
    "nft-tables",
    "foreign-rules",
    "network-policy",
    "pod-status",
    "service-selector",
    "target-port",
    "dns",
    "endpoints",
    "ingress",
    "conntrack",
]


@dataclass
class Finding:
    check: str
    severity: str  # "error" | "warning"
    summary: str
    evidence: list[str] = field(default_factory=list)
    command: str = ""
    where: str | None = None

    def to_json(self) -> Obj:
        return {
            "check": self.check,
            "severity": self.severity,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "command": self.command,
            "where": self.where,
        }


@dataclass
class Path:
    """`doctor A --to B`: from pod `src` to the pods behind `dst` on `port`."""

    src: str  # "ns/name" of the source pod
    dst_pods: list[str]  # "ns/name" of the destination pods (a Service's endpoints, or one pod)
    port: int | None = None  # the destination pod's port (targetPort resolved)
    protocol: str = "TCP"
    service: str | None = None  # "ns/name" when the destination is a Service


@dataclass
class Facts:
    lab: str = ""
    mode: str = "vxlan"
    # node name -> {"ip", "podCIDR", "vtep_mac", "netns"}
    nodes: dict[str, Obj] = field(default_factory=dict)
    # node name -> inspect.node_facts(...)
    kernel: dict[str, Obj] = field(default_factory=dict)
    # role -> {"pid", "alive"} (procs.json)
    procs: dict[str, Obj] = field(default_factory=dict)
    # node name -> {"running": bool, "sessions": [{"peer", "state", "info"}], "error": str}
    bird: dict[str, Obj] = field(default_factory=dict)
    pods: list[Obj] = field(default_factory=list)
    services: list[Obj] = field(default_factory=list)
    slices: list[Obj] = field(default_factory=list)
    policies: list[Obj] = field(default_factory=list)
    namespaces: list[Obj] = field(default_factory=list)
    events: list[Obj] = field(default_factory=list)
    ingresses: list[Obj] = field(default_factory=list)
    ingress_classes: list[Obj] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # "ns/name" -> type (never the data)
    # "ns/name" of an Ingress -> [{"host", "path", "ip", "status", "detail"}] (real GETs from outside)
    ingress_probes: dict[str, list[Obj]] = field(default_factory=dict)
    # "ns/name" -> inspect.pod_facts(...) plus "resolv" (resolv.conf text) and "dns" ({"ok", "detail"})
    pod_kernel: dict[str, Obj] = field(default_factory=dict)
    # scope: None = everything of that kind
    scope_pods: set[str] | None = None
    scope_services: set[str] | None = None
    scope_nodes: set[str] | None = None
    scope_ingresses: set[str] | None = None
    path: Path | None = None

    # ---- lookups the checks share -------------------------------------------

    def pod(self, key: str) -> Obj | None:
        for p in self.pods:
            if key_of(p) == key:
                return p
        return None

    def pod_by_ip(self, ip: str) -> Obj | None:
        for p in self.pods:
            if p.get("status", {}).get("podIP") == ip and not p["spec"].get("hostNetwork"):
                return p
        return None

    def service(self, key: str) -> Obj | None:
        for s in self.services:
            if key_of(s) == key:
                return s
        return None

    def ready_endpoints(self, svc_key: str) -> list[Obj]:
        """The ready endpoints of the Service's EndpointSlices."""
        ns, name = svc_key.split("/", 1)
        out = []
        for sl in self.slices:
            meta = sl["metadata"]
            if meta.get("namespace") != ns or (meta.get("labels") or {}).get("kubernetes.io/service-name") != name:
                continue
            for ep in sl.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready", True):
                    out.append(ep)
        return out

    def in_scope_pod(self, key: str) -> bool:
        return self.scope_pods is None or key in self.scope_pods

    def in_scope_service(self, key: str) -> bool:
        return self.scope_services is None or key in self.scope_services

    def in_scope_ingress(self, key: str) -> bool:
        return self.scope_ingresses is None or key in self.scope_ingresses

    def in_scope_node(self, name: str) -> bool:
        return self.scope_nodes is None or name in self.scope_nodes


def key_of(obj: Obj) -> str:
    meta = obj["metadata"]
    return "%s/%s" % (meta.get("namespace") or "default", meta["name"])


def in_cidr(ip: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def rank(findings: list[Finding]) -> list[Finding]:
    """Errors first, then by RANK (cause before consequence); stable within a check."""

    def order(f: Finding) -> tuple[int, int]:
        return (0 if f.severity == "error" else 1, RANK.index(f.check) if f.check in RANK else len(RANK))

    return sorted(findings, key=order)
