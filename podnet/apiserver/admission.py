"""What the API server does to an object before it is stored.

create: validation and defaults (podnet.api.validate, which names the field
path of any error), uid, creationTimestamp, generation 1, and the
allocations kube-apiserver makes synchronously so that a create fails
cleanly when a range is exhausted: a Service's ClusterIP (10.96.0.0/12),
NodePorts (30000-32767) and healthCheckNodePort.

update: identity fields (uid, creationTimestamp, name, namespace) cannot
change; the main resource does not change status and the status
subresource changes only status (kube-apiserver's status strategy);
generation goes up when anything outside metadata and status changes; a
Service keeps what it was allocated unless the update names new values.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from podnet.api import ApiError, FieldError, stamp, validate

Obj = dict[str, Any]
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
NODEPORTS = range(30000, 32768)
# fields of metadata only the server sets
_SERVER_META = (
    "uid",
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


class Invalid(ApiError):
    """422: the object is not valid; .path names the field."""

    def __init__(self, path: str, reason: str):
        super().__init__("%s: %s" % (path, reason) if path else reason)
        self.path, self.reason = path, reason


def check(obj: Obj) -> Obj:
    """validate(), with its FieldError turned into Invalid (path and reason)."""
    try:
        return validate(obj)
    except FieldError as exc:
        text = str(exc)
        path, sep, reason = text.partition(": ")
        raise Invalid(path if sep else "", reason if sep else text) from None


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Admission:
    def __init__(self, services: Callable[[], Iterable[Obj]], service_cidr: str = str(SERVICE_CIDR)):
        self.services = services  # every stored Service (from the cache)
        self.service_cidr = ipaddress.ip_network(service_cidr)

    def create(self, obj: Obj) -> Obj:
        obj = check(obj)
        meta = obj["metadata"]
        for f in _SERVER_META:
            meta.pop(f, None)
        stamp(obj)
        meta["generation"] = 1
        if obj["kind"] not in ("Namespace", "Event", "Endpoints", "EndpointSlice") or "status" in obj:
            obj.setdefault("status", {})
        if obj["kind"] == "Namespace":
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        if obj["kind"] == "Service":
            self._allocate_service(obj)
        return obj

    def update(self, old: Obj, new: Obj, subresource: str = "") -> Obj:
        if subresource == "status":
            # only status is taken from the request; the rest stays as stored
            status = new.get("status")
            if status is not None and not isinstance(status, dict):
                raise Invalid("status", "must be a mapping")
            out = copy.deepcopy(old)
            out["status"] = copy.deepcopy(status) if status is not None else {}
            return out
        new = check(new)
        meta, ometa = new["metadata"], old["metadata"]
        for f in ("name", "namespace"):
            if meta.get(f) != ometa.get(f):
                raise Invalid("metadata." + f, "field is immutable")
        for f in _SERVER_META:
            if f in ometa:
                meta[f] = ometa[f]
            else:
                meta.pop(f, None)
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        if _spec_part(new) != _spec_part(old):
            meta["generation"] = int(ometa.get("generation") or 1) + 1
        if new["kind"] == "Service":
            self._keep_allocations(old, new)
        return new

    # ---- Services -------------------------------------------------------------

    def _others(self, svc: Obj) -> list[Obj]:
        me = (svc["metadata"].get("namespace"), svc["metadata"]["name"])
        return [s for s in self.services() if (s["metadata"].get("namespace"), s["metadata"]["name"]) != me]

    def _keep_allocations(self, old: Obj, new: Obj) -> None:
        spec, ospec = new["spec"], old.get("spec", {})
        if not spec.get("clusterIP") and ospec.get("clusterIP"):
            spec["clusterIP"] = ospec["clusterIP"]
            spec["clusterIPs"] = ospec.get("clusterIPs", [ospec["clusterIP"]])
        elif spec.get("clusterIP") != ospec.get("clusterIP") and ospec.get("clusterIP"):
            raise Invalid("spec.clusterIP", "field is immutable")
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in ospec.get("ports", [])}
        for p in spec.get("ports", []):
            if not p.get("nodePort") and old_ports.get((p.get("port"), p.get("protocol", "TCP"))):
                p["nodePort"] = old_ports[(p.get("port"), p.get("protocol", "TCP"))]
        if not spec.get("healthCheckNodePort") and ospec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = ospec["healthCheckNodePort"]
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            self._allocate_nodeports(new)
        else:
            for p in spec.get("ports", []):
                p.pop("nodePort", None)

    def _allocate_service(self, svc: Obj) -> None:
        spec = svc["spec"]
        if spec.get("type") == "ExternalName":
            return
        others = self._others(svc)
        if spec.get("clusterIP") in (None, ""):
            used = {s["spec"].get("clusterIP") for s in others}
            # .1 is the kubernetes Service, .10 is kept for the cluster DNS
            net = self.service_cidr.network_address
            reserved = {str(net + 1), str(net + 10)}
            for ip in self.service_cidr.hosts():
                if str(ip) not in used and str(ip) not in reserved:
                    spec["clusterIP"] = str(ip)
                    break
            else:
                raise Invalid("spec.clusterIP", "no free address left in the service range %s" % self.service_cidr)
        elif spec["clusterIP"] != "None":
            try:
                ip = ipaddress.ip_address(spec["clusterIP"])
            except ValueError:
                raise Invalid("spec.clusterIP", "must be a valid IP address, got %r" % spec["clusterIP"]) from None
            if ip not in self.service_cidr:
                raise Invalid("spec.clusterIP", "%s is not in the service range %s" % (ip, self.service_cidr))
            if any(s["spec"].get("clusterIP") == str(ip) for s in others):
                raise Invalid("spec.clusterIP", "%s is already allocated" % ip)
        if spec.get("clusterIP") and spec["clusterIP"] != "None":
            spec["clusterIPs"] = [spec["clusterIP"]]
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            self._allocate_nodeports(svc)

    def _allocate_nodeports(self, svc: Obj) -> None:
        spec = svc["spec"]
        used: set[int] = set()
        for s in self._others(svc):
            used |= {p["nodePort"] for p in s["spec"].get("ports", []) if p.get("nodePort")}
            if s["spec"].get("healthCheckNodePort"):
                used.add(s["spec"]["healthCheckNodePort"])
        for i, p in enumerate(spec.get("ports", [])):
            if p.get("nodePort"):
                if p["nodePort"] in used:
                    raise Invalid("spec.ports[%d].nodePort" % i, "%d is already allocated" % p["nodePort"])
                used.add(p["nodePort"])
                continue
            port = next((n for n in NODEPORTS if n not in used), None)
            if port is None:
                raise Invalid("spec.ports[%d].nodePort" % i, "no free port left in 30000-32767")
            p["nodePort"] = port
            used.add(port)
        # a LoadBalancer with externalTrafficPolicy Local: the port each node
        # answers health checks on (200 with a local endpoint, 503 without)
        local_lb = spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"
        hc = spec.get("healthCheckNodePort")
        if not local_lb:
            spec.pop("healthCheckNodePort", None)
        elif hc:
            if hc in used:
                raise Invalid("spec.healthCheckNodePort", "%d is already allocated" % hc)
        else:
            port = next((n for n in NODEPORTS if n not in used), None)
            if port is None:
                raise Invalid("spec.healthCheckNodePort", "no free port left in 30000-32767")
            spec["healthCheckNodePort"] = port
