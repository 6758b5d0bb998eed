"""A local copy of one kind's objects, kept current by list + watch (an
informer, as client-go's).

The copy is level-triggered state, not events: a watch event only updates
it and marks its reconcilers dirty. A dropped connection resumes the watch
from the last resourceVersion seen (bookmarks keep that recent); a 410 Gone
(the server no longer has that history) re-lists and replaces the whole
copy, telling on_change about every difference.

The thread never ends on an unexpected exception (a malformed event, an
event type it does not know, a bug): it logs it, counts it in
loop.THREAD_ERRORS (podnet_thread_errors_total on the agent's metrics),
re-lists (the copy may have missed what that event said) and carries on.
A subscriber that raises is logged and counted too; the others still get
the event.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from podnet.api import ApiError, Kind, key_of, stored_kind
from podnet.client.loop import THREAD_ERRORS, ThreadErrors
from podnet.client.rest import Client, Gone

log = logging.getLogger("podnet.informer")
Obj = dict[str, Any]
OnChange = Callable[[str, Obj | None, Obj | None], None]
EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")
BACKOFF = (0.5, 5.0)  # seconds before re-listing after an unexpected error: first, most


class Malformed(ValueError):
    """A watch event the informer cannot apply."""


# full lists and resumed watches per resource ("list/pods", "resume/pods"):
# after an API server restart a watch resumes from its resourceVersion, and
# only a 410 Gone (or a malformed event) costs a list
WATCHES = ThreadErrors()


class Informer:
    def __init__(self, client: Client, kind: str | Kind, namespace: str | None = None):
        self.client, self.kind, self.namespace = client, stored_kind(kind), namespace
        self.lock = threading.Lock()
        self.items: dict[str, Obj] = {}  # key_of(obj) -> obj
        self.synced = threading.Event()  # set after the first full list
        self.dirties: list[threading.Event] = []
        self.handlers: list[OnChange] = []
        self.rv: str | None = None
        self.relists = 0
        self._started = False

    def add(self, dirty: threading.Event | None = None, on_change: OnChange | None = None) -> Informer:
        with self.lock:
            if dirty is not None:
                self.dirties.append(dirty)
                if self.synced.is_set():
                    dirty.set()
            if on_change is not None:
                self.handlers.append(on_change)
                # a late subscriber starts from what is already here
                if self.synced.is_set():
                    for key, obj in self.items.items():
                        on_change(key, None, obj)
        return self

    def values(self) -> list[Obj]:
        with self.lock:
            return list(self.items.values())

    def get(self, key: str) -> Obj | None:
        with self.lock:
            return self.items.get(key)

    def _notify(self, changes: list[tuple[str, Obj | None, Obj | None]]) -> None:
        for h in list(self.handlers):
            for key, old, new in changes:
                try:
                    h(key, old, new)
                except Exception:  # one reconciler's bug must not stop the others' events
                    THREAD_ERRORS.note("handler/" + self.kind.plural)
                    log.exception("informer %s: handler failed on %s", self.kind.plural, key)
        for d in list(self.dirties):
            d.set()

    def _relist(self) -> None:
        items, rv = self.client.list_rev(self.kind, self.namespace)
        fresh = {}
        for o in items:
            try:
                fresh[key_of(o)] = o
            except Exception as exc:  # one bad object must not keep the rest out
                THREAD_ERRORS.note("informer/" + self.kind.plural)
                log.error("list %s: skipping a malformed object (%s): %.200r", self.kind.plural, exc, o)
        with self.lock:
            old, self.items = self.items, fresh
        changes = [(k, old.get(k), fresh.get(k)) for k in set(old) | set(fresh) if old.get(k) != fresh.get(k)]
        self.rv = rv
        self.relists += 1
        WATCHES.note("list/" + self.kind.plural)
        self.synced.set()
        self._notify(changes)
        for d in list(self.dirties):
            d.set()

    def _event(self, etype: str, obj: Obj) -> None:
        """One watch event into the copy; Malformed for one it cannot apply."""
        if etype not in EVENT_TYPES:
            raise Malformed("watch %s: unknown event type %r" % (self.kind.plural, etype))
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise Malformed("watch %s: %s event without metadata: %.200r" % (self.kind.plural, etype, obj))
        if etype == "BOOKMARK":
            self.rv = obj["metadata"].get("resourceVersion") or self.rv
            return
        if not obj["metadata"].get("name"):
            raise Malformed("watch %s: %s event without metadata.name: %.200r" % (self.kind.plural, etype, obj))
        obj.setdefault("kind", self.kind.kind)
        obj.setdefault("apiVersion", self.kind.api_version)
        key = key_of(obj)
        # after the checks: a bad event must not move the resume point past itself
        self.rv = obj["metadata"].get("resourceVersion") or self.rv
        with self.lock:
            old = self.items.get(key)
            if etype == "DELETED":
                self.items.pop(key, None)
            else:
                self.items[key] = obj
        self._notify([(key, old, None if etype == "DELETED" else obj)])

    def run(self, stop: threading.Event) -> None:
        backoff = BACKOFF[0]
        while not stop.is_set():
            try:
                if self.rv is None:
                    self._relist()
                else:  # a watch picked up where the last one ended: no list
                    WATCHES.note("resume/" + self.kind.plural)
                for etype, obj in self.client.watch(self.kind, self.namespace, self.rv, stop=stop):
                    self._event(etype, obj)
                backoff = BACKOFF[0]
            except Gone:
                log.info("watch %s: resourceVersion %s expired; re-listing", self.kind.plural, self.rv)
                self.rv = None
            except (ApiError, OSError, json.JSONDecodeError) as exc:  # the server or the connection (a cut line)
                log.warning("watch %s: %s; resuming from %s", self.kind.plural, exc, self.rv)
                stop.wait(0.5)
            except Exception as exc:  # a malformed event or a bug: count it, re-list, carry on
                THREAD_ERRORS.note("informer/" + self.kind.plural)
                if isinstance(exc, Malformed):
                    log.error("%s; re-listing", exc)
                else:
                    log.exception("watch %s: unexpected %s; re-listing", self.kind.plural, type(exc).__name__)
                self.rv = None
                stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF[1])

    def start(self, stop: threading.Event) -> Informer:
        if not self._started:
            self._started = True
            threading.Thread(target=self.run, args=(stop,), daemon=True, name="informer-" + self.kind.plural).start()
        return self
