"""Object operations with kube-apiserver's semantics, over the store and the
watch cache: create, update (optimistic concurrency), delete (graceful for
pods, finalizers, propagation policy), each a single store write. A
Service's write is one store txn with the records of the ClusterIP and
NodePorts it takes or frees (allocator.py), retried with new picks when
another API server took a picked value first.

Writes run on the event loop's thread one at a time, so this server's own
writes reach the store, and the cache, in one order; a write another API
server made first shows as a store Conflict, retried by patch and answered
with 409 for an update that named a stale resourceVersion.
"""

from __future__ import annotations

import builtins
import copy
import logging
import time
from typing import Any

from podnet.api import key_for, prefix_for
from podnet.apiserver import errors
from podnet.apiserver.admission import NODEPORTS, SERVICE_CIDR, Admission, Invalid
from podnet.apiserver.allocator import ATTEMPTS, Allocator, Refused
from podnet.apiserver.cache import Cache
from podnet.apiserver.resources import BY_KIND, Resource
from podnet.store.base import Conflict, Op, Store

log = logging.getLogger("podnet.apiserver")
Obj = dict[str, Any]


def now_rfc3339(offset: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


class Registry:
    def __init__(
        self,
        store: Store,
        cache: Cache,
        admission: Admission | None = None,
        service_cidr: str = str(SERVICE_CIDR),
        node_ports: range = NODEPORTS,
    ):
        self.store, self.cache = store, cache
        self.admission = admission or Admission(
            lambda: self.cache.list("/registry/services/"), service_cidr=service_cidr, node_ports=node_ports
        )
        self.allocator = Allocator(store)  # with the admission's ranges (a test may replace it)

    def record_allocations(self) -> int:
        """Give every stored Service the allocation records it lacks (one
        stored by a podnet from before them), each in a txn that writes the
        Service again unchanged (so the watch cache sees one event per
        revision). A value two old Services share stays with the first; the
        other is logged. -> how many Services were recorded."""
        res, done = BY_KIND["Service"], 0
        recorded = self.allocator.recorded()
        for svc in self.list(res, None):
            ops = self.allocator.unrecorded(svc, recorded)
            if not ops:
                continue
            key = self.key(res, svc["metadata"].get("namespace"), svc["metadata"]["name"])
            try:
                rev = self.store.txn([Op(key, svc, int(svc["metadata"]["resourceVersion"]))] + ops)
            except Conflict as exc:
                if exc.key != key:
                    log.warning("service %s: %s is held by another Service too", key, exc.key)
                continue  # changed meanwhile: recorded at the next start
            self.cache.written(rev, "PUT", key, copy.deepcopy(svc))
            done += 1
        return done

    # ---- reads ----------------------------------------------------------------

    def key(self, res: Resource, ns: str | None, name: str) -> str:
        return key_for(res.kind, ns if res.namespaced else None, name)

    def get(self, res: Resource, ns: str | None, name: str) -> Obj:
        obj = self.cache.get(self.key(res, ns, name))
        if obj is None:
            raise errors.not_found(res.group, res.plural, name)
        return obj

    def list(self, res: Resource, ns: str | None) -> list[Obj]:
        return self.cache.list(prefix_for(res.kind, ns if res.namespaced else None))

    # ---- writes ---------------------------------------------------------------

    def _invalid(self, res: Resource, name: str, exc: Invalid) -> errors.StatusError:
        return errors.invalid(res.kind.kind, res.group, res.plural, name, [(exc.path, exc.reason)])

    def _check_kind(self, res: Resource, obj: Any, ns: str | None) -> Obj:
        if not isinstance(obj, dict):
            raise errors.bad_request("the body must be a JSON object")
        obj.setdefault("apiVersion", res.kind.api_version)
        obj.setdefault("kind", res.kind.kind)
        if obj.get("kind") != res.kind.kind or obj.get("apiVersion") != res.kind.api_version:
            raise errors.bad_request(
                "the API version (%s) and kind (%s) of the body do not match the resource %s (%s %s)"
                % (obj.get("apiVersion"), obj.get("kind"), res.plural, res.kind.api_version, res.kind.kind)
            )
        meta = (
            obj.setdefault("metadata", {}) if isinstance(obj.get("metadata"), dict) or "metadata" not in obj else None
        )
        if meta is None:
            raise errors.bad_request("metadata must be an object")
        if res.namespaced and ns:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise errors.bad_request(
                    "the namespace of the provided object (%s) does not match the namespace sent on the request (%s)"
                    % (meta["namespace"], ns)
                )
            meta["namespace"] = ns
        return obj

    def _ns_exists(self, res: Resource, ns: str | None) -> None:
        if not res.namespaced or not ns:
            return
        nso = self.cache.get(key_for("Namespace", None, ns))
        if nso is None:
            raise errors.not_found("", "namespaces", ns)
        if (nso.get("metadata") or {}).get("deletionTimestamp"):
            raise errors.StatusError(
                403, "Forbidden", "unable to create new content in namespace %s because it is being terminated" % ns
            )

    def create(self, res: Resource, ns: str | None, body: Any, dry_run: bool = False) -> Obj:
        obj = self._check_kind(res, body, ns)
        if res.kind.kind == "DaemonSet" and not dry_run:
            from podnet.api.daemonset import REFUSED

            raise errors.StatusError(405, "MethodNotAllowed", REFUSED)
        name = obj["metadata"].get("name")
        if not name and obj["metadata"].get("generateName"):
            import secrets

            name = obj["metadata"]["name"] = obj["metadata"]["generateName"] + secrets.token_hex(3)[:5]
        try:
            obj = self.admission.create(obj)
        except Invalid as exc:
            raise self._invalid(res, str(name or ""), exc) from None
        self._ns_exists(res, obj["metadata"].get("namespace"))
        key = self.key(res, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if self.cache.get(key) is not None:
            raise errors.already_exists(res.group, res.plural, obj["metadata"]["name"])
        if res.kind.kind == "Service":
            return self._write_service(res, key, None, obj, dry_run)
        if dry_run:
            return obj
        try:
            rev = self.store.put(key, obj, expect_rev=0)
        except Conflict:
            raise errors.already_exists(res.group, res.plural, obj["metadata"]["name"]) from None
        self.cache.written(rev, "PUT", key, obj)
        return obj

    def _write_service(self, res: Resource, key: str, current: Obj | None, new: Obj, dry_run: bool) -> Obj:
        """Create (current None) or replace a Service in one txn with the
        records of what it newly holds and without those it dropped. A picked
        value another writer recorded first: pick again; a requested one: 422."""
        name = new["metadata"]["name"]
        ranges = (self.admission.service_cidr, self.admission.node_ports)
        for attempt in range(ATTEMPTS):
            svc = copy.deepcopy(new)
            try:
                ops, picked = self.allocator.assign(svc, current, *ranges, spread=attempt > 0)
            except Refused as exc:
                raise self._invalid(res, name, Invalid(exc.path, exc.reason)) from None
            if dry_run or svc == current:
                return svc
            expect = 0 if current is None else int(current["metadata"]["resourceVersion"])
            try:
                rev = self.store.txn([Op(key, svc, expect)] + ops)
            except Conflict as exc:
                if exc.key == key:
                    if current is None:
                        raise errors.already_exists(res.group, res.plural, name) from None
                    raise errors.modified(res.group, res.plural, name) from None
                if exc.key not in picked:  # asked for, and taken meanwhile by another API server
                    try:  # the next pass sees the record: a 422 with its path and message
                        self.allocator.assign(copy.deepcopy(new), current, *ranges)
                    except Refused as refused:
                        raise self._invalid(res, name, Invalid(refused.path, refused.reason)) from None
                log.info("service %s: %s was taken by another writer; picking again", name, exc.key)
                continue
            self.cache.written(rev, "PUT", key, svc)
            return svc
        raise errors.StatusError(
            500, "InternalError", "Internal error occurred: allocating for service %s: lost %d races" % (name, ATTEMPTS)
        )

    def update(
        self, res: Resource, ns: str | None, name: str, body: Any, subresource: str = "", dry_run: bool = False
    ) -> Obj:
        obj = self._check_kind(res, body, ns)
        if obj["metadata"].get("name") not in (None, name):
            raise errors.bad_request(
                "the name of the object (%s) does not match the name on the URL (%s)" % (obj["metadata"]["name"], name)
            )
        obj["metadata"]["name"] = name
        current = self.get(res, ns, name)
        want_rv = obj["metadata"].get("resourceVersion")
        if want_rv and want_rv != current["metadata"].get("resourceVersion"):
            raise errors.modified(res.group, res.plural, name)
        return self.replace(res, current, obj, subresource, dry_run)

    def replace(self, res: Resource, current: Obj, new: Obj, subresource: str = "", dry_run: bool = False) -> Obj:
        """Store `new` in place of `current` (as read from the cache)."""
        name = current["metadata"]["name"]
        try:
            new = self.admission.update(current, new, subresource)
        except Invalid as exc:
            raise self._invalid(res, name, exc) from None
        if new == current:
            return current
        key = self.key(res, current["metadata"].get("namespace"), name)
        meta = new["metadata"]
        gone = meta.get("deletionTimestamp") and not meta.get("finalizers") and res.kind.kind != "Pod"
        if res.kind.kind == "Service" and not gone:
            return self._write_service(res, key, current, new, dry_run)
        if dry_run:
            return new
        if gone:
            # the last finalizer went: the object goes now
            return self._remove(res, key, current)
        try:
            rev = self.store.put(key, new, expect_rev=int(current["metadata"]["resourceVersion"]))
        except Conflict:
            raise errors.modified(res.group, res.plural, name) from None
        self.cache.written(rev, "PUT", key, new)
        return new

    def _remove(self, res: Resource, key: str, current: Obj) -> Obj:
        expect = int(current["metadata"]["resourceVersion"])
        if res.kind.kind == "Service":  # the Service and what it holds go together
            try:
                rev: int | None = self.store.txn([Op(key, None, expect)] + self.allocator.release(current))
            except Conflict as exc:
                if exc.found:
                    raise errors.modified(res.group, res.plural, current["metadata"]["name"]) from None
                rev = None
        else:
            rev = self.store.delete(key, expect_rev=expect)
        if rev is None:
            raise errors.not_found(res.group, res.plural, current["metadata"]["name"])
        self.cache.written(rev, "DELETE", key, None)
        return current

    def delete(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        grace: int | None = None,
        propagation: str | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """-> the object as it is after the request: marked for deletion
        (graceful pod, finalizers, foreground) or its last state."""
        current = self.get(res, ns, name)
        meta = current["metadata"]
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise errors.conflict(
                res.group,
                res.plural,
                name,
                "Precondition failed: UID in precondition: %s, UID in object meta: %s" % (pre["uid"], meta.get("uid")),
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise errors.conflict(res.group, res.plural, name, "Precondition failed: resourceVersion mismatch")
        if dry_run:
            return current
        key = self.key(res, ns, name)
        kind = res.kind.kind
        marked = copy.deepcopy(current)
        mmeta = marked["metadata"]
        finalizers = list(mmeta.get("finalizers") or [])
        if propagation == "Orphan":
            self._orphan(meta.get("uid"))
        elif propagation == "Foreground" and "foregroundDeletion" not in finalizers and self._has_dependents(meta):
            finalizers.append("foregroundDeletion")
        if kind == "Namespace":
            if "kubernetes" not in (current.get("spec") or {}).get("finalizers", []):
                return self._remove(res, key, current)
            # the namespace controller (gc.py) empties it, then removes it
            if mmeta.get("deletionTimestamp"):
                return current
            mmeta["deletionTimestamp"] = now_rfc3339()
            marked["status"] = {"phase": "Terminating"}
            return self._mark(res, key, current, marked)
        if kind == "Pod" and (current.get("spec") or {}).get("nodeName"):
            # graceful: the node agent stops the containers, tears the
            # network down, and deletes again with grace 0 (as kubelet)
            g = (
                grace
                if grace is not None
                else int((current.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
            )
            if g > 0:
                if not mmeta.get("deletionTimestamp") or g < int(mmeta.get("deletionGracePeriodSeconds") or g + 1):
                    mmeta["deletionTimestamp"] = now_rfc3339(g)
                    mmeta["deletionGracePeriodSeconds"] = g
                    mmeta["finalizers"] = finalizers or mmeta.get("finalizers")
                    if not mmeta["finalizers"]:
                        mmeta.pop("finalizers")
                    return self._mark(res, key, current, marked)
                return current
        if finalizers:
            if not mmeta.get("deletionTimestamp"):
                mmeta["deletionTimestamp"] = now_rfc3339()
                mmeta["deletionGracePeriodSeconds"] = 0
            mmeta["finalizers"] = finalizers
            return self._mark(res, key, current, marked) if marked != current else current
        return self._remove(res, key, current)

    def bind(self, res: Resource, pod: Obj, node: str, now: str) -> Obj:
        """pods/binding: the node, and the PodScheduled condition with it
        (kube-apiserver's binding sets both in one write)."""
        new = copy.deepcopy(pod)
        new["spec"]["nodeName"] = node
        status = new.setdefault("status", {})
        status.setdefault("phase", "Pending")
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        status["conditions"] = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now}] + conds
        key = self.key(res, pod["metadata"].get("namespace"), pod["metadata"]["name"])
        return self._mark(res, key, pod, new)

    def _mark(self, res: Resource, key: str, current: Obj, marked: Obj) -> Obj:
        """Write deletion metadata, bypassing admission (clients cannot set it)."""
        marked["metadata"].pop("resourceVersion", None)
        try:
            rev = self.store.put(key, marked, expect_rev=int(current["metadata"]["resourceVersion"]))
        except Conflict:
            raise errors.modified(res.group, res.plural, current["metadata"]["name"]) from None
        self.cache.written(rev, "PUT", key, marked)
        return marked

    # ---- owners ---------------------------------------------------------------

    def dependents(self, uid: str | None) -> builtins.list[tuple[Resource, Obj]]:
        if not uid:
            return []
        out = []
        for res in BY_KIND.values():
            for o in self.list(res, None):
                if any(r.get("uid") == uid for r in (o["metadata"].get("ownerReferences") or [])):
                    out.append((res, o))
        return out

    def _has_dependents(self, meta: Obj) -> bool:
        return bool(self.dependents(meta.get("uid")))

    def _orphan(self, uid: str | None) -> None:
        for res, o in self.dependents(uid):
            new = copy.deepcopy(o)
            refs = [r for r in new["metadata"].get("ownerReferences", []) if r.get("uid") != uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences", None)
            try:
                self.replace(res, o, new)
            except errors.StatusError as exc:
                log.warning("orphaning %s: %s", o["metadata"]["name"], exc.message)
