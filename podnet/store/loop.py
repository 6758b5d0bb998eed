"""The level-triggered loop every podnet reconciler runs.

`watch_dirty` only marks work pending when anything under a prefix changes
(re-listing after a broken or compacted watch); `run` calls `sync()` whenever
work is pending or the resync period has passed, and treats a failed sync as
pending work, so the next pass starts again from full state.
"""

import time

from podnet.store.base import Compacted, StoreError


def watch_dirty(store, prefix, dirty, stop, log):
    while not stop.is_set():
        try:
            _, rev = store.list(prefix)
            dirty.set()
            for _ in store.watch(prefix, rev, stop=stop):
                dirty.set()
        except (Compacted, StoreError, OSError) as exc:
            log.warning("watch %s: %s; re-listing", prefix, exc)
            stop.wait(0.5)


def run(sync, dirty, stop, resync, log, what="sync"):
    last = 0.0
    while not stop.is_set():
        period = resync() if callable(resync) else resync
        if dirty.wait(0.2) or time.monotonic() - last > period:
            dirty.clear()
            last = time.monotonic()
            try:
                sync()
            except Exception as exc:  # retried in full on the next pass
                log.exception("%s failed: %s", what, exc)
                dirty.set()
                stop.wait(0.5)
