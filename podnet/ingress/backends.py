"""Backends: a Service port -> an nginx upstream of the Service's ready endpoints.

As ingress-nginx does, nginx sends to the pods directly (the EndpointSlices'
ready addresses and the endpoint port), not to the ClusterIP: one hop less,
and nginx's own keepalive and retries work per pod. A Service port is named
by number or by name, as in an Ingress backend or a backendRef. A Service
with no ready endpoint has no upstream (nginx refuses an empty upstream
block); the route answers 503 instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

SERVICE_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Upstream:
    name: str  # the nginx upstream name
    servers: tuple[str, ...]  # "ip:port", sorted


class Index:
    """Services and EndpointSlices by namespace/name, for backend lookups."""

    def __init__(self, services: list[Obj], slices: list[Obj]):
        self.services = {(s["metadata"].get("namespace") or "default", s["metadata"]["name"]): s for s in services}
        self.slices: dict[tuple[str, str], list[Obj]] = {}
        for sl in slices:
            svc = (sl["metadata"].get("labels") or {}).get(SERVICE_LABEL)
            if svc:
                key = (sl["metadata"].get("namespace") or "default", svc)
                self.slices.setdefault(key, []).append(sl)
        self.upstreams: dict[str, Upstream] = {}

    def service(self, ns: str, name: str) -> Obj | None:
        return self.services.get((ns, name))

    def service_port(self, ns: str, name: str, port: Any) -> Obj | None:
        """The Service's port entry for a number or a name (None if it has none)."""
        svc = self.service(ns, name)
        if svc is None:
            return None
        for p in (svc.get("spec") or {}).get("ports") or []:
            if (p.get("protocol") or "TCP") != "TCP":
                continue
            if isinstance(port, int) and p.get("port") == port:
                return p
            if isinstance(port, str) and port and p.get("name") == port:
                return p
        return None

    def upstream(self, ns: str, name: str, port: Any) -> Upstream | None:
        """The upstream of this Service port's ready endpoints, registered for
        rendering; None when the Service, the port or every endpoint is missing."""
        sp = self.service_port(ns, name, port)
        if sp is None:
            return None
        pname = sp.get("name") or ""
        servers = set()
        for sl in self.slices.get((ns, name), []):
            if sl.get("addressType", "IPv4") != "IPv4":
                continue
            ports = [p for p in sl.get("ports") or [] if (p.get("name") or "") == pname and p.get("port")]
            if not ports:
                continue
            for ep in sl.get("endpoints") or []:
                cond = ep.get("conditions") or {}
                if cond.get("ready") is False or cond.get("terminating"):
                    continue
                for addr in ep.get("addresses") or []:
                    servers.add("%s:%d" % (addr, int(ports[0]["port"])))
        if not servers:
            return None
        up = Upstream(upstream_name(ns, name, sp.get("port")), tuple(sorted(servers, key=_ip_order)))
        self.upstreams[up.name] = up
        return up


def upstream_name(ns: str, name: str, port: Any) -> str:
    return _safe("pn-%s-%s-%s" % (ns, name, port))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _ip_order(server: str) -> tuple[int, ...]:
    ip, _, port = server.rpartition(":")
    try:
        return tuple(int(x) for x in ip.split(".")) + (int(port),)
    except ValueError:
        return (1 << 16,)
