"""What a podnet component holds: the API client plus informers (its
listers), one per kind it reads, shared by every reconciler in the process.

Reads (list, find) come from the informers' copies, so a reconciler that
re-reads the whole state on every pass costs nothing on the wire; writes
go to the API server. mutate() reads the object fresh from the server
before changing it, so a read-modify-write never starts from a stale copy.
`watch_dirty(kind, event)` is how a reconciler asks to be woken on changes.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from podnet.api import ApiError, Kind, key_for, stored_kind, validate
from podnet.client.informer import Informer, OnChange
from podnet.client.rest import AlreadyExists, Client, Conflict, NotFound

Obj = dict[str, Any]
SYNC_TIMEOUT = 30.0


class Cluster:
    def __init__(self, client: Client, stop: threading.Event | None = None):
        self.client = client
        self.stop = stop or threading.Event()
        self._informers: dict[str, Informer] = {}
        self._lock = threading.Lock()

    # ---- informers ------------------------------------------------------------

    def _started(self, k: Kind) -> Informer:
        with self._lock:
            inf = self._informers.get(k.kind)
            if inf is None:
                inf = self._informers[k.kind] = Informer(self.client, k)
                inf.start(self.stop)
        return inf

    def informer(self, kind: str | Kind) -> Informer:
        """The kind's informer, once it has its first list (ApiError after
        SYNC_TIMEOUT without one)."""
        k = stored_kind(kind)
        inf = self._started(k)
        if not inf.synced.wait(SYNC_TIMEOUT):
            raise ApiError(
                "listing %s from %s: no answer in %d s" % (k.plural, self.client.config.server, SYNC_TIMEOUT)
            )
        return inf

    def watch_dirty(self, kind: str | Kind, dirty: threading.Event, on_change: OnChange | None = None) -> None:
        """Set `dirty` (and call on_change) on every change of `kind`, and once
        its first list is in. Does not wait for that list: a reconciler
        subscribes at the top of its thread, and an API server that is not
        answering yet must not end that thread; its passes read through
        list/find, which wait for the list (a pass that times out is retried
        by loop.run)."""
        self._started(stored_kind(kind)).add(dirty, on_change)

    # ---- reads from the copies ------------------------------------------------

    def list(self, kind: str | Kind, namespace: str | None = None) -> list[Obj]:
        k = stored_kind(kind)
        items = self.informer(k).values()
        if k.namespaced and namespace:
            items = [o for o in items if o["metadata"].get("namespace") == namespace]
        return sorted(items, key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))

    def find(self, kind: str | Kind, namespace: str | None, name: str) -> Obj | None:
        k = stored_kind(kind)
        return self.informer(k).get(key_for(k, (namespace or "default") if k.namespaced else None, name))

    def get(self, kind: str | Kind, namespace: str | None, name: str) -> Obj:
        obj = self.find(kind, namespace, name)
        if obj is None:
            k = stored_kind(kind)
            raise NotFound(404, "NotFound", '%s "%s" not found' % (k.plural, name))
        return obj

    # ---- writes to the server -------------------------------------------------

    def create(self, obj: Obj) -> Obj:
        return self.client.create(obj)

    def update(self, obj: Obj, status: bool = False) -> Obj:
        return self.client.update(obj, status=status)

    def mutate(
        self, kind: str | Kind, namespace: str | None, name: str, fn: Callable[[Obj], Any], status: bool = False
    ) -> Obj | None:
        return self.client.mutate(kind, namespace, name, fn, status=status)

    def patch(
        self, kind: str | Kind, namespace: str | None, name: str, patch: Any, ptype: str = "merge", sub: str = ""
    ) -> Obj:
        return self.client.patch(kind, namespace, name, patch, ptype=ptype, sub=sub)

    def delete(
        self,
        kind: str | Kind,
        namespace: str | None,
        name: str,
        grace: int | None = None,
        propagation: str | None = None,
        uid: str | None = None,
    ) -> Obj:
        return self.client.delete(kind, namespace, name, grace=grace, propagation=propagation, uid=uid)

    def apply(self, obj: Obj) -> tuple[Obj, str]:
        """Create, or update what the manifest owns (labels, annotations,
        spec and the other top-level fields, never status) of the object
        with that name. -> (object, "created" | "configured" | "unchanged")."""
        obj = validate(obj)
        meta = obj["metadata"]
        for _ in range(20):
            current = self.client.find(obj["kind"], meta.get("namespace"), meta["name"])
            if current is None:
                try:
                    return self.client.create(obj), "created"
                except AlreadyExists:
                    continue
            merged = copy.deepcopy(current)
            for field in ("labels", "annotations"):
                if field in meta:
                    merged["metadata"][field] = meta[field]
            for field in obj:
                if field not in ("apiVersion", "kind", "metadata", "status"):
                    merged[field] = obj[field]
            if obj["kind"] == "Service":  # what the server allocated stays
                _keep_service_allocations(current, merged)
            if merged == current:
                return current, "unchanged"
            try:
                got = self.client.update(merged)
            except Conflict:
                continue
            if got.get("metadata", {}).get("resourceVersion") == current["metadata"].get("resourceVersion"):
                return got, "unchanged"
            return got, "configured"
        raise Conflict(409, "Conflict", "%s %s kept changing under us" % (obj["kind"], meta["name"]))


def _keep_service_allocations(current: Obj, merged: Obj) -> None:
    spec, old = merged.get("spec") or {}, current.get("spec") or {}
    for f in ("clusterIP", "clusterIPs", "healthCheckNodePort"):
        if not spec.get(f) and old.get(f):
            spec[f] = old[f]
    old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in old.get("ports") or []}
    for p in spec.get("ports") or []:
        np = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
        if not p.get("nodePort") and np and spec.get("type") in ("NodePort", "LoadBalancer"):
            p["nodePort"] = np
