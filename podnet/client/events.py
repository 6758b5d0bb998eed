"""Events: what a component tells the user about an object (kubectl
describe, kubectl get events), recorded as client-go's recorder does.

Repeats of the same (object, type, reason, message) are one Event whose
count and lastTimestamp go up, so a probe failing every second does not
make a new object each time; and, as client-go's correlator does, repeats
within SPAM_WINDOW seconds are counted here and written with the next one
that is due, so a storm of repeats costs one write per window. Recording never blocks the caller and never
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
from podnet.client.loop import THREAD_ERRORS
from podnet.client.rest import AlreadyExists, Client

log = logging.getLogger("podnet.events")
Obj = dict[str, Any]
SPAM_WINDOW = 10.0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Recorder:
    def __init__(self, client: Client, component: str, host: str | None = None):
        self.client, self.component, self.host = client, component, host
        self.q: queue.Queue[tuple[Obj, str, str, str, int]] = queue.Queue(maxsize=1000)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._seen: dict[str, list[float]] = {}  # event key -> [last write (monotonic), repeats not written]

    def event(self, obj: Obj, etype: str, reason: str, message: str) -> None:
        """Record, in the background; `obj` is the object the event is about."""
        key = _key(obj, etype, reason, message)
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < SPAM_WINDOW:
                seen[1] += 1  # counted; written with the next one due
                return
            repeats = int(seen[1]) if seen else 0
            self._seen[key] = [now, 0]
            if len(self._seen) > 10000:  # forget the oldest half
                for k in sorted(self._seen, key=lambda k: self._seen[k][0])[:5000]:
                    del self._seen[k]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="events")
                self._thread.start()
        try:
            self.q.put_nowait((obj, etype, reason, message, repeats + 1))
        except queue.Full:
            log.warning("event queue full; dropped %s %s", reason, message)

    def _run(self) -> None:
        while True:
            obj, etype, reason, message, count = self.q.get()
            try:
                self.write(obj, etype, reason, message, count)
            except (ApiError, OSError) as exc:
                log.warning("event %s on %s: %s", reason, (obj.get("metadata") or {}).get("name"), exc)
            except Exception:  # noqa: BLE001 - the events thread outlives any one event
                log.exception("event %s on %s", reason, (obj.get("metadata") or {}).get("name"))
                THREAD_ERRORS.note("events")

    def write(self, obj: Obj, etype: str, reason: str, message: str, count: int = 1) -> Obj:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        name = "%s.%s" % (meta.get("name"), _key(obj, etype, reason, message)[:16])
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
            "count": count,
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
                e["count"] = int(e.get("count") or 1) + count
                e["lastTimestamp"] = now

            return self.client.mutate("Event", ns, name, bump) or ev


def _key(obj: Obj, etype: str, reason: str, message: str) -> str:
    meta = obj.get("metadata") or {}
    return hashlib.sha1(("%s/%s/%s/%s" % (meta.get("uid"), etype, reason, message)).encode()).hexdigest()
