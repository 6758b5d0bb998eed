"""Kubernetes objects over a Store: what the API server does for kubectl.

create/update/apply/delete by kind and name with optimistic concurrency
(resourceVersion = the key's mod revision), uid and creationTimestamp stamped
on create, and the allocations the API server makes synchronously on create
so that `apply` can fail with a clear error and change nothing: a Service's
ClusterIP (10.96.0.0/12) and NodePorts (30000-32767). Everything that can be
filled in later (podCIDRs, placement, replicas, EndpointSlices) is left to
the level-triggered controllers.
"""

import copy
import ipaddress
import time

from podnet.api import KINDS, ApiError, key_for, prefix_for, stamp, validate
from podnet.store.base import Conflict

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
NODEPORTS = range(30000, 32768)


class NotFound(ApiError):
    pass


class AlreadyExists(ApiError):
    pass


class Objects:
    def __init__(self, store, service_cidr=SERVICE_CIDR):
        self.store = store
        self.service_cidr = ipaddress.ip_network(service_cidr)

    # ---- reads -----------------------------------------------------------

    def get(self, kind, namespace, name):
        obj, _ = self.store.get(key_for(KINDS[kind], namespace, name))
        if obj is None:
            raise NotFound('%s "%s" not found' % (KINDS[kind].plural, name))
        return obj

    def find(self, kind, namespace, name):
        return self.store.get(key_for(KINDS[kind], namespace, name))[0]

    def list(self, kind, namespace=None):
        items, _ = self.store.list(prefix_for(KINDS[kind], namespace))
        return [obj for _, obj, _ in items]

    def list_rev(self, kind, namespace=None):
        items, rev = self.store.list(prefix_for(KINDS[kind], namespace))
        return [obj for _, obj, _ in items], rev

    # ---- writes ----------------------------------------------------------

    def _key(self, obj):
        meta = obj["metadata"]
        return key_for(KINDS[obj["kind"]], meta.get("namespace"), meta["name"])

    def create(self, obj):
        obj = copy.deepcopy(obj)
        stamp(obj)
        if obj["kind"] != "Namespace":
            obj.setdefault("status", {})
        obj["metadata"].pop("resourceVersion", None)
        if obj["kind"] == "Service":
            self._allocate_service(obj)
        try:
            self.store.put(self._key(obj), obj, expect_rev=0)
        except Conflict:
            raise AlreadyExists(
                '%s "%s" already exists' % (KINDS[obj["kind"]].plural, obj["metadata"]["name"])
            ) from None
        return obj

    def update(self, obj):
        """Write back an object read earlier; Conflict when it changed since."""
        rv = int(obj["metadata"].get("resourceVersion") or 0)
        stored = copy.deepcopy(obj)
        stored["metadata"].pop("resourceVersion", None)
        rev = self.store.put(self._key(obj), stored, expect_rev=rv or None)
        stored["metadata"]["resourceVersion"] = str(rev)
        return stored

    def mutate(self, kind, namespace, name, fn, attempts=20):
        """Read-modify-write with retries on conflict; fn(obj) changes obj in
        place (returns False to skip the write). Returns the object or None."""
        for _ in range(attempts):
            obj = self.find(kind, namespace, name)
            if obj is None:
                return None
            if fn(obj) is False:
                return obj
            try:
                return self.update(obj)
            except Conflict:
                time.sleep(0.01)
        raise Conflict("%s %s/%s kept changing under us" % (kind, namespace, name))

    def apply(self, obj):
        """Create, or update spec/labels of the existing object by name.
        -> (object, "created" | "configured" | "unchanged")."""
        obj = validate(obj)
        meta = obj["metadata"]
        for _ in range(20):
            current = self.find(obj["kind"], meta.get("namespace"), meta["name"])
            if current is None:
                try:
                    return self.create(obj), "created"
                except AlreadyExists:
                    continue
            merged = copy.deepcopy(current)
            for field in ("labels", "annotations"):
                if field in meta:
                    merged["metadata"][field] = meta[field]
            # every top-level field the user owns (spec; EndpointSlice keeps
            # endpoints/ports/addressType at the top), never status
            kept = self._keep_allocations(current, obj)
            for field in obj:
                if field not in ("apiVersion", "kind", "metadata", "status"):
                    merged[field] = kept[field]
            if merged == current:
                return current, "unchanged"
            try:
                return self.update(merged), "configured"
            except Conflict:
                continue
        raise Conflict("%s %s kept changing under us" % (obj["kind"], meta["name"]))

    def delete(self, kind, namespace, name):
        rev = self.store.delete(key_for(KINDS[kind], namespace, name))
        if rev is None:
            raise NotFound('%s "%s" not found' % (KINDS[kind].plural, name))
        return rev

    # ---- allocation (API-server side) ------------------------------------

    def _keep_allocations(self, current, new):
        """An applied Service keeps the ClusterIP and NodePorts it was given."""
        new = copy.deepcopy(new)
        if new["kind"] != "Service":
            return new
        spec, old = new["spec"], current.get("spec", {})
        if not spec.get("clusterIP") and old.get("clusterIP"):
            spec["clusterIP"] = old["clusterIP"]
            spec["clusterIPs"] = old.get("clusterIPs", [old["clusterIP"]])
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in old.get("ports", [])}
        for p in spec.get("ports", []):
            if not p.get("nodePort") and old_ports.get((p.get("port"), p.get("protocol", "TCP"))):
                p["nodePort"] = old_ports[(p.get("port"), p.get("protocol", "TCP"))]
        if not spec.get("healthCheckNodePort") and old.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = old["healthCheckNodePort"]
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            self._allocate_nodeports(spec, exclude=current["metadata"]["name"])
        return new

    def _services(self, but=None):
        """Every Service except `but` (the one being allocated for)."""
        return [
            s
            for s in self.list("Service")
            if but is None
            or (s["metadata"].get("namespace"), s["metadata"]["name"])
            != (but["metadata"].get("namespace"), but["metadata"]["name"])
        ]

    def _allocate_service(self, svc):
        spec = svc["spec"]
        if spec.get("type") == "ExternalName":
            return
        if spec.get("clusterIP") in (None, ""):
            used = {s["spec"].get("clusterIP") for s in self._services(svc)}
            # .1 is the kubernetes service, .10 is kept for cluster DNS
            reserved = {str(self.service_cidr.network_address + n) for n in (1, 10)}
            if svc["metadata"]["name"] == "kubernetes" and svc["metadata"].get("namespace") == "default":
                reserved.discard(str(self.service_cidr.network_address + 1))
            if svc["metadata"]["name"] == "kube-dns" and svc["metadata"].get("namespace") == "kube-system":
                reserved.discard(str(self.service_cidr.network_address + 10))
            for ip in self.service_cidr.hosts():
                if str(ip) not in used and str(ip) not in reserved:
                    spec["clusterIP"] = str(ip)
                    break
            else:
                raise ApiError("spec.clusterIP: no free address left in the service range %s" % self.service_cidr)
        elif spec["clusterIP"] != "None":
            ip = ipaddress.ip_address(spec["clusterIP"])
            if ip not in self.service_cidr:
                raise ApiError("spec.clusterIP: %s is not in the service range %s" % (ip, self.service_cidr))
            if any(s["spec"].get("clusterIP") == str(ip) for s in self._services(svc)):
                raise ApiError("spec.clusterIP: %s is already allocated" % ip)
        if spec.get("clusterIP") and spec["clusterIP"] != "None":
            spec["clusterIPs"] = [spec["clusterIP"]]
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            self._allocate_nodeports(spec)

    def _allocate_nodeports(self, spec, exclude=None):
        used = set()
        for s in self._services():
            if s["metadata"]["name"] == exclude:
                continue
            used |= {p.get("nodePort") for p in s["spec"].get("ports", []) if p.get("nodePort")}
            used.add(s["spec"].get("healthCheckNodePort"))
        for i, p in enumerate(spec.get("ports", [])):
            if p.get("nodePort"):
                if p["nodePort"] in used:
                    raise ApiError("spec.ports[%d].nodePort: %d is already allocated" % (i, p["nodePort"]))
                used.add(p["nodePort"])
                continue
            for port in NODEPORTS:
                if port not in used:
                    p["nodePort"] = port
                    used.add(port)
                    break
            else:
                raise ApiError("spec.ports[%d].nodePort: no free port left in 30000-32767" % i)
        # a LoadBalancer with externalTrafficPolicy Local: the port each node
        # answers health checks on (200 with a local endpoint, 503 without)
        local_lb = spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"
        hc = spec.get("healthCheckNodePort")
        if not local_lb:
            spec.pop("healthCheckNodePort", None)
        elif hc:
            if hc in used:
                raise ApiError("spec.healthCheckNodePort: %d is already allocated" % hc)
        else:
            port = next((p for p in NODEPORTS if p not in used), None)
            if port is None:
                raise ApiError("spec.healthCheckNodePort: no free port left in 30000-32767")
            spec["healthCheckNodePort"] = port
