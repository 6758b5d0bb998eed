"""Threads that must outlive any exception (issue 11): the API server's
store-watch thread, which keeps its watch cache following the store, and the
event recorder's writer thread. Each is made to raise something nobody
expected; later writes must still arrive, and the fault is counted."""

import asyncio
import threading
import time

from podnet.apiserver.cache import Cache
from podnet.client.events import Recorder
from podnet.client.loop import THREAD_ERRORS
from podnet.store.sqlite import SqliteStore


def _ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


class Flaky:
    """A store whose first watch raises a surprise after one event."""

    def __init__(self, store):
        self.store = store
        self.failed = threading.Event()

    def __getattr__(self, name):
        return getattr(self.store, name)

    def watch(self, prefix, rev, stop=None):
        it = self.store.watch(prefix, rev, stop=stop)
        if not self.failed.is_set():
            yield next(it)
            self.failed.set()
            raise ValueError("a surprise from the store")
        yield from it


def test_the_store_watch_survives_a_surprise_and_the_cache_follows(tmp_path):
    store = SqliteStore(str(tmp_path / "s.db"))
    flaky = Flaky(store)
    cache = Cache(flaky)
    before = THREAD_ERRORS.get("apiserver/store-watch")

    async def main():
        cache.start(asyncio.get_running_loop())
        try:
            store.put("/registry/namespaces/a", _ns("a"))
            store.put("/registry/namespaces/b", _ns("b"))
            deadline = time.monotonic() + 10
            while not flaky.failed.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            store.put("/registry/namespaces/c", _ns("c"))  # written after the fault
            while time.monotonic() < deadline:
                if _names(cache) == ["a", "b", "c"]:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the cache stopped following the store: %s" % _names(cache))
        finally:
            cache.stop()

    asyncio.run(main())
    assert THREAD_ERRORS.get("apiserver/store-watch") == before + 1
    store.close()


def _names(cache):
    return sorted(o["metadata"]["name"] for o in cache.objects.get("namespaces", {}).values())


class Boom:
    def __init__(self):
        self.calls = 0
        self.ok = threading.Event()

    def create(self, obj, **kw):
        self.calls += 1
        if self.calls == 1:
            raise KeyError("a surprise from the client")
        self.ok.set()
        return obj

    def __getattr__(self, name):
        raise AttributeError(name)


def test_the_event_writer_survives_a_surprise(monkeypatch):
    before = THREAD_ERRORS.get("events")
    client = Boom()
    rec = Recorder(client, "test")
    monkeypatch.setattr(rec, "write", lambda obj, etype, reason, message, count=1: client.create(obj))
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "default"}}
    rec.event(pod, "Normal", "First", "raises")
    rec.event(pod, "Normal", "Second", "arrives")
    assert client.ok.wait(5), "the events thread died"
    assert THREAD_ERRORS.get("events") == before + 1
