"""Garbage collection and namespace deletion, inside the API server.

Level-triggered like every podnet loop: a change in the cache only marks
work pending, and each pass looks at the whole state:
- an object whose every owner (ownerReferences by uid) is gone is deleted,
  through the same delete as a client's (a pod goes gracefully, its node
  agent tears it down), so deleting a Deployment deletes its pods;
- an owner deleted with propagationPolicy Foreground waits (finalizer
  `foregroundDeletion`) until its dependents are gone, and they are deleted
  in the foreground too (Deployment -> ReplicaSets -> pods);
- a Namespace marked for deletion has everything in it deleted, then goes.
kube-controller-manager does this as a client in Kubernetes; here the
cache is at hand, so a pass costs one walk over memory.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time

from podnet.apiserver import errors
from podnet.apiserver.cache import Change
from podnet.apiserver.registry import Registry
from podnet.apiserver.resources import BY_KIND, RESOURCES

log = logging.getLogger("podnet.apiserver.gc")
RESYNC = 5.0
GRACE_FOR_NEW = 2.0  # an owner may be created a moment after its dependent's reference is seen


class Collector:
    def __init__(self, registry: Registry):
        self.registry = registry
        self.dirty = asyncio.Event()
        registry.cache.listeners.append(self._changed)

    def _changed(self, ch: Change) -> None:
        # a delete may orphan dependents, a mark may start foreground or
        # namespace deletion; an object created with a dead owner is found by
        # the periodic pass (status writes, the bulk of all writes, wake nothing)
        meta = ch.obj.get("metadata") or {}
        if ch.type == "DELETED" or (
            meta.get("deletionTimestamp") and not (ch.old or {}).get("metadata", {}).get("deletionTimestamp")
        ):
            self.dirty.set()
        elif (
            ch.type == "MODIFIED"
            and meta.get("deletionTimestamp")
            and meta.get("finalizers") != ((ch.old or {}).get("metadata") or {}).get("finalizers")
        ):
            self.dirty.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.dirty.wait(), RESYNC)
            except TimeoutError:
                pass
            self.dirty.clear()
            try:
                self.sweep()
            except Exception:  # the next pass starts from full state again
                log.exception("garbage collection pass failed")
            await asyncio.sleep(0.05)  # merge bursts (a Deployment's pods go together)

    def sweep(self) -> None:
        reg = self.registry
        alive = {}
        for res in RESOURCES:
            for o in reg.list(res, None):
                alive[o["metadata"].get("uid")] = (res, o)
        now = time.time()
        for res, o in list(alive.values()):
            meta = o["metadata"]
            refs = meta.get("ownerReferences") or []
            if refs and not any(r.get("uid") in alive for r in refs) and not meta.get("deletionTimestamp"):
                if now - _created(meta) < GRACE_FOR_NEW:
                    self.dirty.set()
                    continue
                log.info("%s %s/%s: owner gone, deleting", res.kind.kind, meta.get("namespace"), meta["name"])
                self._delete(res, o)
            if meta.get("deletionTimestamp") and "foregroundDeletion" in (meta.get("finalizers") or []):
                deps = reg.dependents(meta.get("uid"))
                for dres, d in deps:
                    if not d["metadata"].get("deletionTimestamp"):
                        # foreground all the way down, as the Kubernetes GC: a
                        # Deployment waits for its ReplicaSets, they for their pods
                        self._delete(dres, d, "Foreground")
                if not deps:
                    self._drop_finalizer(res, o, "foregroundDeletion")
        for o in reg.list(BY_KIND["Namespace"], None):
            if o["metadata"].get("deletionTimestamp"):
                self._empty_namespace(o)

    def _delete(self, res, o, propagation: str | None = None) -> None:  # type: ignore[no-untyped-def]
        meta = o["metadata"]
        try:
            ns, name, pre = meta.get("namespace"), meta["name"], {"uid": meta.get("uid")}
            self.registry.delete(res, ns, name, propagation=propagation, preconditions=pre)
        except errors.StatusError as exc:
            if exc.code != 404:
                log.warning("deleting %s %s: %s", res.kind.kind, meta["name"], exc.message)

    def _drop_finalizer(self, res, o, name: str) -> None:  # type: ignore[no-untyped-def]
        new = copy.deepcopy(o)
        new["metadata"]["finalizers"] = [f for f in new["metadata"].get("finalizers", []) if f != name]
        try:
            self.registry.replace(res, o, new)
        except errors.StatusError as exc:
            log.warning("finalizer %s of %s: %s", name, o["metadata"]["name"], exc.message)

    def _empty_namespace(self, ns_obj) -> None:  # type: ignore[no-untyped-def]
        ns = ns_obj["metadata"]["name"]
        left = 0
        for res in RESOURCES:
            if not res.namespaced:
                continue
            for o in self.registry.list(res, ns):
                left += 1
                if not o["metadata"].get("deletionTimestamp"):
                    self._delete(res, o)
        if left:
            self.dirty.set()
            return
        try:
            self.registry._remove(BY_KIND["Namespace"], self.registry.key(BY_KIND["Namespace"], None, ns), ns_obj)
            log.info("namespace %s: empty, deleted", ns)
        except errors.StatusError:
            pass


def _created(meta) -> float:  # type: ignore[no-untyped-def]
    import calendar

    try:
        return calendar.timegm(time.strptime(meta.get("creationTimestamp", ""), "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return 0.0
