"""A local copy of one kind's objects, kept current by a watch (an informer).

A reconciler that must stay cheap at 10,000 objects cannot re-read and
re-decode them all on every change; it reads this cache instead. The cache
is still level-triggered state, not events: a watch event only updates the
copy and marks the reconciler dirty, and a broken or compacted watch is
answered by a fresh list that replaces the whole copy.
"""

import logging
import threading

from podnet.store.base import Compacted, StoreError

log = logging.getLogger("podnet.informer")


class Informer:
    def __init__(self, store, prefix, dirty, on_change=None):
        self.store, self.prefix, self.dirty = store, prefix, dirty
        self.on_change = on_change  # callable(key, old, new), optional
        self.lock = threading.Lock()
        self.items = {}  # key -> object
        self.synced = threading.Event()  # set after the first full list

    def values(self):
        with self.lock:
            return list(self.items.values())

    def get(self, key):
        with self.lock:
            return self.items.get(key)

    def _relist(self):
        items, rev = self.store.list(self.prefix)
        with self.lock:
            old, self.items = self.items, {k: v for k, v, _ in items}
        if self.on_change:
            for k in set(old) | set(self.items):
                if old.get(k) != self.items.get(k):
                    self.on_change(k, old.get(k), self.items.get(k))
        self.synced.set()
        self.dirty.set()
        return rev

    def run(self, stop):
        while not stop.is_set():
            try:
                rev = self._relist()
                for ev in self.store.watch(self.prefix, rev, stop=stop):
                    with self.lock:
                        old = self.items.get(ev.key)
                        if ev.type == "DELETE":
                            self.items.pop(ev.key, None)
                        else:
                            self.items[ev.key] = ev.value
                    if self.on_change:
                        self.on_change(ev.key, old, ev.value if ev.type != "DELETE" else None)
                    self.dirty.set()
            except (Compacted, StoreError, OSError) as exc:
                log.warning("watch %s: %s; re-listing", self.prefix, exc)
                stop.wait(0.5)

    def start(self, stop, name=None):
        threading.Thread(target=self.run, args=(stop,), daemon=True, name=name or "informer" + self.prefix).start()
        return self
