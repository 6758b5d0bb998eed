"""The watch cache: every object of the store in memory, kept current by ONE
watch on the store, fanned out to every client's watch.

Why: before the API server each podnet component polled the store on its
own (an idle node agent used 4% of a core); kube-apiserver's answer is a
watch cache, and this is podnet's. Lists and gets are served from memory;
writes go to the store and are ingested at once by the writer (the store
returns the new revision), so a client that reads after its write sees it.
The store's own watch delivers the same revisions again (ignored) and any
written by another API server on the same etcd.

Events are applied strictly in revision order: an event that arrives ahead
of a missing smaller revision waits in `pending` until the gap is filled,
so every watcher sees the one global order the store defines. The newest
`history` events are kept so a client can resume a watch from a recent
resourceVersion; an older one gets 410 Gone (`TooOld`), as from etcd after
compaction.

Runs on the asyncio loop's thread only; the store watch thread hands events
over with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from podnet.client.loop import THREAD_ERRORS
from podnet.store.base import Compacted, Store, StoreError

log = logging.getLogger("podnet.apiserver.cache")
Obj = dict[str, Any]


class TooOld(Exception):
    """The requested resourceVersion is older than the kept history."""


@dataclass(frozen=True)
class Change:
    type: str  # ADDED, MODIFIED, DELETED
    key: str
    obj: Obj  # new object, or the last state for DELETED
    old: Obj | None
    rev: int
    # the event's JSON line per type, made once and sent to every watcher
    # that wants the plain object (most of them: informers)
    wire: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)


def resource_of(key: str) -> str:
    """'/registry/pods/default/web' -> 'pods'."""
    return key.split("/", 3)[2]


class Watcher:
    """One client watch: a filter and a queue the cache fills."""

    def __init__(self, resource: str, accept: Callable[[Change], Change | None], limit: int = 10000):
        self.resource = resource
        self.accept = accept
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue()
        self.limit = limit
        self.overflowed = False

    def offer(self, ch: Change) -> None:
        got = self.accept(ch)
        if got is None:
            return
        if self.queue.qsize() >= self.limit:  # a client that does not read: cut it off
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(got)


class Cache:
    def __init__(self, store: Store, history: int = 20000):
        self.store = store
        self.rev = 0
        self.objects: dict[str, dict[str, Obj]] = collections.defaultdict(dict)  # resource -> key -> obj
        self.history: collections.deque[Change] = collections.deque(maxlen=history)
        self.pending: dict[int, tuple[str, str, Obj | None]] = {}
        self.watchers: dict[str, set[Watcher]] = collections.defaultdict(set)
        self.listeners: list[Callable[[Change], None]] = []  # in-server reactions (GC)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()

    # ---- start -------------------------------------------------------------

    def load(self) -> None:
        items, rev = self.store.list("/registry/")
        self.objects.clear()
        for key, obj, _ in items:
            self.objects[resource_of(key)][key] = obj
        self.rev = rev
        self.history.clear()

    def prime(self, timeout: float = 10.0) -> int:
        """Fill the history from the store's own (etcd keeps one), so that a
        client's watch resumes across an API server restart instead of
        getting 410 and listing everything again: the keys as they were
        `history` revisions ago, then the store's changes since, applied as
        the live watch would apply them. -> changes kept (0: the store has
        no history to give, or it was compacted; the cache is as load() left it)."""
        list_at = getattr(self.store, "list_at", None)
        want = self.rev
        base = max(0, want - (self.history.maxlen or 0))
        if list_at is None or base >= want:
            return 0
        current = self.objects
        listeners, self.listeners = self.listeners, []  # old news: no reactions (GC) to them
        stop = threading.Event()
        timer = threading.Timer(timeout, stop.set)
        timer.start()
        try:
            self.objects = collections.defaultdict(dict)
            for key, obj, _ in list_at("/registry/", base) if base else []:
                self.objects[resource_of(key)][key] = obj
            self.rev = base
            for ev in self.store.watch("/registry/", base, stop=stop):
                self._apply(ev.rev, ev.type, ev.key, ev.value)
                if ev.rev >= want:
                    break
            if self.rev != want:
                raise StoreError("replay stopped at revision %d of %d" % (self.rev, want))
        except (StoreError, OSError) as exc:
            log.warning("watch cache: no history from the store (%s); watches from before start get 410", exc)
            self.objects, self.rev = current, want
            self.history.clear()
            return 0
        finally:
            stop.set()
            timer.cancel()
            self.listeners = listeners
        log.info(
            "watch cache: %d changes of history from the store (revisions %d-%d)", len(self.history), base + 1, want
        )
        return len(self.history)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.load()
        self.prime()
        threading.Thread(target=self._watch, daemon=True, name="store-watch").start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        assert self.loop is not None
        while not self._stop.is_set():
            start = self.rev
            try:
                for ev in self.store.watch("/registry/", start, stop=self._stop):
                    self.loop.call_soon_threadsafe(self._offer, ev.rev, ev.type, ev.key, ev.value)
            except Compacted:
                # fell behind the store's history: start over from a fresh list
                log.warning("store watch from %d compacted; reloading", start)
                self.loop.call_soon_threadsafe(self._reload)
                self._stop.wait(0.5)
            except (StoreError, OSError) as exc:
                log.warning("store watch: %s; resuming", exc)
                self._stop.wait(0.5)
            except Exception:  # noqa: BLE001 - the cache must keep following the store
                # anything else: start over from a fresh list, as after a compaction,
                # so no write the failed watch carried is lost
                log.exception("store watch from %d failed; reloading", start)
                THREAD_ERRORS.note("apiserver/store-watch")
                self.loop.call_soon_threadsafe(self._reload)
                self._stop.wait(0.5)

    def _reload(self) -> None:
        """Replace the whole copy; every watcher must re-list (it gets 410)."""
        self.load()
        for ws in self.watchers.values():
            for w in ws:
                w.overflowed = True
                w.queue.put_nowait(None)

    # ---- ingest ------------------------------------------------------------

    def written(self, rev: int, etype: str, key: str, value: Obj | None) -> None:
        """The writer's own result, applied at once (read-your-writes)."""
        self._offer(rev, etype, key, value)

    def _offer(self, rev: int, etype: str, key: str, value: Obj | None) -> None:
        if rev <= self.rev:
            return
        self.pending[rev] = (etype, key, value)
        while self.rev + 1 in self.pending:
            etype, key, value = self.pending.pop(self.rev + 1)
            self._apply(self.rev + 1, etype, key, value)
        if self.pending and min(self.pending) > self.rev + 1 and len(self.pending) > 1000:
            # a gap that never fills (a store that skips revisions): jump it
            self.rev = min(self.pending) - 1
            self._offer(self.rev + 1, *self.pending.pop(self.rev + 1))

    def _apply(self, rev: int, etype: str, key: str, value: Obj | None) -> None:
        self.rev = rev
        res = resource_of(key)
        bucket = self.objects[res]
        old = bucket.get(key)
        if etype == "DELETE":
            if old is None:
                return self._wake()
            del bucket[key]
            last = dict(old, metadata=dict(old.get("metadata") or {}, resourceVersion=str(rev)))
            ch = Change("DELETED", key, last, old, rev)
        else:
            assert value is not None
            value.setdefault("metadata", {})["resourceVersion"] = str(rev)
            bucket[key] = value
            ch = Change("ADDED" if old is None else "MODIFIED", key, value, old, rev)
        self.history.append(ch)
        for w in list(self.watchers.get(res, ())):
            w.offer(ch)
        for fn in self.listeners:
            try:
                fn(ch)
            except Exception:  # a reaction's bug must not stop the cache
                log.exception("listener failed on %s", key)
        self._wake()

    def _wake(self) -> None:
        keep = []
        for rev, fut in self._waiters:
            if rev <= self.rev:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((rev, fut))
        self._waiters = keep

    async def wait_for(self, rev: int, timeout: float = 5.0) -> None:
        if rev <= self.rev:
            return
        assert self.loop is not None
        fut: asyncio.Future[None] = self.loop.create_future()
        self._waiters.append((rev, fut))
        await asyncio.wait_for(fut, timeout)

    # ---- reads -------------------------------------------------------------

    def get(self, key: str) -> Obj | None:
        return self.objects.get(resource_of(key), {}).get(key)

    def list(self, prefix: str) -> list[Obj]:
        """Objects under prefix, sorted by key (namespace, then name)."""
        bucket = self.objects.get(resource_of(prefix), {})
        if prefix.count("/") <= 3:  # the whole resource
            return [bucket[k] for k in sorted(bucket)]
        return [bucket[k] for k in sorted(bucket) if k.startswith(prefix)]

    def since(self, rev: int, resource: str) -> builtins.list[Change]:
        """Changes to resource after rev, from the history; TooOld when the
        history no longer reaches back to rev."""
        if rev >= self.rev:
            return []
        if not self.history or self.history[0].rev > rev + 1:
            raise TooOld(
                "resourceVersion %d is too old (oldest kept: %s)"
                % (rev, self.history[0].rev - 1 if self.history else self.rev)
            )
        return [c for c in self.history if c.rev > rev and resource_of(c.key) == resource]

    def add_watcher(self, w: Watcher) -> None:
        self.watchers[w.resource].add(w)

    def remove_watcher(self, w: Watcher) -> None:
        self.watchers[w.resource].discard(w)
