"""The level-triggered loop every podnet reconciler runs.

Watches (informers) only mark work pending; `run` calls `sync()` whenever
work is pending or the resync period has passed, and treats a failed sync
as pending work, so the next pass starts again from full state.

No exception ends the loop but a stop: whatever a pass raises is logged,
counted in THREAD_ERRORS under `what`, and the next pass is a full one
(after a back-off that grows while passes keep failing). THREAD_ERRORS is
what the agent serves as podnet_thread_errors_total{component=...}
(podnet/agent/metrics.py); the informers count into it too. It is a plain
counter here, so that podnet.client does not depend on the metrics library.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

BACKOFF = (0.5, 5.0)  # seconds after a failed pass: first, most


class ThreadErrors:
    """Exceptions long-running threads caught, logged and carried on from,
    per component ("informer/services", "handler/services", "services sync")."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def note(self, component: str) -> None:
        with self._lock:
            self._counts[component] = self._counts.get(component, 0) + 1

    def get(self, component: str) -> int:
        with self._lock:
            return self._counts.get(component, 0)

    def items(self) -> list[tuple[str, int]]:
        with self._lock:
            return sorted(self._counts.items())


THREAD_ERRORS = ThreadErrors()
SYNCS = ThreadErrors()  # passes of loop.run that ended well, per `what` (podnet_reconciler_syncs_total)


def run(
    sync: Callable[[], object],
    dirty: threading.Event,
    stop: threading.Event,
    resync: float | Callable[[], float],
    log: logging.Logger,
    what: str = "sync",
) -> None:
    last = 0.0
    backoff = BACKOFF[0]
    while not stop.is_set():
        try:
            period = resync() if callable(resync) else resync
            # sleep until the next resync is due (at most 1 s, so a stop is seen
            # soon): an idle reconciler wakes a few times a second at most
            due = max(0.0, last + period - time.monotonic())
            if dirty.wait(min(due, 1.0)) or time.monotonic() - last >= period:
                dirty.clear()
                last = time.monotonic()
                sync()
                SYNCS.note(what)
                backoff = BACKOFF[0]
        except Exception as exc:  # retried in full on the next pass
            THREAD_ERRORS.note(what)
            log.exception("%s failed: %s", what, exc)
            dirty.set()
            stop.wait(backoff)
            backoff = min(backoff * 2, BACKOFF[1])
