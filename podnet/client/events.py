"""Events: what a component tells the user about an object (kubectl
describe, kubectl get events), recorded as client-go's recorder does.

Repeats of the same (object, type, reason, message) are one Event whose
count and lastTimestamp go up, so a probe failing every second does not
make a new object each time. Recording never blocks the caller and never
fails it: events go through a queue to one writer thread, and an event the
server refuses is logged and dropped (they are information, not state).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from typing import Any

from podnet.api import ApiError
from podnet.client.rest import AlreadyExists, Client

log = logging.getLogger("podnet.events")
Obj = dict[str, Any]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Recorder:
    def __init__(self, client: Client, component: str, host: str | None = None):
        self.client, self.component, self.host = client, component, host
        self.q: queue.Queue[tuple[Obj, str, str, str]] = queue.Queue(maxsize=1000)
        self._thread: threading.Thread | None = None

    def event(self, obj: Obj, etype: str, reason: str, message: str) -> None:
        """Record, in the background; `obj` is the object the event is about."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="events")
            self._thread.start()
        try:
            self.q.put_nowait((obj, etype, reason, message))
        except queue.Full:
            log.warning("event queue full; dropped %s %s", reason, message)

    def _run(self) -> None:
        while True:
            obj, etype, reason, message = self.q.get()
            try:
                self.write(obj, etype, reason, message)
            except (ApiError, OSError) as exc:
                log.warning("event %s on %s: %s", reason, (obj.get("metadata") or {}).get("name"), exc)

    def write(self, obj: Obj, etype: str, reason: str, message: str) -> Obj:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        digest = hashlib.sha1(("%s/%s/%s/%s" % (meta.get("uid"), etype, reason, message)).encode()).hexdigest()
        name = "%s.%s" % (meta.get("name"), digest[:16])
        now = _now()
        ev: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                k: v
                for k, v in (
                    ("kind", obj.get("kind")),
                    ("apiVersion", obj.get("apiVersion")),
                    ("name", meta.get("name")),
                    ("namespace", meta.get("namespace")),
                    ("uid", meta.get("uid")),
                )
                if v
            },
            "reason": reason,
            "message": message,
            "type": etype,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "reportingComponent": self.component,
            "reportingInstance": self.host or "",
        }
        try:
            return self.client.create(ev)
        except AlreadyExists:

            def bump(e: Obj) -> None:
                e["count"] = int(e.get("count") or 1) + 1
                e["lastTimestamp"] = now

            return self.client.mutate("Event", ns, name, bump) or ev
