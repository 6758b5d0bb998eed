"""The level-triggered loop every podnet reconciler runs.

Watches (informers) only mark work pending; `run` calls `sync()` whenever
work is pending or the resync period has passed, and treats a failed sync
as pending work, so the next pass starts again from full state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


def run(
    sync: Callable[[], object],
    dirty: threading.Event,
    stop: threading.Event,
    resync: float | Callable[[], float],
    log: logging.Logger,
    what: str = "sync",
) -> None:
    last = 0.0
    while not stop.is_set():
        period = resync() if callable(resync) else resync
        # sleep until the next resync is due (at most 1 s, so a stop is seen
        # soon): an idle reconciler wakes a few times a second at most
        due = max(0.0, last + period - time.monotonic())
        if dirty.wait(min(due, 1.0)) or time.monotonic() - last >= period:
            dirty.clear()
            last = time.monotonic()
            try:
                sync()
            except Exception as exc:  # retried in full on the next pass
                log.exception("%s failed: %s", what, exc)
                dirty.set()
                stop.wait(0.5)
