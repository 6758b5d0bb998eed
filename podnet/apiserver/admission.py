"""What the API server does to an object before it is stored.

create: validation and defaults (podnet.api.validate, which names the field
path of any error), uid, creationTimestamp, generation 1. The allocations
kube-apiserver makes synchronously (a Service's ClusterIP from
service_cidr, NodePorts and healthCheckNodePort from node_ports) are the
allocator's (allocator.py), made by the registry in the Service's own
store write, with the ranges held here.

update: identity fields (uid, creationTimestamp, name, namespace) cannot
change; the main resource does not change status and the status
subresource changes only status (kube-apiserver's status strategy);
generation goes up when anything outside metadata and status changes; a
Service keeps what it was allocated unless the update names new values
(its ClusterIP cannot change).
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from podnet.api import ApiError, FieldError, stamp, validate
from podnet.api.ingress import secret_update

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


# Kinds without a status in kube-apiserver: none is added on create (an
# RBAC object given one would then fail its own update's validation).
NO_STATUS = (
    "Namespace",
    "Event",
    "Endpoints",
    "EndpointSlice",
    "Secret",
    "IngressClass",
    "Lease",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
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
    def __init__(
        self,
        services: Callable[[], Iterable[Obj]],
        service_cidr: str = str(SERVICE_CIDR),
        node_ports: range = NODEPORTS,
    ):
        self.services = services  # every stored Service (from the cache), for the allocator
        self.service_cidr = ipaddress.ip_network(service_cidr)
        self.node_ports = node_ports

    def create(self, obj: Obj) -> Obj:
        obj = check(obj)
        meta = obj["metadata"]
        for f in _SERVER_META:
            meta.pop(f, None)
        stamp(obj)
        meta["generation"] = 1
        # kinds without status (Secret, IngressClass, ...) get none, as in kube-apiserver
        if obj["kind"] not in NO_STATUS or "status" in obj:
            obj.setdefault("status", {})
        if obj["kind"] == "Namespace":
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
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
        if new["kind"] == "Secret":
            try:
                secret_update(old, new)
            except FieldError as exc:
                raise Invalid(exc.path, exc.reason) from None
        return new

    # ---- Services -------------------------------------------------------------

    def _keep_allocations(self, old: Obj, new: Obj) -> None:
        """An update that does not name the allocated values keeps them; the
        allocator (allocator.py) then records what is new and frees what went."""
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
